"""gpurnn's CPU backend against torch.nn.RNN + nn.Linear + cross-entropy (sum), forward + backward.

    .venv/bin/python profiling/bench_cpu.py --out profiling/results_cpu.json
    .venv/bin/python profiling/bench_cpu.py --held-out      # shapes no threshold was tuned on

Each side runs in its own process (torch from $TORCH_PYTHON, default .venv with the [torch]
extra; gpurnn from .venv) on the same weights and inputs, written once to a temporary .npz
per row; both get 2 threads (--threads). gpurnn runs in two processes per round, one importing
gpurnn first (as the command line does: its OPENBLAS_THREAD_TIMEOUT is in force when NumPy
loads OpenBLAS) and one importing NumPy first (as a user's script does: OpenBLAS has loaded
with its default spin and the CPU backend stops its workers instead), so the table has both
import orders side by side.
A worker times `repeats` calls after `warmup` untimed ones (Numba compiles there) and
reports the loss too, so the orchestrator checks that both sides computed the same thing.
Rounds alternate the processes (torch, gpurnn first, NumPy first; the two gpurnn orders swap
places every other round); the table shows medians over all samples.

Work per call, counted as 2 flops per multiply-add (dense inputs; token inputs skip the
two products with n):  2·T·B·(2·n·d + 3·d·d + 3·d·k)  — x U, dU, s W fwd/bwd, dW, s V, dV, dZ Vᵀ.
A row (T, B, n, d, k, L, D) is a stack of L layers of D directions against
`nn.RNN(num_layers=L, bidirectional=D == 2)`: each upper cell reads D·d inputs and passes
their gradient down (3 products with n_ℓ = D·d), the head reads D·d.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROWS = [(100, 32, 64, 128, 64), (100, 1, 64, 128, 64), (1000, 8, 64, 256, 64),
        (50, 128, 128, 512, 128), (200, 64, 65, 256, 65),
        (100, 32, 64, 128, 64, 2, 2), (100, 64, 64, 128, 64, 2, 2), (100, 256, 64, 128, 64, 2, 2)]
# held out: shapes no threshold of gpurnn.backends.cpu_threads was tuned on (B ≤ 64 with long
# T and d ≈ 200, and B ≥ 128), for the goals of issue 20 (≥ 1.5× torch at B ≤ 64, ≥ 1.2× above)
HELD_OUT = [(256, 16, 96, 192, 96), (250, 32, 80, 200, 80), (300, 64, 50, 224, 50), (100, 128, 64, 192, 64),
            (80, 256, 100, 160, 100)]
GPURNN_SIDES = ("gpurnn", "gpurnn_numpy_first")     # the two import orders
THREADS = 2                 # each side; --threads changes it
TORCH_PYTHON = os.environ.get("TORCH_PYTHON", str(ROOT / ".venv/bin/python"))   # any Python with torch
GPURNN_PYTHON = str(ROOT / ".venv/bin/python")
# OpenBLAS overrides that some machines set; they can pin a slower kernel, so the
# workers of this benchmark (never the tests) run without them. See RESULTS.md.
OPENBLAS_OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
# the spin timeout as the user's environment has it: `make_case` imports gpurnn, which sets
# it in this process, and the workers must not inherit that (the NumPy-first side would not
# be what a user's script gets)
USER_SPIN_TIMEOUT = os.environ.get("OPENBLAS_THREAD_TIMEOUT")


def flops(T, B, n, d, k, layers=1, directions=1, tokens=False):
    """Multiply-adds ×2 of one forward + backward call (see the module docstring)."""
    cells = directions * ((0 if tokens else 2 * n * d) + 3 * d * d
                          + (layers - 1) * (3 * directions * d * d + 3 * d * d))
    return 2 * T * B * (cells + 3 * directions * d * k)


def make_case(path, T, B, n, d, k, layers=1, directions=1, seed=0):
    """Weights (float32, PyTorch's U(−1/√d, 1/√d) init; biases too), dense inputs, token ids,
    targets; the weights under "param.<tree name>"."""
    import numpy as np

    from gpurnn.model import init_params

    rng = np.random.default_rng(seed)
    bound = 1 / math.sqrt(d)
    shapes = init_params(n, d, k, layers=layers, bidirectional=directions == 2)
    weights = {f"param.{name}": rng.uniform(-bound, bound, a.shape).astype(np.float32) for name, a in shapes.items()}
    np.savez(path, **weights, x=rng.standard_normal((T, B, n)).astype(np.float32),
             tokens=rng.integers(0, n, (T, B)), targets=rng.integers(0, k, (T, B)))


def weights_of(case) -> dict:
    """The weights of a loaded case, under their tree names."""
    return {key[len("param."):]: case[key] for key in case.files if key.startswith("param.")}


def time_calls(step, warmup, repeats):
    """Seconds of each of `repeats` calls of step() after `warmup` untimed calls, and its last value."""
    for _ in range(warmup):
        value = step()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        value = step()
        samples.append(time.perf_counter() - start)
    return samples, value


def torch_worker(case, warmup, repeats, threads):
    """torch.nn.RNN (b_ih = b, b_hh = 0) + Linear + cross_entropy(sum), forward + backward."""
    import numpy as np
    import torch
    from torch_peer import torch_model

    torch.set_num_threads(threads)
    a = np.load(case)
    rnn, head = torch_model(torch, weights_of(a))
    T, B, k = a["x"].shape[0], a["x"].shape[1], head.out_features
    x, targets = torch.from_numpy(a["x"]), torch.from_numpy(a["targets"]).reshape(-1)
    weights = list(rnn.parameters()) + list(head.parameters())

    def step():
        for w in weights:
            w.grad = None
        states, _ = rnn(x)
        loss = torch.nn.functional.cross_entropy(head(states).reshape(T * B, k), targets, reduction="sum")
        loss.backward()
        return loss.item()

    samples, loss = time_calls(step, warmup, repeats)
    return {"dense": samples, "loss": loss}


def gpurnn_worker(case, warmup, repeats, threads):
    """gpurnn.bptt(backend="cpu") on the same dense inputs, and on token ids (extra column).
    `worker_main` has imported gpurnn and NumPy in the order the side names."""
    import gpurnn
    import numpy as np
    import scipy.linalg.cython_blas  # noqa: F401  (SciPy's BLAS, which Numba's loops call: load it now
    from threadpoolctl import threadpool_limits  # so that the thread limit reaches it too)

    threadpool_limits(threads)
    a = np.load(case)
    params = gpurnn.Params.from_items(weights_of(a).items())
    targets = a["targets"]           # read once: each a[...] reads the .npz file again
    result = {}
    for kind in ("dense", "tokens"):
        inputs = a["x"] if kind == "dense" else a["tokens"]
        samples, res = time_calls(lambda: gpurnn.bptt(params, inputs, targets, backend="cpu"),
                                  warmup, repeats)
        result[kind] = samples
        if kind == "dense":
            result["loss"] = res.loss
    return result


def gemm_rate(threads, size=2048, repeats=5):
    """This process's large float32 GEMM rate (numpy matmul of size² squares), flop/s, best of repeats."""
    import numpy as np
    from threadpoolctl import threadpool_limits

    threadpool_limits(threads)
    A = np.random.default_rng(0).standard_normal((size, size)).astype(np.float32)
    samples, _ = time_calls(lambda: A @ A, 1, repeats)
    return 2 * size**3 / min(samples)


def blas_info():
    """Which BLAS library, kernel (architecture) and thread count this process uses, and for
    OpenBLAS the spin timeout it read when it loaded (0: unset, 2^28 cycles)."""
    from threadpoolctl import ThreadpoolController

    libs = []
    for lib in ThreadpoolController().select(user_api="blas").lib_controllers:
        info = {key: lib.info().get(key) for key in ("filepath", "architecture", "num_threads", "version")}
        timeout = getattr(lib.dynlib, "openblas_thread_timeout", None)
        info["thread_timeout"] = None if timeout is None else timeout()
        libs.append(info)
    return libs


def worker_main(args):
    """Run one side over every case file and print one JSON object on stdout. A gpurnn side
    imports gpurnn and NumPy here, in its order, before anything else loads NumPy."""
    if args.worker == "gpurnn_numpy_first":
        import numpy  # noqa: F401  isort: skip
    if args.worker in GPURNN_SIDES:
        import gpurnn  # noqa: F401
    run = torch_worker if args.worker == "torch" else gpurnn_worker
    out = {"rows": [run(case, args.warmup, args.repeats, args.threads) for case in args.cases]}
    if args.worker in GPURNN_SIDES:
        out["gemm_flops"] = gemm_rate(args.threads)
        out["blas"] = blas_info()
    print(json.dumps(out))


def run_worker(python, side, cases, args):
    """One worker process; its JSON answer."""
    env = {key: value for key, value in os.environ.items()
           if key not in (*OPENBLAS_OVERRIDES, "OPENBLAS_THREAD_TIMEOUT")}
    if USER_SPIN_TIMEOUT is not None:
        env["OPENBLAS_THREAD_TIMEOUT"] = USER_SPIN_TIMEOUT
    env["PYTHONPATH"] = str(ROOT)
    cmd = [python, __file__, "--worker", side, "--warmup", str(args.warmup), "--repeats", str(args.repeats),
           "--threads", str(args.threads), *cases]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        sys.exit(f"{side} worker failed:\n{done.stderr}")
    return json.loads(done.stdout)


def summarise(rows, answers, threads):
    """Median seconds per side and row, ratios (both import orders), flop rates, loss agreement."""
    gemm = statistics.median(a["gemm_flops"] for a in answers["gpurnn"])
    table = []
    for i, shape in enumerate(rows):
        med, best = {}, {}
        for side, kind in (("torch", "dense"), ("gpurnn", "dense"), ("gpurnn", "tokens"),
                           ("gpurnn_numpy_first", "dense")):
            samples = [s for a in answers[side] for s in a["rows"][i][kind]]
            med[f"{side}_{kind}"], best[f"{side}_{kind}"] = statistics.median(samples), min(samples)
        torch_loss = answers["torch"][0]["rows"][i]["loss"]
        loss_diff = max(abs(torch_loss - answers[side][0]["rows"][i]["loss"]) / abs(torch_loss)
                        for side in GPURNN_SIDES)
        rate = flops(*shape) / med["gpurnn_dense"]
        table.append({"shape": dict(zip(("T", "B", "n", "d", "k", "layers", "directions"), shape)),
                      "seconds": med, "seconds_min": best,
                      "speedup_dense": med["torch_dense"] / med["gpurnn_dense"],
                      "speedup_dense_numpy_first": med["torch_dense"] / med["gpurnn_numpy_first_dense"],
                      "speedup_tokens": med["torch_dense"] / med["gpurnn_tokens"],
                      "gpurnn_flops": rate, "gemm_fraction": rate / gemm, "loss_rel_diff": loss_diff})
    geo = {key: math.exp(statistics.mean(math.log(r[key]) for r in table))
           for key in ("speedup_dense", "speedup_dense_numpy_first")}
    return {"gemm_flops": gemm, "geomean_speedup_dense": geo["speedup_dense"],
            "geomean_speedup_dense_numpy_first": geo["speedup_dense_numpy_first"], "rows": table,
            "blas": {side: answers[side][0]["blas"] for side in GPURNN_SIDES}, "threads": threads}


def markdown(summary):
    """The results as a markdown table."""
    lines = ["| T | B | n | d | k | layers × directions | torch ms | gpurnn ms | speed-up "
             "| gpurnn ms, NumPy imported first | speed-up, NumPy first | gpurnn tokens ms "
             "| speed-up (tokens) | gpurnn GFLOP/s | % of GEMM |", "|" + "---|" * 15]
    for r in summary["rows"]:
        s, sec = r["shape"], r["seconds"]
        lines.append(f"| {s['T']} | {s['B']} | {s['n']} | {s['d']} | {s['k']} | {s.get('layers', 1)} × "
                     f"{s.get('directions', 1)} | {1e3 * sec['torch_dense']:.2f} "
                     f"| {1e3 * sec['gpurnn_dense']:.2f} | {r['speedup_dense']:.2f}× "
                     f"| {1e3 * sec['gpurnn_numpy_first_dense']:.2f} | {r['speedup_dense_numpy_first']:.2f}× "
                     f"| {1e3 * sec['gpurnn_tokens']:.2f} | {r['speedup_tokens']:.2f}× "
                     f"| {r['gpurnn_flops'] / 1e9:.1f} | {100 * r['gemm_fraction']:.0f}% |")
    timeouts = {side: [lib["thread_timeout"] for lib in libs] for side, libs in summary["blas"].items()}
    lines.append(f"\nGeometric mean speed-up (dense): {summary['geomean_speedup_dense']:.2f}× gpurnn imported "
                 f"first, {summary['geomean_speedup_dense_numpy_first']:.2f}× NumPy first; "
                 f"large float32 GEMM rate (numpy, 2048²): {summary['gemm_flops'] / 1e9:.0f} GFLOP/s; "
                 f"{summary['threads']} threads each side; OpenBLAS spin timeouts as loaded {timeouts}; "
                 f"1-minute load average {summary['loadavg_1min'][0]:.1f} before, "
                 f"{summary['loadavg_1min'][1]:.1f} after.")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="*", help=argparse.SUPPRESS)
    parser.add_argument("--worker", choices=("torch", *GPURNN_SIDES), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help="write the summary JSON here")
    parser.add_argument("--rounds", type=int, default=3, help="torch/gpurnn process pairs, alternating")
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per row and process")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls first (compiles, caches)")
    parser.add_argument("--rows", type=int, nargs="*", help="indices into ROWS (default: all)")
    parser.add_argument("--held-out", action="store_true", help="the HELD_OUT shapes instead of ROWS")
    parser.add_argument("--threads", type=int, default=THREADS, help="BLAS / torch threads, each side")
    args = parser.parse_args()
    if args.worker:
        return worker_main(args)
    table = HELD_OUT if args.held_out else ROWS
    rows = [table[i] for i in args.rows] if args.rows else table
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        cases = []
        for i, shape in enumerate(rows):
            cases.append(f"{tmp}/row{i}.npz")
            make_case(cases[-1], *shape)
        answers = {"torch": [], **{side: [] for side in GPURNN_SIDES}}
        for round_ in range(args.rounds):
            for side in ("torch", *(GPURNN_SIDES if round_ % 2 == 0 else GPURNN_SIDES[::-1])):
                answers[side].append(run_worker(TORCH_PYTHON if side == "torch" else GPURNN_PYTHON, side, cases, args))
    summary = summarise(rows, answers, args.threads)
    summary["loadavg_1min"] = [load_before, os.getloadavg()[0]]
    summary["openblas_overrides_removed"] = {k: os.environ[k] for k in OPENBLAS_OVERRIDES if k in os.environ}
    bad = [r["shape"] for r in summary["rows"] if r["loss_rel_diff"] > 1e-4]
    if bad:
        sys.exit(f"torch and gpurnn losses differ on {bad}")
    print(markdown(summary))
    if args.out:
        args.out.write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
