"""The CUDA backend's recurrences, and the one place that chooses which kernels run them.

A call runs the cells of one layer together: one cell, or a bidirectional layer's two (each
its own XP or G, W and S; the same lengths; equal shapes). `route` chooses, first fit wins:

    persistent, paired    one persistent launch for both cells, the cell a block's blockIdx.y:
                          the plan pairs them (`persistent_plan.plan(..., cells=2)`)
    persistent, per cell  one persistent launch per cell: the planner could not pair them (its
                          reason: a cooperative grid of twice the blocks is not co-resident), or
                          the device refused the paired launch
    step                  one launch per step for all the cells, the cell a block's blockIdx.z
                          (`step_forward`, `step_backward`): persistent kernels turned off
                          (`CUDABackend(persistent=False)`, GPURNN_PERSISTENT=0), no persistent
                          plan for the shape (its reason), or the device refused the kernel

A refusal (`PersistentUnavailable`: the compiled kernel's registers, the shared-memory opt-in, a
cooperative grid's co-residency, the driver) never breaks a call: it is remembered per plan,
warned about once per reason (`PersistentFallbackWarning`), and the call is routed again.
Every path gives each cell exactly what a call with that cell alone gives on the same path.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

from gpurnn.kernels import persistent_backward as pb
from gpurnn.kernels import persistent_forward as pf
from gpurnn.kernels import persistent_plan as pp
from gpurnn.kernels import step_backward, step_forward

from . import cuda_memory as mem

# The step path's product s_t W (or δ W^T) per step: fused into the step kernel's tiles
# ("fused": one launch per step, best while launches dominate), or a separate cuBLAS product
# the step kernel then reads ("gemm": two launches per step, best for large products). "auto"
# takes "gemm" with cuBLAS from this many multiply-adds per step (e.g. B = 64, d = 256).
STEP_GEMM_MACS = 1 << 22


class PersistentFallbackWarning(UserWarning):
    """A persistent kernel could not run on this GPU; another path ran instead."""


_warned: set = set()     # the fallback reasons already warned about in this process


@dataclass(frozen=True)
class Route:
    """How one call runs: `plan` a persistent plan (its `cells` 1: one launch per cell), or
    None for the step path; `reason` why."""

    plan: pp.Plan | None
    reason: str


def route(be, direction, B, d, dtype, truncate, cells) -> Route:
    """The path for `cells` cells of a (B, d) recurrence on backend `be` ("forward" or
    "backward", `truncate` τ backward), given the plans its device already refused."""
    if not be.persistent:
        return Route(None, "persistent kernels turned off (CUDABackend(persistent=False) or GPURNN_PERSISTENT=0)")
    plan = pp.plan(B, d, dtype, direction=direction, truncate=truncate, limits=pp.device_limits(), cells=cells)
    if plan.variant == "step":
        return Route(None, plan.reason)
    reason = plan.reason
    if (direction, plan) in be.refused and plan.cells > 1:
        plan = pp.plan(B, d, dtype, direction=direction, truncate=truncate, limits=pp.device_limits())
        reason = f"the device refused the paired launch: one launch per cell; {plan.reason}"
    if (direction, plan) in be.refused:
        return Route(None, f"the device refused the persistent {direction} kernel ({plan.variant})")
    return Route(plan, reason)


def forward(be, XPs, Ws, s0s, lengths, activation):
    """[S (T+1,B,d)] of each cell (XP (T,B,d), W (d,d), s0 (B,d)), as `Backend.recurrence_forward`."""
    T, B, d = XPs[0].shape
    dtype = XPs[0].dtype
    Ss = [mem.empty((T + 1, B, d), dtype) for _ in XPs]
    cells = [tuple(mem.kernel_view(a) for a in cell) for cell in zip(XPs, Ws, s0s, Ss)]
    if _persistent(be, "forward", (B, d, dtype, None), cells, lambda group, plan: pf.persistent_forward_cells(
            group, mem.kernel_view(lengths), activation, plan=plan, stream=mem.launch_stream())):
        return Ss
    fused = fused_steps(be, B, d)
    prods = [mem.empty((0 if fused else B, d), dtype) for _ in XPs]     # 0 rows: the kernel's own product
    args = _by_cell(Ss, XPs, Ws, s0s, prods)
    launch, Lv = step_forward.step_forward[mem.tiles(B, d, len(XPs))], mem.kernel_view(lengths)
    for t in range(T):
        if not fused:
            for S, W, s0, prod in zip(Ss, Ws, s0s, prods):
                product_into(be, s0 if t == 0 else S[t], W, False, prod)
        launch(*args, Lv, t, activation)
    return Ss


def backward(be, Gs, g_lasts, Ss, Ws, lengths, activation, truncate):
    """[(Δ (T,B,d), ds0 (B,d))] of each cell (G, g_last or None, S, W), as
    `Backend.recurrence_backward`."""
    T, B, d = Ss[0].shape[0] - 1, Ss[0].shape[1], Ss[0].shape[2]
    dtype = Ss[0].dtype
    n = len(Ss)
    deltas = [mem.empty((T, B, d), dtype) for _ in Ss]
    ds0s = [mem.empty((1, B, d), dtype) for _ in Ss]
    Gs = [mem.empty((0, B, d), dtype) if G is None else G for G in Gs]                 # absent: 0 rows (base.py)
    g_lasts = [mem.empty((0, d), dtype) if last is None else last for last in g_lasts]
    results = [(delta, ds0.reshape(B, d)) for delta, ds0 in zip(deltas, ds0s)]
    cells = [tuple(mem.kernel_view(a) for a in cell) for cell in zip(Gs, g_lasts, Ss, Ws, *zip(*results))]
    if _persistent(be, "backward", (B, d, dtype, truncate), cells, lambda group, plan: pb.persistent_backward_cells(
            group, mem.kernel_view(lengths), activation, truncate, plan=plan, stream=mem.launch_stream())):
        return results
    m = 1 if truncate is None else truncate + 1
    fused = fused_steps(be, m * B, d)
    prods = [mem.empty((0 if fused else m * B, d), dtype) for _ in Ss]  # 0 rows: the kernel's own product
    fixed = _by_cell(Ws, Gs, g_lasts, Ss)
    prod_views, Lv = _by_cell(prods), mem.kernel_view(lengths)

    def step(Ps, p, k, slot, reset, Os, o, rows_):
        """Output rows O[o] of step k from P[p] in every cell (Ps, Os: the cells' device arrays
        and their kernel views)."""
        if not fused:
            for P, W, prod in zip(Ps[0], Ws, prods):
                product_into(be, P[p], W, True, prod[:rows_])
        step_backward.step_backward[mem.tiles(rows_, d, n)](*Ps[1], *fixed, *Os[1], *prod_views, p, Lv, k, slot,
                                                            reset, activation, o)

    deltas_ = (deltas, _by_cell(deltas))
    if truncate is None:
        zeros = [mem.zeros((1, B, d), dtype) for _ in Ss]
        step((zeros, _by_cell(zeros)), 0, T - 1, 0, 0, deltas_, T - 1, B)
        for k in range(T - 2, -1, -1):
            step(deltas_, k + 1, k, 0, 0, deltas_, k, B)
    else:
        rings = [mem.zeros((2, m * B, d), dtype) for _ in Ss]    # ring[o]: step k's chains, k ≡ o (mod 2)
        rings_ = (rings, _by_cell(rings))
        add, add_args = step_backward.sum_chains[mem.lanes(B, d, n)], rings_[1] + deltas_[1]
        for k in range(T - 1, -1, -1):
            o = k % 2
            step(rings_, 1 - o, k, k % m, 1, rings_, o, m * B)
            add(*add_args, o, m, k)
    step(deltas_, 0, -1, 0, 0, (ds0s, _by_cell(ds0s)), 0, B)    # ds0 = Δ_0 Wᵀ (+ g_last at length 0)
    return results


def _by_cell(*per_cell):
    """Kernel views of per-cell lists as the step kernels take them: of each list the first
    cell's array, then the second's (the first again for a one-cell launch)."""
    return [mem.kernel_view(arrays[i]) for arrays in per_cell for i in (0, -1)]


def _persistent(be, direction, shape, cells, launch) -> bool:
    """Run `cells` (each a tuple of kernel views) on the persistent kernels `route` picks for
    shape (B, d, dtype, truncate), launch(group, plan) for each group of cells the plan takes at
    once, routing again after a refusal; False where the route is the step path."""
    while True:
        plan = route(be, direction, *shape, len(cells)).plan
        if plan is None:
            return False
        if _launched(be, direction, plan, cells, launch):
            return True


def _launched(be, direction, plan, cells, launch) -> bool:
    """launch(group, plan) for the cells as `plan` groups them (all at once, or one by one);
    False where the device refuses the plan (remembered in `be.refused`, warned about once)."""
    groups = [cells] if plan.cells == len(cells) else [[cell] for cell in cells]
    try:
        for group in groups:
            launch(group, plan)
        return True
    except pp.PersistentUnavailable as why:
        be.refused.add((direction, plan))
        instead = "one launch per cell runs instead" if plan.cells > 1 else "the step-by-step kernels run instead"
        message = (f"the persistent {direction} kernel ({plan.variant}, {plan.cells} cell(s), {plan.threads} "
                   f"threads, {plan.smem} bytes of shared memory) cannot run on this GPU: {why}; {instead}")
        if message not in _warned:
            _warned.add(message)
            warnings.warn(message, PersistentFallbackWarning, stacklevel=6)
        return False


def fused_steps(be, rows, d) -> bool:
    """Whether the step path fuses each step's product into its kernel (see STEP_GEMM_MACS)."""
    if be.step_product != "auto":
        return be.step_product == "fused"
    return not (be.gemm == "cublas" and rows * d * d >= STEP_GEMM_MACS)


def product_into(be, A, W, trans_b, C):
    """C = A op(W) for one unfused step: cuBLAS into C on a GPU, else the backend's tiled kernel
    (whose array conversions then happen per step: a test and fallback path, "auto" never
    takes it)."""
    if be.gemm == "cublas":
        mem.cupy_module().matmul(A, W.T if trans_b else W, out=C)
    else:
        be.tiled_gemm(A, W, None, False, trans_b, C)
