"""gpurnn's CUDA backend against torch.nn.RNN + nn.Linear + cross-entropy (sum) on cuDNN,
forward + backward, on one GPU, in one process.

    python3 profiling/bench_gpu.py --jsonl $OUT/bench_gpu.jsonl [--out bench_gpu.json]

TF32 is off on both sides (torch: the legacy allow_tf32 flags False and, from torch 2.9, the
fp32_precision of matmul, cuDNN and cuDNN's RNNs "ieee", whose default for RNNs is "tf32";
CuPy: CUPY_TF32 unset), so both compute in float32 proper; the settings are recorded as
read back. The JSON lines file gets a
header line (card, versions, TF32 settings, the GEMM rate), then one line per row as soon as
the row is done (flushed: a run cut short keeps its finished rows); a variant or a row that
fails records its error there and the run goes on.

Both sides get the same float32 weights and the same dense inputs (T,B,n) with n = k, and
compute the same function (the losses are compared, and the gradients on the first row).
Rows by value: the goals' shapes in the order of the goals (B = 1 and 8, then B = 32 and 64,
then B = 256). Within a row every variant and torch get their first call and `warmup` more
untimed (Numba compiles and cuDNN picks its algorithms there), then `repeats` rounds of one
call each, in turns, each timed with its library's CUDA events: a drift of the card's clocks
falls on all of them alike. The table shows medians.
Variants of gpurnn: "cublas" (cuBLAS for the large products, persistent recurrences: the
default on a GPU), "numba" (the tiled Numba GEMM instead), "cublas-step" (one fused launch per
step instead of the persistent kernels; "cublas-step-fused" / "cublas-step-gemm" fix how each
step's product runs), so the backend's switches are measured.

Work per call, 2 flops per multiply-add:  2·T·B·(2·n·d + 3·d·d + 3·d·k)  (x U, dU, s W forward
and backward, dW, s V, dV, dZ Vᵀ): `bench_cpu.flops`, the CPU benchmark's count. The card's own float32 GEMM
rate (cuBLAS through CuPy, 8192³) is measured first, as the ceiling to compare with.
"""
from __future__ import annotations

import argparse
import functools
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))   # siblings, also under python -P / PYTHONSAFEPATH

from bench_cpu import flops  # noqa: E402  (the same work count as the CPU benchmark, stdlib only)
from torch_peer import torch_model  # noqa: E402

ROWS = [(1000, 1, 256, 64), (200, 8, 256, 64), (100, 32, 128, 64), (100, 64, 512, 128), (50, 256, 1024, 256)]


def cupy_events():
    import cupy as cp

    start, stop = cp.cuda.Event(), cp.cuda.Event()
    return start.record, stop.record, lambda: (stop.synchronize(), cp.cuda.get_elapsed_time(start, stop))[1]


def torch_events():
    import torch

    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    return start.record, stop.record, lambda: (stop.synchronize(), start.elapsed_time(stop))[1]


def alternating(result, calls, warmup, repeats):
    """Time `calls` ({key: (events, call)}) in turns: each one's first call and `warmup` more
    untimed, then `repeats` rounds of one timed call of each (between two CUDA events, each
    library's own, on its current stream). Sets result[key_ms] (the median) and
    result[key_samples]; a call that fails records result[key_error] and drops out, the others
    go on. Returns {key: its first call's result} of those that never failed."""
    firsts, samples = {}, {}

    def failed(key, error):
        result[f"{key}_error"] = f"{type(error).__name__}: {str(error)[:500]}"
        print(f"  {key}: {result[f'{key}_error']}", flush=True)
        firsts.pop(key, None)
        samples.pop(key, None)

    for key, (_, call) in calls.items():
        try:
            firsts[key] = call()
            for _ in range(warmup):
                call()
            samples[key] = []
        except Exception as error:
            failed(key, error)
    for _ in range(repeats):
        for key in list(samples):
            events, call = calls[key]
            try:
                start, stop, elapsed = events()
                start()
                call()
                stop()
                samples[key].append(elapsed())
            except Exception as error:
                failed(key, error)
    for key, times in samples.items():
        result[f"{key}_ms"], result[f"{key}_samples"] = statistics.median(times), times
    return firsts


def gemm_rate(cp, size=8192, repeats=10):
    """The card's float32 cuBLAS rate (TFLOP/s) on a size³ product of random matrices."""
    rng = cp.random.default_rng(0)
    A, B = rng.standard_normal((size, size), dtype=cp.float32), rng.standard_normal((size, size), dtype=cp.float32)
    timing = {}
    alternating(timing, {"gemm": (cupy_events, lambda: A @ B)}, 2, repeats)
    return 2 * size**3 / (timing["gemm_ms"] * 1e-3) / 1e12


def make_case(np, T, B, d, k, seed=0):
    rng = np.random.default_rng(seed)
    bound = 1 / math.sqrt(d)
    weights = {name: rng.uniform(-bound, bound, shape).astype(np.float32)
               for name, shape in (("U", (k, d)), ("W", (d, d)), ("V", (d, k)), ("b", (d,)), ("c", (k,)))}
    x = rng.standard_normal((T, B, k)).astype(np.float32)
    targets = rng.integers(0, k, (T, B))
    return weights, x, targets


def backend_for(variant):
    """The CUDA backend a variant name stands for: GEMM ("cublas" | "numba"), then "-step" for
    the step path, then "-fused" | "-gemm" to fix its per-step product (default: "auto")."""
    from gpurnn.backends.cuda import CUDABackend

    gemm, *rest = variant.split("-")
    return CUDABackend(gemm=gemm, persistent="step" not in rest, step_product=rest[1] if len(rest) > 1 else "auto")


def bench_row(row, warmup, repeats, variants):
    import cupy as cp
    import numpy as np
    import torch

    import gpurnn

    T, B, d, k = row
    weights, x, targets = make_case(np, T, B, d, k)
    params = gpurnn.Params(*(cp.asarray(weights[name]) for name in ("U", "W", "V", "b", "c")))
    x_dev, t_dev = cp.asarray(x), cp.asarray(targets)
    result = {"T": T, "B": B, "n": k, "d": d, "k": k, "gflop": flops(T, B, k, d, k) / 1e9}
    calls = {}
    for variant in variants:
        try:
            backend = backend_for(variant)
        except Exception as error:
            result[f"gpurnn_{variant}_error"] = f"{type(error).__name__}: {error}"
            continue
        calls[f"gpurnn_{variant}"] = (cupy_events, lambda be=backend: gpurnn.bptt(params, x_dev, t_dev, backend=be))

    device = torch.device("cuda")
    rnn, head = torch_model(torch, weights, device)
    xt, tt = torch.from_numpy(x).to(device), torch.from_numpy(targets).to(device)

    def torch_step():
        for p in (*rnn.parameters(), *head.parameters()):
            p.grad = None
        states, _ = rnn(xt)
        loss = torch.nn.functional.cross_entropy(head(states).reshape(T * B, k), tt.reshape(-1), reduction="sum")
        loss.backward()
        return loss

    calls["torch"] = (torch_events, torch_step)
    firsts = alternating(result, calls, warmup, repeats)
    done = [v for v in variants if f"gpurnn_{v}" in firsts]
    if "torch" in firsts and done:
        first = firsts[f"gpurnn_{done[0]}"]
        torch_loss = float(firsts["torch"].detach())
        result["loss_rel_diff"] = abs(first.loss - torch_loss) / abs(torch_loss)
        dW_torch = rnn.weight_hh_l0.grad.T.cpu().numpy()
        result["dW_rel_diff"] = float(np.linalg.norm(cp.asnumpy(first.grads.W) - dW_torch) / np.linalg.norm(dW_torch))
    if done:
        best = min(result[f"gpurnn_{g}_ms"] for g in done)
        result["best_gpurnn_ms"] = best
        result["gpurnn_tflops"] = flops(T, B, k, d, k) / (best * 1e-3) / 1e12
        if "torch_ms" in result:
            result["ratio_torch_over_gpurnn"] = result["torch_ms"] / best
    if "torch_ms" in result:
        result["torch_tflops"] = flops(T, B, k, d, k) / (result["torch_ms"] * 1e-3) / 1e12
    return result


def tf32_off(torch):
    """TF32 off for torch's matmuls, cuDNN and cuDNN's RNNs (the legacy flags, and the
    fp32_precision settings where this torch has them); CuPy uses TF32 only with CUPY_TF32=1.
    The settings as read back."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    settings = {"CUPY_TF32": os.environ.get("CUPY_TF32", "unset")}
    for name in ("cuda.matmul", "cudnn", "cudnn.rnn"):
        obj = functools.reduce(getattr, name.split("."), torch.backends)
        if hasattr(obj, "fp32_precision"):           # torch 2.9+
            obj.fp32_precision = "ieee"
    for name in ("cuda.matmul.allow_tf32", "cudnn.allow_tf32", "cuda.matmul.fp32_precision", "cudnn.fp32_precision",
                 "cudnn.rnn.fp32_precision"):
        try:
            settings[f"torch.backends.{name}"] = functools.reduce(getattr, name.split("."), torch.backends)
        except Exception as error:       # absent from this torch, or refused (mixed legacy and new API)
            settings[f"torch.backends.{name}"] = f"{type(error).__name__}: {error}"
    return settings


def tf32_verdict(settings):
    """"TF32 off" where every setting read back says so (absent ones aside), else which did not."""
    on = [name for name, value in settings.items()
          if value not in (False, "ieee", "unset") and not str(value).startswith("AttributeError")]
    return f"TF32 NOT off: {', '.join(on)}" if on else "TF32 off"


def fmt(r, key, width):
    """r[key] to 2 decimals in `width` columns; "error" where its variant failed, "-" where absent."""
    value = r.get(key)
    if isinstance(value, float):
        return f"{value:>{width}.2f}"
    return f"{'error' if key.replace('_ms', '_error') in r else '-':>{width}}"


def main(out=None, jsonl=None, warmup=2, repeats=10, rows="", variants="cublas,numba,cublas-step"):
    """Time gpurnn (CUDA backend) against torch.nn.RNN on cuDNN, forward + backward."""
    import cupy as cp
    import torch

    started = time.time()
    chosen = [ROWS[int(i)] for i in rows.split(",")] if rows else ROWS
    variants = variants.split(",")
    os.environ.pop("CUPY_TF32", None)
    props = cp.cuda.runtime.getDeviceProperties(0)
    report = {"card": props["name"].decode(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "torch": torch.__version__, "cudnn": torch.backends.cudnn.version(), "cupy": cp.__version__,
              "tf32": tf32_off(torch), "variants": variants}
    lines = open(jsonl, "w") if jsonl else None

    def emit(record):
        if lines:
            lines.write(json.dumps(record) + "\n")
            lines.flush()

    try:
        report["gemm_tflops_f32"] = gemm_rate(cp)
        print(f"{report['card']}: cuBLAS float32 GEMM 8192³ = {report['gemm_tflops_f32']:.1f} TFLOP/s "
              f"(TF32 off: {report['tf32']})", flush=True)
    except Exception as error:
        report["gemm_error"] = f"{type(error).__name__}: {error}"
    emit(report)
    report["rows"] = []
    for row in chosen:
        try:
            r = bench_row(row, warmup, repeats, variants)
        except Exception as error:     # the row's setup failed: record it, go on
            r = dict(zip("TBdk", row), error=f"{type(error).__name__}: {str(error)[:500]}")
            print(f"row {row}: {r['error']}", flush=True)
        report["rows"].append(r)
        emit(r)
        print(f"T={r['T']} B={r['B']} d={r['d']} k={r['k']}: " + ", ".join(
            f"{g} {fmt(r, f'gpurnn_{g}_ms', 0)} ms" for g in variants) + f", torch {fmt(r, 'torch_ms', 0)} ms, "
            f"loss diff {r.get('loss_rel_diff', float('nan')):.1e}, dW diff {r.get('dW_rel_diff', float('nan')):.1e}",
            flush=True)
    report["seconds"] = time.time() - started
    if out:
        out.write_text(json.dumps(report, indent=1))
    print(f"\n{'T':>5} {'B':>4} {'d':>5} {'k':>4} " + "".join(f"{g + ' ms':>12}" for g in variants)
          + f"{'torch ms':>10} {'torch/ours':>10} {'ours TF/s':>9} {'torch TF/s':>10}")
    for r in report["rows"]:
        print(f"{r['T']:>5} {r['B']:>4} {r['d']:>5} {r['k']:>4} " + "".join(fmt(r, f"gpurnn_{g}_ms", 12) for g in variants)
              + fmt(r, "torch_ms", 10) + " " + fmt(r, "ratio_torch_over_gpurnn", 10) + " "
              + fmt(r, "gpurnn_tflops", 9) + " " + fmt(r, "torch_tflops", 10))
    failed = sum(any(key.endswith("error") for key in r) for r in report["rows"])
    print(f"verdict: {len(report['rows']) - failed}/{len(report['rows'])} rows without errors, "
          f"{tf32_verdict(report['tf32'])}", flush=True)


def cli():
    """argparse, not typer: the GPU machine's python3 has numba, CuPy and torch, maybe no more."""
    parser = argparse.ArgumentParser(description="gpurnn (CUDA backend) against torch.nn.RNN on cuDNN, forward + backward")
    parser.add_argument("--out", type=Path, help="write the whole report as one JSON file here at the end")
    parser.add_argument("--jsonl", type=Path, help="write a header line, then one JSON line per finished row, here")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls first (compilation happens there)")
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per variant; the median is reported")
    parser.add_argument("--rows", default="", help="subset of the rows by index, e.g. '0,2' (default: all)")
    parser.add_argument("--variants", default="cublas,numba,cublas-step", help="gpurnn variants to time")
    main(**vars(parser.parse_args()))


if __name__ == "__main__":
    cli()
