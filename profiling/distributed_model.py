"""Cost model of a data-parallel step: predicted scaling efficiency at 1-64 GPUs (docs/distributed.md).

    .venv/bin/python profiling/distributed_model.py          # prints the markdown tables

Weak scaling: each GPU keeps its batch B, N GPUs train on a global batch of N·B, and
efficiency E(N) = t_step / (t_step + t_allreduce(N)) (the flat buffer is summed after the
backward pass; nothing overlaps, see the overlap column). Every figure is a prediction from
the assumptions below, none a measurement on a GPU.

Step time on one GPU (float32): t_step = 2·T·t_rec + F / R + t_fixed, with t_rec the
persistent recurrence's µs per step (forward and backward each; profiling/RESULTS.md
## Persistent kernels, predicted), F = 2·T·B·(2nd + 3d² + 3dk) flops of the products at
R = 50 TFLOP/s, t_fixed = 0.2 ms (the trainer's ~25 launches, the loss read back, the
optimizer). Ring all-reduce of S bytes over N GPUs: 2(N−1)/N · S / bw + 2(N−1) · α, with
NVLink inside a node of 8 (bw = 350 GB/s NCCL bus bandwidth, α = 1 µs per ring step) and
InfiniBand NDR between nodes (one 400 Gb/s NIC per GPU: bw = 40 GB/s, α = 5 µs); NCCL's
tree replaces the 2(N−1)·α latency term by about 2·log2(N)·α across nodes (column "tree").
The last column is strong scaling instead: one batch B split over 8 GPUs (B/8 each), with
t_rec taken as independent of the batch (the recurrence's sequential steps stay T).
"""
from __future__ import annotations

import math

R_FLOPS = 50e12
T_FIXED = 0.2e-3
NODE = 8
LINKS = {"nvlink": (350e9, 1e-6), "ib": (40e9, 5e-6)}
GPUS = (1, 2, 4, 8, 16, 32, 64)

# (name, T, B per GPU, n, d, k, t_rec µs per step): the benchmark rows of profiling/RESULTS.md
# ## GPU (n = k, dense inputs) and the char model (65 symbols); t_rec from ## Persistent kernels
# (the step path's (50, 256, 1024) row: 2·B·d² flops a step at R, plus a 5 µs launch).
MODELS = [
    ("charlm", 50, 32, 65, 256, 65, 1.86),
    ("T1000 B1 d256", 1000, 1, 64, 256, 64, 1.86),
    ("T200 B8 d256", 200, 8, 64, 256, 64, 1.86),
    ("T100 B32 d128", 100, 32, 64, 128, 64, 0.41),
    ("T100 B64 d512", 100, 64, 128, 512, 128, 5.0),
    ("T50 B256 d1024", 50, 256, 256, 1024, 256, 2 * 256 * 1024**2 / R_FLOPS * 1e6 + 5),
]


def parameters(n, d, k) -> int:
    return n * d + d * d + d * k + d + k


def step_seconds(T, B, n, d, k, t_rec_us) -> float:
    flops = 2 * T * B * (2 * n * d + 3 * d * d + 3 * d * k)
    return 2 * T * t_rec_us * 1e-6 + flops / R_FLOPS + T_FIXED


def allreduce_seconds(size_bytes, gpus, tree=False) -> float:
    if gpus == 1:
        return 0.0
    bw, alpha = LINKS["nvlink" if gpus <= NODE else "ib"]
    latency = 2 * math.log2(gpus) * alpha if tree and gpus > NODE else 2 * (gpus - 1) * alpha
    return 2 * (gpus - 1) / gpus * size_bytes / bw + latency


def main():
    print("| model | parameters | all-reduce bytes/step | t_step 1 GPU (ms) | ring µs at 8 (NVLink) | "
          "ring µs at 64 (IB) | tree µs at 64 | output layer share (overlappable) |")
    print("|---|---|---|---|---|---|---|---|")
    rows = []
    for name, T, B, n, d, k, t_rec in MODELS:
        P = parameters(n, d, k)
        size = 4 * (P + 2)
        t = step_seconds(T, B, n, d, k, t_rec)
        rows.append((name, t, size))
        print(f"| {name} | {P:,} | {size / 1e6:.2f} MB | {1e3 * t:.2f} | {1e6 * allreduce_seconds(size, 8):.0f} | "
              f"{1e6 * allreduce_seconds(size, 64):.0f} | {1e6 * allreduce_seconds(size, 64, tree=True):.0f} | "
              f"{(d * k + k) / P:.0%} |")
    print()
    print("| model | " + " | ".join(f"E({g})" for g in GPUS) + " | E(64) tree | speed-up at 64 (ring) | "
          "splitting B over 8 GPUs |")
    print("|---|" + "---|" * (len(GPUS) + 3))
    for (name, t, size), (_, T, B, n, d, k, t_rec) in zip(rows, MODELS):
        effs = [t / (t + allreduce_seconds(size, g)) for g in GPUS]
        tree = t / (t + allreduce_seconds(size, 64, tree=True))
        split = t / (step_seconds(T, B / 8, n, d, k, t_rec) + allreduce_seconds(size, 8)) if B >= 8 else None
        print(f"| {name} | " + " | ".join(f"{e:.0%}" for e in effs) + f" | {tree:.0%} | {64 * effs[-1]:.0f}× | "
              f"{'—' if split is None else f'{split:.2f}×'} |")


if __name__ == "__main__":
    main()
