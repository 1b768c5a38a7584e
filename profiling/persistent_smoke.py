"""Run every persistent kernel once at a small size and check it against the CPU backend.

    python3 profiling/persistent_smoke.py        (a GPU; profiling/gpu_smoke.py runs `run`
                                                  for its persistent families, and
                                                  profiling/sanitize.sh runs those under
                                                  compute-sanitizer)

Variants: the block kernels with W rows in registers and 2 sequences per block (forward,
exact and truncated backward), and the cooperative kernels over 3 column groups × 3 batch
groups (9 blocks, a grid barrier per step). Exit status 1 on any mismatch.
"""
import dataclasses
import sys
import time

import numpy as np
from numba import cuda

from gpurnn.backends import get_backend
from gpurnn.kernels import persistent_backward as pb
from gpurnn.kernels import persistent_forward as pf
from gpurnn.kernels import persistent_plan as pp

T, B, TAU = 12, 5, 3


def inputs(rng, d, dtype):
    XP = rng.standard_normal((T, B, d)).astype(dtype)
    W = (rng.standard_normal((d, d)) / np.sqrt(d)).astype(dtype)
    s0 = rng.standard_normal((B, d)).astype(dtype)
    lengths = np.array([T, 0, 7, 1, T - 1], np.int64)[:B]
    G = rng.standard_normal((T, B, d)).astype(dtype)
    for b in range(B):
        G[lengths[b]:, b] = 0
    return XP, W, s0, lengths, G, rng.standard_normal((B, d)).astype(dtype)


def check(name, got, ref):
    err = float(np.max(np.abs(got - ref)) / (np.max(np.abs(ref)) + 1e-30))
    ok = np.all(np.isfinite(got)) and err < 1e-4
    print(f"{name:<34} max rel err {err:.2e}  {'ok' if ok else 'MISMATCH'}", flush=True)
    return ok


def run(label, d, dtype, fplan, bplan, truncate):
    rng = np.random.default_rng(0)
    XP, W, s0, lengths, G, g_last = inputs(rng, d, dtype)
    cpu = get_backend("cpu")
    S_ref = cpu.recurrence_forward(XP, W, s0, lengths, 0)
    d_ref, ds0_ref = cpu.recurrence_backward(G, g_last, S_ref, W, lengths, 0, truncate)
    dev = [cuda.to_device(a) for a in (XP, W, s0, lengths, G, g_last)]
    S = cuda.to_device(np.full((T + 1, B, d), np.nan, dtype))
    delta = cuda.to_device(np.full((T, B, d), np.nan, dtype))
    ds0 = cuda.to_device(np.full((B, d), np.nan, dtype))
    start = time.perf_counter()
    pf.persistent_forward(dev[0], dev[1], dev[2], dev[3], 0, S, plan=fplan)
    pb.persistent_backward(dev[4], dev[5], S, dev[1], dev[3], 0, truncate, delta, ds0, plan=bplan)
    cuda.synchronize()
    print(f"{label}: compile + run {time.perf_counter() - start:.1f} s", flush=True)
    return all([check(f"{label} S", S.copy_to_host(), S_ref),
                check(f"{label} delta", delta.copy_to_host(), d_ref),
                check(f"{label} ds0", ds0.copy_to_host(), ds0_ref)])


def run_cells(label, d, dtype, fplan, bplan, truncate):
    """Two cells (a layer's directions) in one launch of each paired plan: each cell's S, Δ and
    ds0 equal (bit for bit) to a launch of that cell alone, and close to the CPU backend."""
    single = {plan: dataclasses.replace(plan, cells=1) for plan in (fplan, bplan)}
    cells = [inputs(np.random.default_rng(seed), d, dtype) for seed in (0, 1)]
    lengths = cuda.to_device(cells[0][3])
    dev = [[cuda.to_device(a) for a in (XP, W, s0, G, g_last)] for XP, W, s0, _, G, g_last in cells]
    out = [[cuda.to_device(np.full(shape, np.nan, dtype)) for shape in ((T + 1, B, d), (T, B, d), (B, d))]
           for _ in range(2 * len(cells))]   # each cell paired, then alone
    start = time.perf_counter()
    alone = (single[fplan], single[bplan])
    for fp, bp, group in ((fplan, bplan, [0, 1]), (*alone, [2]), (*alone, [3])):
        which = [i % 2 for i in group]
        pf.persistent_forward_cells([(*dev[c][:3], out[i][0]) for c, i in zip(which, group)], lengths, 0, plan=fp)
        pb.persistent_backward_cells([(dev[c][3], dev[c][4], out[i][0], dev[c][1], out[i][1], out[i][2])
                                      for c, i in zip(which, group)], lengths, 0, truncate, plan=bp)
    cuda.synchronize()
    print(f"{label}: compile + run {time.perf_counter() - start:.1f} s", flush=True)
    cpu, ok = get_backend("cpu"), []
    for c, (XP, W, s0, host_lengths, G, g_last) in enumerate(cells):
        paired, alone = [a.copy_to_host() for a in out[c]], [a.copy_to_host() for a in out[2 + c]]
        same = all(a.tobytes() == b.tobytes() for a, b in zip(paired, alone))
        print(f"{label} cell {c} paired == alone: {'ok' if same else 'MISMATCH'}", flush=True)
        S_ref = cpu.recurrence_forward(XP, W, s0, host_lengths, 0)
        refs = (S_ref, *cpu.recurrence_backward(G, g_last, S_ref, W, host_lengths, 0, truncate))
        ok += [same] + [check(f"{label} cell {c} {name}", got, ref)
                        for name, got, ref in zip(("S", "delta", "ds0"), paired, refs)]
    return all(ok)


def main():
    print(getattr(cuda.get_current_device(), "name", "simulator"))
    d = 96
    block_f = pp.custom_plan("block", B, d, np.float32, rows=2, rreg=32)
    block_b = pp.custom_plan("block", B, d, np.float32, rows=2, rreg=32, chains=TAU + 1)
    coop = pp.custom_plan("coop", B, d, np.float32, rows=2)      # 3 column groups × 3 batch groups
    ok = [run("block fwd + truncated bwd", d, np.float32, block_f, block_b, TAU),
          run("block fwd + exact bwd", d, np.float32, block_f, block_f, None),
          run("coop fwd + exact bwd", d, np.float32, coop, coop, None)]
    sys.exit(0 if all(ok) else 1)


if __name__ == "__main__":
    main()
