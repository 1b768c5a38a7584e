"""Persistent forward recurrence: the whole time loop in one kernel, W on chip for all T steps.

    S[0] = s0;  S[t+1][b] = σ(XP[t][b] + S[t][b] W)  while t < lengths[b],  else S[t][b]

XP (T,B,d) = x_t U + b comes from one GEMM before the loop; only `S[t] W` is sequential.

Integration (CUDABackend.recurrence_forward, `gpurnn.backends.base` contract):

    from gpurnn.kernels import persistent_forward as pf
    p = pf.plan_forward(B, d, dtype)              # force="block" | "coop" to choose
    if p.variant == "step":                       # p.reason says why
        ... the step-by-step kernels ...
    else:
        S = device_array((T + 1, B, d), dtype)
        pf.persistent_forward(XP, W, s0, lengths, activation_code, S, plan=p, stream=stream)

All arrays C-contiguous on the device (Numba device arrays or any `__cuda_array_interface__`
object, e.g. CuPy, passed as is: one launch, so one conversion), XP/W/s0/S one float dtype,
lengths int64 (B,). The kernel writes S[0] = s0 itself. One launch, asynchronous on `stream`.

Both directions of a layer in one launch (each its own XP, W, s0, S; the same lengths):
`persistent_forward_cells([(XP, W, s0, S), (XP', W', s0', S')], lengths, code, plan=p)` with
`p = plan_forward(B, d, dtype, cells=2)` where `p.cells == 2` (else one launch per cell).
"""
from __future__ import annotations

from numba import cuda

from gpurnn.compile_cache import cuda_sources, key_dispatcher

from . import cell_step
from . import persistent_common as pc
from . import persistent_plan as pp


def _over_cells(run):
    """The kernel (XP, XP', W, W', s0, s0', S, S', lengths, act) of one cell's `run` (' the
    second cell's arrays): each block runs the cell of its blockIdx.y on arrays taken straight
    from the kernel parameters. (A branch per cell, not arrays chosen at run time: those would
    keep their pointers and shapes in registers, 138 → 255 registers and spills in the
    cooperative backward.)"""

    def kernel(XP_a, XP_b, W_a, W_b, s0_a, s0_b, S_a, S_b, lengths, act):
        if cuda.blockIdx.y == 0:
            run(XP_a, W_a, s0_a, S_a, lengths, act)
        else:
            run(XP_b, W_b, s0_b, S_b, lengths, act)

    return kernel


def _block_forward(dtype, rows, rreg, pairs):
    """Block variant: grid ⌈B/rows⌉ blocks per cell × ⌈d/32⌉·32 threads; thread j owns unit j of the
    block's `rows` sequences. Shared memory: W rows [rreg, d) (d·(d−rreg) elements), then two
    state buffers of rows·d (s_t is read from one while s_{t+1} is written to the other)."""
    f = pc.numba_float(dtype)
    matvec = pc.make_matvec(rows, rreg, pairs)
    nreg = max(rreg, 1)             # a local array needs a constant, non-zero size

    @pc.inline
    def run(XP, W, s0, S, lengths, act):
        T, B, d = XP.shape
        zero = XP.dtype.type(0)
        j = cuda.threadIdx.x
        b0 = cuda.blockIdx.x * rows
        sm = cuda.shared.array(0, f)
        sm2 = cuda.shared.array(0, pc.float64)     # the same memory as 8-byte words (pairs)
        xoff = (d - rreg) * d
        wreg = cuda.local.array(nreg, f)
        acc = cuda.local.array(rows, f)
        xp = cuda.local.array(rows, f)
        lens = cuda.local.array(rows, pc.int64)
        pc.load_block(W, False, sm, rreg, wreg, lengths, b0, rows, lens)
        for q in range(rows):
            b = b0 + q
            if j < d:
                v = s0[b, j] if b < B else zero
                sm[xoff + q * d + j] = v
                if b < B:
                    S[0, b, j] = v
        cuda.syncthreads()          # W and s_0 in shared memory before the first product
        for t in range(T):
            cur = xoff + (t % 2) * rows * d
            nxt = xoff + ((t + 1) % 2) * rows * d
            if j < d:
                for q in range(rows):   # issued now, used after the product: latency hidden
                    xp[q] = XP[t, b0 + q, j] if t < lens[q] else zero
                    acc[q] = zero
                matvec(sm, sm2, cur, d, sm, j - rreg * d, d, wreg, 0, d, acc)
                for q in range(rows):
                    b = b0 + q
                    v = cell_step.new_state(act, acc[q], xp[q]) if t < lens[q] else sm[cur + q * d + j]
                    sm[nxt + q * d + j] = v
                    if b < B:
                        S[t + 1, b, j] = v
            # s_{t+1} complete before step t+1 reads it, and every read of buffer `cur`
            # done before step t+1 overwrites it with s_{t+2}.
            cuda.syncthreads()

    return _over_cells(run)


def _coop_forward(dtype, rows, pairs):
    """Cooperative variant: grid G·⌈B/rows⌉ blocks (G = ⌈d/C⌉ column groups, block g·… owns
    columns [g·C, (g+1)·C)) per cell × COOP_THREADS threads; one grid barrier per step (over
    every cell's blocks), s_t read back from S in global memory. Shared memory: W[:, cols]
    (d·C), xs (rows·d), partials (KS·rows·C)."""
    f = pc.numba_float(dtype)
    C, NT = pp.COOP_COLUMNS, pp.COOP_THREADS
    per_thread = (rows * C + NT - 1) // NT      # outputs (sequence, column) per thread
    product = pc.make_coop_product(rows, pairs)

    @pc.inline
    def run(XP, W, s0, S, lengths, act):
        T, B, d = XP.shape
        groups = (d + C - 1) // C
        g = cuda.blockIdx.x % groups
        b0 = (cuda.blockIdx.x // groups) * rows
        tid = cuda.threadIdx.x
        grid = cuda.cg.this_grid()
        sm = cuda.shared.array(0, f)
        sm2 = cuda.shared.array(0, pc.float64)     # the same memory as 8-byte words (pairs)
        xoff = d * C
        roff = xoff + rows * d
        pc.load_w(W, False, sm, 0, C, g * C, C, 0)
        wreg = cuda.local.array(1, f)
        acc = cuda.local.array(rows, f)
        xp = cuda.local.array(per_thread, f)
        for idx in range(tid, rows * C, NT):
            b, col = b0 + idx // C, g * C + idx % C
            if b < B and col < d:
                S[0, b, col] = s0[b, col]
        grid.sync()                 # S[0] complete in global memory (and W in shared memory)
        for t in range(T):
            for u in range(per_thread):     # issued before the product: latency hidden
                idx = tid + u * NT
                b, col = b0 + idx // C, g * C + idx % C
                active = idx < rows * C and b < B and col < d and t < lengths[b]
                xp[u] = XP[t, b, col] if active else XP.dtype.type(0)
            product(S[t], b0, sm, sm2, 0, xoff, roff, wreg, acc)
            for u in range(per_thread):
                idx = tid + u * NT
                q, c = idx // C, idx % C
                b, col = b0 + q, g * C + c
                if idx < rows * C and b < B and col < d:
                    if t < lengths[b]:
                        v = cell_step.new_state(act, pc.column_total(sm, roff, rows, q, c), xp[u])
                    else:
                        v = sm[xoff + q * d + col]
                    S[t + 1, b, col] = v
            grid.sync()             # S[t+1] complete before any block reads it at step t+1

    return _over_cells(run)


_cache: dict = {}


def forward_kernel(the_plan: pp.Plan, dtype):
    """The compiled-on-demand kernel (a Numba dispatcher) and its launch signature. Numba's
    disk cache (NUMBA_CACHE_DIR) keeps each variant once compiled for every later process: its
    key hashes the kernel's closure, which names the variant, and `compile_cache` adds the
    kernels' sources."""
    key = (the_plan.variant, the_plan.rows, the_plan.rreg, the_plan.pairs, str(dtype))
    if key not in _cache:
        py = (_block_forward(dtype, the_plan.rows, the_plan.rreg, the_plan.pairs) if the_plan.variant == "block"
              else _coop_forward(dtype, the_plan.rows, the_plan.pairs))
        _cache[key] = key_dispatcher(cuda.jit(py, cache=True), cuda_sources())
    return _cache[key], forward_signature(dtype)


def forward_signature(dtype):
    """(XP, XP', W, W', s0, s0', S, S', lengths, act) as launched (' the second cell's)."""
    a1, a2, a3, lens = pc.arrays(dtype)
    return (a3, a3, a2, a2, a2, a2, a3, a3, lens, pc.int64)


def plan_forward(B, d, dtype, *, force=None, limits=None, cells=1):
    """`persistent_plan.plan` for the forward direction on the current device."""
    return pp.plan(B, d, dtype, direction="forward", limits=limits or pp.device_limits(), force=force, cells=cells)


def persistent_forward(XP, W, s0, lengths, activation_code, out_S, *, plan=None, stream=0):
    """Fill out_S (T+1,B,d) with the states of the recurrence (see the module docstring).
    `plan` defaults to `plan_forward(B, d, dtype)`; a "step" plan raises ValueError."""
    persistent_forward_cells([(XP, W, s0, out_S)], lengths, activation_code, plan=plan, stream=stream)


CELL_NAMES = ("XP", "W", "s0", "out_S")


def persistent_forward_cells(cells, lengths, activation_code, *, plan=None, stream=0):
    """One launch over 1 or 2 cells, each (XP, W, s0, out_S) of equal shapes, sharing lengths:
    fills each out_S. `plan` (its `cells` = len(cells)) defaults to `plan_forward(B, d, dtype,
    cells=len(cells))`, which must then pair them; a "step" plan raises ValueError."""
    XP, W, s0, out_S = cells[0]
    T, B, d = XP.shape
    dtype = XP.dtype
    pc.check_same_shapes(cells, CELL_NAMES)
    the_plan = plan or plan_forward(B, d, dtype, cells=len(cells))
    if the_plan.variant == "step":
        raise ValueError(f"no persistent forward for B={B}, d={d}, {dtype}: {the_plan.reason}")
    if the_plan.cells != len(cells):
        raise ValueError(f"the plan launches {the_plan.cells} cells, got {len(cells)}: {the_plan.reason}")
    if tuple(out_S.shape) != (T + 1, B, d) or tuple(W.shape) != (d, d) or tuple(s0.shape) != (B, d):
        raise ValueError(f"shapes: XP {XP.shape}, W {W.shape} (expected ({d}, {d})), s0 {s0.shape} "
                         f"(expected ({B}, {d})), out_S {out_S.shape} (expected ({T + 1}, {B}, {d}))")
    kernel, sig = forward_kernel(the_plan, dtype)
    names, args = pc.cell_arguments(cells, CELL_NAMES)
    pc.launch(kernel, sig, the_plan, names + ["lengths", "activation_code"],
              args + [lengths, int(activation_code)], stream)
