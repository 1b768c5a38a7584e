"""gpurnn.torch.RNN against torch.nn.RNN as modules: forward + backward, the same weights and inputs.

    .venv/bin/python profiling/bench_torch_module.py [--threads 1] [--rounds 3] [--repeats 10]

One process (both are torch modules), float32, tanh; --threads sets torch's threads and the
BLAS libraries' (threadpoolctl: NumPy's and SciPy's OpenBLAS, which gpurnn's CPU backend
calls) alike.
Two thread pools in one process each spin while the other works: on a machine with more
runnable threads than cores that measures the contention, not the code (RESULTS.md). A call is: zero the gradients, module(x, h0),
loss = Σ output ⊙ R + Σ h_n (R a fixed random tensor, so every output carries a gradient),
backward to x, h0 and every parameter. Each round times `repeats` calls of one side after
`warmup` untimed ones (Numba compiles there), the sides alternating round by round; the table
shows medians over all samples, after checking both sides' gradients agree. With a CUDA GPU
(torch.cuda.is_available()) the rows run there too, against cuDNN with TF32 off, each call
ended by torch.cuda.synchronize().
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from threadpoolctl import threadpool_limits
from torch import nn

import gpurnn.torch as gt

# (T, B, n, d, layers, bidirectional): the B ≤ 64 shapes of profiling/bench_cpu.py, and a deep one
ROWS = [(100, 32, 64, 128, 1, False), (100, 1, 64, 128, 1, False), (1000, 8, 64, 256, 1, False),
        (200, 64, 65, 256, 1, False), (100, 32, 64, 128, 2, True)]


def make_pair(T, B, n, d, layers, bidirectional, device):
    torch.manual_seed(0)
    reference = nn.RNN(n, d, layers, bidirectional=bidirectional, device=device)
    ours = gt.RNN(n, d, layers, bidirectional=bidirectional, device=device)
    ours.load_state_dict(reference.state_dict())
    directions = 2 if bidirectional else 1
    x = torch.randn(T, B, n, device=device, requires_grad=True)
    h0 = torch.randn(layers * directions, B, d, device=device, requires_grad=True)
    R = torch.randn(T, B, directions * d, device=device)
    return reference, ours, x, h0, R


def step(module, x, h0, R):
    """One forward + backward; returns the gradients (x, h0, parameters)."""
    module.zero_grad(set_to_none=True)
    x.grad = h0.grad = None
    output, h_n = module(x, h0)
    ((output * R).sum() + h_n.sum()).backward()
    if x.is_cuda:
        torch.cuda.synchronize()
    return [x.grad, h0.grad] + [p.grad for p in module.parameters()]


def bench_row(row, device, rounds, repeats, warmup):
    reference, ours, x, h0, R = make_pair(*row, device)
    return time_sides({"torch": reference, "gpurnn": ours}, x, h0, R, rounds, repeats, warmup)


def time_sides(modules, x, h0, R, rounds, repeats, warmup):
    """{side: median ms of a `step`} for two modules {side: module} with equal weights, after
    checking their gradients agree; the sides alternate round by round."""
    first, second = modules
    for a, b in zip(step(modules[first], x, h0, R), step(modules[second], x, h0, R)):
        torch.testing.assert_close(a, b, rtol=2e-3, atol=2e-4)
    samples = {side: [] for side in modules}
    for r in range(rounds):
        for side in ((first, second) if r % 2 == 0 else (second, first)):
            for _ in range(warmup):
                step(modules[side], x, h0, R)
            for _ in range(repeats):
                start = time.perf_counter()
                step(modules[side], x, h0, R)
                samples[side].append(time.perf_counter() - start)
    return {side: 1e3 * statistics.median(values) for side, values in samples.items()}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1, help="torch's threads and the BLAS libraries'")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    threadpool_limits(limits=args.threads, user_api="blas")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    if "cuda" in devices:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    print("| device | T | B | n | d | layers | bidirectional | nn.RNN ms | gpurnn.torch.RNN ms | speed-up |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for device in devices:
        for row in ROWS:
            ms = bench_row(row, device, args.rounds, args.repeats, args.warmup)
            T, B, n, d, layers, bidirectional = row
            print(f"| {device} | {T} | {B} | {n} | {d} | {layers} | {'yes' if bidirectional else 'no'} | "
                  f"{ms['torch']:.2f} | {ms['gpurnn']:.2f} | {ms['torch'] / ms['gpurnn']:.2f}× |", flush=True)


if __name__ == "__main__":
    main()
