"""Time the persistent kernels alone on a GPU against profiling/persistent_model.py's predictions.

    python3 profiling/bench_persistent.py [--reps 10]

For each issue row (float32) and each kernel version (v1: single state loads, v2: paired
8-byte state loads; the default plan and its alternative), the median over `reps` samples of
LAUNCHES launches between one pair of CUDA events, after one warm-up launch (compilation and
the kernel's fit checks, which later launches find cached), inputs random (never zeros),
outputs checked finite. Prints µs per step next to the model's prediction; a case that fails
prints its error and the next one runs; a last `verdict:` line counts them. Then a layer's two
directions (CELL_ROWS): one paired launch (`plan(..., cells=2)`) against two one-cell launches,
µs per step for both directions.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))   # siblings, also under python -P / PYTHONSAFEPATH

import numpy as np  # noqa: E402
import typer  # noqa: E402
from numba import cuda  # noqa: E402

import persistent_model as model  # noqa: E402
from gpurnn.kernels import persistent_backward as pb  # noqa: E402
from gpurnn.kernels import persistent_forward as pf  # noqa: E402
from gpurnn.kernels import persistent_plan as pp  # noqa: E402

LAUNCHES = 20    # launches per timed sample


def median_ms(launch, reps, launches=LAUNCHES):
    """Median milliseconds of one `launch()`: `reps` samples, each `launches` launches between
    one pair of CUDA events (so the host's launch cost overlaps the device's work, as it does
    in training), after a warm-up launch (compilation, the fit checks)."""
    launch()
    cuda.synchronize()
    times = []
    for _ in range(reps):
        start, stop = cuda.event(), cuda.event()
        start.record()
        for _ in range(launches):
            launch()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop) / launches)
    return float(np.median(times))


CELL_ROWS = [(100, 32, 128), (100, 128, 256), (100, 32, 512)]    # (T, B, d), float32


def cell_rows(reps, counts):
    """µs per step of both directions of a layer: paired, and one launch per direction."""
    print(f"{'T':>5} {'B':>4} {'d':>5} {'dir':<8} {'variant':<6} {'paired µs/step':>14} {'two launches':>12}",
          flush=True)
    rng = np.random.default_rng(1)
    dtype = np.float32
    for T, B, d in CELL_ROWS:
        def cells(shapes):
            return [tuple(cuda.to_device(rng.standard_normal(shape).astype(dtype)) for shape in shapes)
                    for _ in range(2)]
        ins = cells([(T, B, d), (d, d), (B, d), (T, B, d)])          # XP, W, s0, G of each direction
        outs = [(cuda.device_array((T + 1, B, d), dtype), cuda.device_array((T, B, d), dtype),
                 cuda.device_array((B, d), dtype)) for _ in range(2)]
        lengths = cuda.to_device(np.full(B, T, np.int64))
        for direction in ("forward", "backward"):
            paired = pp.plan(B, d, dtype, direction=direction, cells=2)
            if paired.variant == "step" or paired.cells == 1:
                print(f"{T:>5} {B:>4} {d:>5} {direction:<8} not paired: {paired.reason}", flush=True)
                continue
            alone = pp.plan(B, d, dtype, direction=direction)
            if direction == "forward":
                group = [(XP, W, s0, S) for (XP, W, s0, _), (S, _, _) in zip(ins, outs)]
            else:
                group = [(G, None, S, W, delta, ds0) for (_, W, _, G), (S, delta, ds0) in zip(ins, outs)]

            def run(cells_, plan, forward=direction == "forward"):
                if forward:
                    pf.persistent_forward_cells(cells_, lengths, 0, plan=plan)
                else:
                    pb.persistent_backward_cells(cells_, lengths, 0, None, plan=plan)

            try:
                both = median_ms(lambda: run(group, paired), reps)
                apart = median_ms(lambda: [run([cell], alone) for cell in group], reps)
            except Exception as error:      # recorded; the next case runs
                counts["failed"] += 1
                print(f"{T:>5} {B:>4} {d:>5} {direction:<8} ERROR {type(error).__name__}: {str(error)[:300]}",
                      flush=True)
                continue
            counts["ok"] += 1
            print(f"{T:>5} {B:>4} {d:>5} {direction:<8} {paired.variant:<6} {both * 1e3 / T:>14.2f} "
                  f"{apart * 1e3 / T:>12.2f}", flush=True)


def main(reps: int = 10):
    print(getattr(cuda.get_current_device(), "name", "simulator"), "  (prediction: persistent_model.py, H100 constants)")
    print(f"{'T':>5} {'B':>4} {'d':>5} {'dir':<8} {'variant':<6} {'pairs':<5} {'µs/step':>8} {'predicted':>10}")
    rng = np.random.default_rng(0)
    counts = {"ok": 0, "failed": 0}
    for T, B, d, _ in model.ROWS:
        dtype = np.float32
        XP = cuda.to_device(rng.standard_normal((T, B, d)).astype(dtype))
        W = cuda.to_device((rng.standard_normal((d, d)) / np.sqrt(d)).astype(dtype))
        s0 = cuda.to_device(rng.standard_normal((B, d)).astype(dtype))
        G = cuda.to_device(rng.standard_normal((T, B, d)).astype(dtype))
        lengths = cuda.to_device(np.full(B, T, np.int64))
        S = cuda.device_array((T + 1, B, d), dtype)
        delta, ds0 = cuda.device_array((T, B, d), dtype), cuda.device_array((B, d), dtype)
        for direction in ("forward", "backward"):
            for pairs in (None, not pp.plan(B, d, dtype, direction=direction).pairs):
                p, predicted, _ = model.predict(T, B, d, dtype, direction, pairs=pairs)
                if predicted is None:
                    print(f"{T:>5} {B:>4} {d:>5} {direction:<8} step   ({p.reason})")
                    break
                try:
                    if direction == "forward":
                        ms = median_ms(lambda: pf.persistent_forward(XP, W, s0, lengths, 0, S, plan=p), reps)
                        ok = np.isfinite(S.copy_to_host()).all()
                    else:
                        ms = median_ms(lambda: pb.persistent_backward(G, None, S, W, lengths, 0, None, delta, ds0,
                                                                      plan=p), reps)
                        ok = np.isfinite(delta.copy_to_host()).all()
                except Exception as error:      # recorded; the next case runs
                    counts["failed"] += 1
                    print(f"{T:>5} {B:>4} {d:>5} {direction:<8} {p.variant:<6} {str(p.pairs):<5} "
                          f"ERROR {type(error).__name__}: {str(error)[:300]}", flush=True)
                    continue
                counts["ok" if ok else "failed"] += 1
                print(f"{T:>5} {B:>4} {d:>5} {direction:<8} {p.variant:<6} {str(p.pairs):<5} "
                      f"{ms * 1e3 / T:>8.2f} {predicted * 1e6:>10.2f}{'' if ok else '  NON-FINITE'}", flush=True)
    cell_rows(reps, counts)
    print(f"verdict: {counts['ok']} cases timed, {counts['failed']} failed", flush=True)


if __name__ == "__main__":
    typer.run(main)
