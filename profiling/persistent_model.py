"""Predicted time of the persistent kernels on an H100 SXM, from first principles (no GPU).

    .venv/bin/python profiling/persistent_model.py

For each of the issue's (T, B, d, k) rows and each direction: the plan `plan()` picks, and
per step the larger of three floors — shared-memory wavefronts (1 per clock per SM), warp
instructions issued (4 per clock per SM), FMA throughput — plus a fixed per-step cost (the
block barrier and the σ tail; for the cooperative variant the state's trip through L2 and
the grid barrier). Every constant below is an assumption to check on the card (METHOD.md:
predict, then measure); RESULTS.md's "Persistent kernels" section holds this table.
"""
import math

import numpy as np

from gpurnn.kernels import persistent_plan as pp

CLOCK = 1.755e9          # sustained SM clock under load (boost 1.98 GHz)
ISSUE = 4                # warp instructions per clock per SM (4 schedulers)
FMA_WARPS = {4: 4, 8: 2}  # warp-wide FMAs per clock per SM: FP32 128 lanes, FP64 64 lanes
STEP_TAIL = 200          # clocks per step: σ latency, smem store, barrier, first load again
L2_BYTES_PER_S = 5.5e12  # L2 → SM bandwidth, all SMs together
L2_LATENCY = 0.35e-6     # s, a dependent L2 round trip (the state written by other blocks)
GRID_SYNC = (1.0e-6, 2.0e-6)   # s, cooperative-groups grid barrier, 100+ blocks (low, high)
LAUNCH = 15e-6           # s, one Numba launch from Python, once per call
ROWS = [(1000, 1, 256, 64), (200, 8, 256, 64), (100, 32, 128, 64), (100, 64, 512, 128), (50, 256, 1024, 256)]


def block_step(p, d, isz):
    """Seconds per step of the block variant (each block on its own SM)."""
    warps = p.threads // 32
    acc = p.rows * p.chains
    wave_w = isz // 4                                  # wavefronts per warp-wide W load
    x_loads = d * acc / (2 if p.pairs else 1)          # broadcasts of the state, 1 wavefront each
    smem = warps * ((d - p.rreg) * wave_w + x_loads)   # W from smem + x broadcasts
    issue = warps * (x_loads + d * acc + 2 * (d - p.rreg)) / ISSUE
    fma = warps * d * acc / FMA_WARPS[isz]
    return (max(smem, issue, fma) + STEP_TAIL) / CLOCK, dict(smem=smem, issue=issue, fma=fma)


def coop_step(p, B, d, isz, grid_sync):
    """Seconds per step of the cooperative variant."""
    ks = p.threads // pp.COOP_COLUMNS
    warps = p.threads // 32
    x_per_i = p.rows / (2 if p.pairs else 1)
    smem = d * (isz // 4 + x_per_i)                    # KS warps share the d inner steps
    issue = warps * (d / ks) * (x_per_i + p.rows + 2) / ISSUE
    fma = warps * (d / ks) * p.rows / FMA_WARPS[isz]
    state = p.grid * p.rows * d * isz / L2_BYTES_PER_S + L2_LATENCY
    core = (max(smem, issue, fma) + STEP_TAIL) / CLOCK
    return core + state + grid_sync, dict(smem=smem, issue=issue, fma=fma)


def predict(T, B, d, dtype, direction, grid_sync=GRID_SYNC[0], pairs=None):
    """(plan, seconds per step, floors in clocks) with the default plan, or with paired state
    loads switched to `pairs` (block: W rows in registers cut to PAIRS_UNROLL_LIMIT)."""
    p = pp.plan(B, d, dtype, direction=direction)
    if pairs is not None and p.variant != "step" and pairs != p.pairs:
        rreg = min(p.rreg, pp.PAIRS_UNROLL_LIMIT // (p.rows * p.chains)) if pairs else p.rreg
        p = pp.custom_plan(p.variant, B, d, dtype, rows=p.rows, rreg=rreg, chains=p.chains, pairs=pairs)
    isz = np.dtype(dtype).itemsize
    if p.variant == "step":
        return p, None, None
    waves = math.ceil(p.grid / pp.H100.sm_count) if p.variant == "block" else 1
    step, floors = block_step(p, d, isz) if p.variant == "block" else coop_step(p, B, d, isz, grid_sync)
    return p, step * waves, floors


def main():
    print(f"{'T':>5} {'B':>4} {'d':>5} {'dir':<8} {'variant':<6} {'pairs':<5} {'rows':>4} {'rreg':>4} {'grid':>4} "
          f"{'smem KB':>7} {'bound':<6} {'µs/step':>11} {'ms total':>11}")
    for T, B, d, _ in ROWS:
        for direction in ("forward", "backward"):
            for pairs in (None, False, True):
                p, low, floors = predict(T, B, d, np.float32, direction, pairs=pairs)
                if low is None:
                    print(f"{T:>5} {B:>4} {d:>5} {direction:<8} step   ({p.reason})")
                    break
                if pairs is not None and pairs == pp.plan(B, d, np.float32, direction=direction).pairs:
                    continue            # the default already printed
                high = predict(T, B, d, np.float32, direction, GRID_SYNC[1], pairs=pairs)[1]
                bound = max(floors, key=floors.get)
                span = f"{low * 1e6:.2f}" if high == low else f"{low * 1e6:.2f}-{high * 1e6:.2f}"
                total = f"{(T * low + LAUNCH) * 1e3:.3f}" if high == low else \
                    f"{(T * low + LAUNCH) * 1e3:.2f}-{(T * high + LAUNCH) * 1e3:.2f}"
                label = "" if pairs is None else " (alt)"
                print(f"{T:>5} {B:>4} {d:>5} {direction:<8} {p.variant:<6} {str(p.pairs):<5} {p.rows:>4} "
                      f"{p.rreg:>4} {p.grid:>4} {p.smem / 1024:>7.1f} {bound:<6} {span:>11} {total:>11}{label}")


if __name__ == "__main__":
    main()
