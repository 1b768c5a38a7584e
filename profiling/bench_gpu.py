"""gpurnn's CUDA backend against torch.nn.RNN + nn.Linear + cross-entropy (sum) on cuDNN,
forward + backward, on one GPU, in one process.

    python3 profiling/bench_gpu.py --out $OUT/bench_gpu.json

Both sides get the same float32 weights and the same dense inputs (T,B,n) with n = k, and
compute the same function (the losses are compared, and the gradients on the first row).
Each variant is timed with CUDA events around `repeats` calls after `warmup` untimed ones
(Numba compiles and cuDNN picks its algorithms there); the table shows medians.
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
import json
import math
import statistics
import time
from pathlib import Path

from bench_cpu import flops   # the same work count as the CPU benchmark (stdlib-only module)
from torch_peer import torch_model

ROWS = [(1000, 1, 256, 64), (200, 8, 256, 64), (100, 32, 128, 64), (100, 64, 512, 128), (50, 256, 1024, 256)]


def cupy_events():
    import cupy as cp

    start, stop = cp.cuda.Event(), cp.cuda.Event()
    return start.record, stop.record, lambda: (stop.synchronize(), cp.cuda.get_elapsed_time(start, stop))[1]


def torch_events():
    import torch

    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    return start.record, stop.record, lambda: (stop.synchronize(), start.elapsed_time(stop))[1]


def median_ms(events, call, warmup, repeats):
    """Median milliseconds of call() between two CUDA events (each library's own, on its
    current stream), after `warmup` untimed calls; and all the samples."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        start, stop, elapsed = events()
        start()
        call()
        stop()
        times.append(elapsed())
    return statistics.median(times), times


def gemm_rate(cp, size=8192, repeats=10):
    """The card's float32 cuBLAS rate (TFLOP/s) on a size³ product of random matrices."""
    rng = cp.random.default_rng(0)
    A, B = rng.standard_normal((size, size), dtype=cp.float32), rng.standard_normal((size, size), dtype=cp.float32)
    ms, _ = median_ms(cupy_events, lambda: A @ B, 2, repeats)
    return 2 * size**3 / (ms * 1e-3) / 1e12


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
    ours = {}
    for variant in variants:
        backend = backend_for(variant)
        ours[variant] = gpurnn.bptt(params, x_dev, t_dev, backend=backend)
        ms, samples = median_ms(cupy_events, lambda: gpurnn.bptt(params, x_dev, t_dev, backend=backend),
                                warmup, repeats)
        result[f"gpurnn_{variant}_ms"], result[f"gpurnn_{variant}_samples"] = ms, samples

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

    torch_loss = float(torch_step().detach())
    ms, samples = median_ms(torch_events, torch_step, warmup, repeats)
    result["torch_ms"], result["torch_samples"] = ms, samples
    first = ours[variants[0]]
    result["loss_rel_diff"] = abs(first.loss - torch_loss) / abs(torch_loss)
    dW_torch = rnn.weight_hh_l0.grad.T.cpu().numpy()
    dW_ours = cp.asnumpy(first.grads.W)
    result["dW_rel_diff"] = float(np.linalg.norm(dW_ours - dW_torch) / np.linalg.norm(dW_torch))
    best = min(result[f"gpurnn_{g}_ms"] for g in variants)
    result["best_gpurnn_ms"] = best
    result["ratio_torch_over_gpurnn"] = result["torch_ms"] / best
    result["gpurnn_tflops"] = flops(T, B, k, d, k) / (best * 1e-3) / 1e12
    result["torch_tflops"] = flops(T, B, k, d, k) / (result["torch_ms"] * 1e-3) / 1e12
    return result


def main(out=None, warmup=2, repeats=10, rows="", variants="cublas,numba,cublas-step"):
    """Time gpurnn (CUDA backend) against torch.nn.RNN on cuDNN, forward + backward."""
    import cupy as cp
    import torch

    started = time.time()
    chosen = [ROWS[int(i)] for i in rows.split(",")] if rows else ROWS
    variants = variants.split(",")
    props = cp.cuda.runtime.getDeviceProperties(0)
    report = {"card": props["name"].decode(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "torch": torch.__version__, "cudnn": torch.backends.cudnn.version(), "cupy": cp.__version__,
              "gemm_tflops_f32": gemm_rate(cp), "rows": []}
    print(f"{report['card']}: cuBLAS float32 GEMM 8192³ = {report['gemm_tflops_f32']:.1f} TFLOP/s", flush=True)
    for row in chosen:
        report["rows"].append(bench_row(row, warmup, repeats, variants))
        r = report["rows"][-1]
        print(f"T={r['T']} B={r['B']} d={r['d']} k={r['k']}: " + ", ".join(
            f"{g} {r[f'gpurnn_{g}_ms']:.2f} ms" for g in variants) + f", torch {r['torch_ms']:.2f} ms, "
            f"loss diff {r['loss_rel_diff']:.1e}, dW diff {r['dW_rel_diff']:.1e}", flush=True)
    report["seconds"] = time.time() - started
    if out:
        out.write_text(json.dumps(report, indent=1))
    print(f"\n{'T':>5} {'B':>4} {'d':>5} {'k':>4} " + "".join(f"{g + ' ms':>12}" for g in variants)
          + f"{'torch ms':>10} {'torch/ours':>10} {'ours TF/s':>9} {'torch TF/s':>10}")
    for r in report["rows"]:
        print(f"{r['T']:>5} {r['B']:>4} {r['d']:>5} {r['k']:>4} " + "".join(f"{r[f'gpurnn_{g}_ms']:>12.2f}" for g in variants)
              + f"{r['torch_ms']:>10.2f} {r['ratio_torch_over_gpurnn']:>10.2f} {r['gpurnn_tflops']:>9.3f} "
              f"{r['torch_tflops']:>10.3f}")


def cli():
    """argparse, not typer: the GPU machine's python3 has numba, CuPy and torch, maybe no more."""
    parser = argparse.ArgumentParser(description="gpurnn (CUDA backend) against torch.nn.RNN on cuDNN, forward + backward")
    parser.add_argument("--out", type=Path, help="write the JSON here")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls first (compilation happens there)")
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per variant; the median is reported")
    parser.add_argument("--rows", default="", help="subset of the rows by index, e.g. '0,2' (default: all)")
    parser.add_argument("--variants", default="cublas,numba,cublas-step", help="gpurnn variants to time")
    main(**vars(parser.parse_args()))


if __name__ == "__main__":
    cli()
