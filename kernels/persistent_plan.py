"""Which persistent variant runs a (B, d) recurrence, with what shape: pure Python, no GPU.

Two variants (kernels in `persistent_forward` / `persistent_backward`):

  block  one block per slice of `rows` sequences, W (or W^T) whole on chip: its first `rreg`
         rows in registers (thread j holds W[i, j], i < rreg), the others in shared memory;
         no grid barrier. Fits while (d − rreg)·d + 2·R·d elements fit the block's shared
         memory (R = rows · chains), e.g. float32 d = 256 with rreg = 128.
  coop   a cooperative grid of column groups × batch groups: block (g, h) keeps W[:, g·C:(g+1)·C]
         (C = 32 columns) in shared memory and computes those columns for its `rows` sequences;
         the state crosses blocks through global memory, one grid-wide barrier per step.

Both directions of a layer ("cells": each its own W, inputs and states, the same lengths) can
run in one launch, the cell chosen by the grid's y (`Plan.cells` = 2): the block variant's
blocks are independent, so a pair always fits (its rows per block chosen for 2·B sequences, so
the doubled grid fills the device as one direction's would); the cooperative variant's pair
must be co-resident as one grid (2 × its blocks), else each direction gets a launch of its own
(the plan says why).

`plan()` is a function of the shape and the device limits alone, so the backend, the tests
and the profiling scripts all see the same choice; `custom_plan()` builds any other.
`launch_blocker()` then checks a plan against what the compiled kernel needs (its register
count, read from the compiled code at run time, rather than the estimate `plan()` made) and
what the driver allowed; the launcher raises `PersistentUnavailable` with that reason, and
the backend runs the step path instead.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
from numba import config, cuda

SIMULATOR = bool(config.ENABLE_CUDASIM)

COOP_COLUMNS = 32       # C: one warp of columns, so a warp's W loads are one contiguous row piece
COOP_THREADS = 256      # C × KS threads: KS = 8 warps split the inner dimension i
COOP_REGS = 255         # registers per thread ptxas gives the cooperative kernels (up to 255)
MAX_ACC = 16            # register accumulators per thread (rows × chains) before spilling risk
REG_OPTIONS = tuple(range(0, 129, 16))  # W rows the block variant may hold in registers
UNROLL_LIMIT = 256       # rreg · rows · chains: larger register loops are not fully unrolled
                         # by NVVM, and W's register copy then lives in local memory
PAIRS_UNROLL_LIMIT = 64  # the same with paired state loads (ptxas: 64·1 → 112 registers,
                         # 128·1 → 255 and spills)
DEFAULT_SMEM_CARVE = 1024  # bytes the runtime reserves per block on sm_80+ (not usable)
DEFAULT_DYNAMIC_SMEM = 48 * 1024   # dynamic shared memory a kernel gets without opting in
REG_UNIT = 256             # registers are allocated per warp in units of this many
MAX_CELLS = 2              # cells (a layer's directions) one launch runs, one per grid row y


class PersistentUnavailable(RuntimeError):
    """A persistent kernel cannot run on the device at hand; the message says why."""


@dataclass(frozen=True)
class Limits:
    """What a device offers a kernel. Defaults: an H100 SXM (cc 9.0)."""

    smem_per_block: int = 232448   # 227 KB opt-in dynamic shared memory per block
    smem_per_sm: int = 233472      # 228 KB per multiprocessor
    sm_count: int = 132
    regs_per_sm: int = 65536


H100 = Limits()


def device_limits() -> Limits:
    """The current device's limits (H100 defaults under the simulator)."""
    if SIMULATOR:
        return H100
    dev = cuda.get_current_device()
    return Limits(smem_per_block=dev.MAX_SHARED_MEMORY_PER_BLOCK_OPTIN,
                  smem_per_sm=dev.MAX_SHARED_MEMORY_PER_MULTIPROCESSOR,
                  sm_count=dev.MULTIPROCESSOR_COUNT,
                  regs_per_sm=dev.MAX_REGISTERS_PER_MULTIPROCESSOR)


@dataclass(frozen=True)
class Plan:
    """How one persistent launch runs. variant: "block" | "coop" | "step" (not applicable:
    use the step-by-step kernels, `reason` says why). rows: sequences per block; chains:
    live gradient chains (1 forward and exact backward, τ+1 truncated); rreg: W rows in
    registers; cols: W columns per block; ksplit: threads sharing one column's sum; pairs:
    the state is read from shared memory two float32 at a time (8-byte broadcasts), which
    halves the state loads of the product (float32 with even d only; `plan` takes it for the
    cooperative variant, where those loads dominate; the block variant's W in registers
    needs the registers more). cells: cells launched together (grid (grid, cells), blockIdx.y
    the cell; `grid` counts one cell's blocks)."""

    variant: str
    reason: str
    rows: int = 1
    chains: int = 1
    rreg: int = 0
    cols: int = 0
    ksplit: int = 1
    grid: int = 0
    threads: int = 0
    smem: int = 0
    pairs: bool = False
    cells: int = 1


def block_registers(regs_per_thread: int, threads: int) -> int:
    """Registers one block of `threads` holds: each warp's share rounded up to REG_UNIT."""
    per_warp = math.ceil(regs_per_thread * 32 / REG_UNIT) * REG_UNIT
    return per_warp * math.ceil(threads / 32)


def launch_blocker(the_plan: Plan, *, regs_per_thread: int, max_threads_per_block: int, limits: Limits = H100,
                   optin_error: str | None = None, coop_grid_limit: int | None = None) -> str | None:
    """Why the compiled kernel of `the_plan` cannot launch (None: it can).

    regs_per_thread, max_threads_per_block: the compiled kernel's own figures (the driver's
    function attributes; the second already counts its registers); optin_error: the driver's
    answer when the kernel asked for more than DEFAULT_DYNAMIC_SMEM of dynamic shared memory
    (None: granted); coop_grid_limit: the driver's count of co-resident blocks for a
    cooperative launch (None: computed here from registers and shared memory)."""
    if the_plan.threads > max_threads_per_block:
        return (f"the compiled {the_plan.variant} kernel uses {regs_per_thread} registers per thread, which allows "
                f"{max_threads_per_block} threads per block; the plan needs {the_plan.threads}")
    if block_registers(regs_per_thread, the_plan.threads) > limits.regs_per_sm:
        return (f"{the_plan.threads} threads × {regs_per_thread} registers exceed the multiprocessor's "
                f"{limits.regs_per_sm} registers")
    if the_plan.smem > limits.smem_per_block:
        return f"{the_plan.smem} bytes of shared memory per block; the device offers {limits.smem_per_block}"
    if the_plan.smem > DEFAULT_DYNAMIC_SMEM and optin_error is not None:
        return f"the driver refused the opt-in to {the_plan.smem} bytes of dynamic shared memory: {optin_error}"
    if the_plan.variant == "coop":
        most = coop_grid_limit
        if most is None:
            per_sm = min(limits.regs_per_sm // block_registers(regs_per_thread, the_plan.threads),
                         limits.smem_per_sm // (the_plan.smem + DEFAULT_SMEM_CARVE))
            most = per_sm * limits.sm_count
        blocks = the_plan.grid * the_plan.cells
        if blocks > most:
            return (f"a cooperative grid of {blocks} blocks, but only {most} can be resident at once "
                    f"({regs_per_thread} registers per thread, {the_plan.smem} bytes of shared memory per block)")
    return None


def _pow2_at_least(n: int) -> int:
    return 1 << max(0, math.ceil(math.log2(max(n, 1))))


def block_smem(d, rreg, rows, chains, isz):
    """Bytes of shared memory of the block variant: W rows [rreg, d), two buffers of rows·chains·d."""
    return ((d - min(rreg, d)) * d + 2 * rows * chains * d) * isz


def coop_smem(d, rows, isz):
    """Bytes of shared memory of the cooperative variant: W[:, C columns], xs (rows·d), partials."""
    return (d * COOP_COLUMNS + rows * d + (COOP_THREADS // COOP_COLUMNS) * rows * COOP_COLUMNS) * isz


def pairs_possible(d, dtype) -> bool:
    """Paired state loads need float32 and an even d (8-byte aligned rows)."""
    return np.dtype(dtype) == np.float32 and d % 2 == 0


def _check_cells(cells):
    if cells not in range(1, MAX_CELLS + 1):
        raise ValueError(f"cells must be 1 or {MAX_CELLS} (a layer's directions), got {cells!r}")


def custom_plan(variant, B, d, dtype, *, rows, rreg=0, chains=1, pairs=False, cells=1, reason="chosen by hand"):
    """A plan with the given `rows` (and `rreg`, `chains` for "block", `pairs`, `cells`), its
    grid, threads and shared memory computed; for tests and experiments (no check that it fits
    a device: with pairs, keep rreg·rows·chains ≤ PAIRS_UNROLL_LIMIT)."""
    isz = np.dtype(dtype).itemsize
    _check_cells(cells)
    if pairs and not pairs_possible(d, dtype):
        raise ValueError(f"pairs needs float32 and an even d, got {np.dtype(dtype)} and d = {d}")
    if variant == "block":
        return Plan("block", reason, rows=rows, chains=chains, rreg=rreg, cols=d, grid=math.ceil(B / rows),
                    threads=max(32, 32 * math.ceil(d / 32)), smem=block_smem(d, rreg, rows, chains, isz),
                    pairs=pairs, cells=cells)
    if variant == "coop":
        return Plan("coop", reason, rows=rows, cols=COOP_COLUMNS, ksplit=COOP_THREADS // COOP_COLUMNS,
                    grid=math.ceil(d / COOP_COLUMNS) * math.ceil(B / rows), threads=COOP_THREADS,
                    smem=coop_smem(d, rows, isz), pairs=pairs, cells=cells)
    raise ValueError(f"variant must be 'block' or 'coop', got {variant!r}")


def _block_plan(B, d, dtype, chains, limits, cells):
    threads = max(32, 32 * math.ceil(d / 32))
    rows = min(_pow2_at_least(math.ceil(cells * B / limits.sm_count)), MAX_ACC // chains)
    isz = np.dtype(dtype).itemsize
    while rows >= 1:
        for rreg in sorted(REG_OPTIONS, reverse=True):   # more W in registers: less smem traffic
            acc = rows * chains
            regs = (rreg + 2 * acc) * (isz // 4) + 64     # W rows, accumulators, addressing
            if (rreg <= d and rreg * acc <= UNROLL_LIMIT
                    and block_smem(d, rreg, rows, chains, isz) <= limits.smem_per_block
                    and regs <= min(255, limits.regs_per_sm // threads)):
                both = f"; {cells} cells as independent blocks of one launch" if cells > 1 else ""
                return custom_plan("block", B, d, dtype, rows=rows, rreg=rreg, chains=chains, cells=cells,
                                   reason=f"W on chip: {rreg} rows in registers, the rest in shared memory{both}")
        rows //= 2
    return None


def _coop_plan(B, d, dtype, limits, cells):
    groups = math.ceil(d / COOP_COLUMNS)
    for rows in (1, 2, 4, 8):
        smem = coop_smem(d, rows, np.dtype(dtype).itemsize)
        if smem > limits.smem_per_block:
            return None
        per_sm = min(limits.smem_per_sm // (smem + DEFAULT_SMEM_CARVE),
                     limits.regs_per_sm // (COOP_THREADS * COOP_REGS))
        if cells * groups * math.ceil(B / rows) <= per_sm * limits.sm_count:
            both = f"; {cells} cells in one grid" if cells > 1 else ""
            return custom_plan("coop", B, d, dtype, rows=rows, pairs=pairs_possible(d, dtype), cells=cells,
                               reason=f"W split over {groups} column groups, one grid barrier per step{both}")
    return None


def plan(B, d, dtype, *, direction="forward", truncate=None, limits=H100, force=None, cells=1) -> Plan:
    """The persistent variant for a (B, d) recurrence in `dtype` ("forward" or "backward";
    `truncate` τ for truncated backward). `force` "block" | "coop" picks one (a "step" plan
    with the reason when it cannot run); None takes block when W fits one block, else coop.
    `cells` 2: both directions of a layer in one launch where they fit; else the plan of one
    direction (cells = 1, launched once per direction), its reason saying why."""
    _check_cells(cells)
    single = _plan(B, d, dtype, direction, truncate, limits, force, 1)
    if cells == 1 or single.variant == "step":
        return single
    paired = _plan(B, d, dtype, direction, truncate, limits, force, cells)
    if paired.variant != "step":
        return paired
    return dataclasses.replace(single, reason=f"one launch per direction ({paired.reason}); {single.reason}")


def _plan(B, d, dtype, direction, truncate, limits, force, cells) -> Plan:
    if direction not in ("forward", "backward"):
        raise ValueError(f"direction must be 'forward' or 'backward', got {direction!r}")
    if force not in (None, "block", "coop"):
        raise ValueError(f"force must be None, 'block' or 'coop', got {force!r}")
    if np.dtype(dtype) not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64, got {np.dtype(dtype)}")
    if d > 1024:
        return Plan("step", f"d = {d} > 1024 threads per block")
    chains = 1 if (direction == "forward" or truncate is None) else truncate + 1
    if chains > MAX_ACC:
        return Plan("step", f"truncation τ = {truncate} keeps {chains} chains > {MAX_ACC} registers")
    block = _block_plan(B, d, dtype, chains, limits, cells) if force != "coop" else None
    if block is not None:
        return block
    if force == "block":
        return Plan("step", f"W ({d}x{d} {np.dtype(dtype)}) does not fit one block's registers + shared memory")
    if chains > 1:
        return Plan("step", "truncated backward has no cooperative variant (the chains would cross blocks)")
    coop = _coop_plan(B, d, dtype, limits, cells)
    if coop is not None:
        return coop
    both = f" × {cells} cells" if cells > 1 else ""
    return Plan("step", f"B = {B}{both}, d = {d}: more blocks than one cooperative grid holds")
