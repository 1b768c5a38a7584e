"""Persistent backward recurrence (BPTT): the whole reversed time loop in one kernel, W^T on chip.

Exact (truncate None), for k = T−1 … 0, h = ∂L/∂s_k from later steps (0 after the end):

    Δ_k = (h + e_k) ⊙ σ'(S[k+1])   while k < lengths[b], else 0
    h   = Δ_k W^T
    e_k = G[k] + [k = lengths[b] − 1] · g_last,   ds0 = h (after k = 0) + [lengths[b] = 0] · g_last

Truncated with τ: chain t (the loss at step t) lives for steps t … t−τ; the τ+1 live chains sit
in registers (chain t in slot t mod (τ+1)); each step a slot retires and the new chain takes it:

    chain_slot = e_k;  local_c = chain_c ⊙ σ'(S[k+1]);  Δ_k = Σ_c local_c;  chain_c = local_c W^T
    ds0 = Σ_c chain_c  (+ g_last for length 0)

These equal `gpurnn.backends.cpu` (`_backward_exact`, `_backward_truncated`, `_add_length0`).

Integration (CUDABackend.recurrence_backward):

    from gpurnn.kernels import persistent_backward as pb
    p = pb.plan_backward(B, d, dtype, truncate)   # force="block" | "coop" to choose
    if p.variant == "step": ... the step kernels ... (p.reason; truncation has no coop variant)
    else:
        delta = device_array((T, B, d)); ds0 = device_array((B, d))
        pb.persistent_backward(G, g_last, S, W, lengths, code, truncate, delta, ds0, plan=p)

G (T,B,d) and g_last (B,d) may be None (the kernel gets 0-row arrays: `gpurnn.backends.base`'s
convention). W is passed as is (the kernel transposes it on load). Both directions of a layer in
one launch: `persistent_backward_cells([(G, g_last, S, W, delta, ds0), (…)], lengths, code,
truncate, plan=plan_backward(B, d, dtype, truncate, cells=2))`, as `persistent_forward_cells`.
"""
from __future__ import annotations

import numpy as np
from numba import cuda

from gpurnn.compile_cache import cuda_sources, key_dispatcher

from . import cell_step
from . import persistent_common as pc
from . import persistent_plan as pp


def _over_cells(run):
    """The kernel (G, G', g_last, g_last', S, S', W, W', delta, delta', ds0, ds0', lengths, act)
    of one cell's `run`, as `persistent_forward._over_cells`."""

    def kernel(G_a, G_b, g_last_a, g_last_b, S_a, S_b, W_a, W_b, delta_a, delta_b, ds0_a, ds0_b, lengths, act):
        if cuda.blockIdx.y == 0:
            run(G_a, g_last_a, S_a, W_a, delta_a, ds0_a, lengths, act)
        else:
            run(G_b, g_last_b, S_b, W_b, delta_b, ds0_b, lengths, act)

    return kernel


def _block_backward(dtype, rows, chains, rreg, exact, pairs):
    """Block variant: ⌈B/rows⌉ blocks per cell × ⌈d/32⌉·32 threads; thread j owns unit j of `rows`
    sequences and its `chains` gradient chains (R = rows·chains register accumulators).
    Shared memory: W^T rows [rreg, d), then two buffers of R·d local gradients ∂L_t/∂a_k."""
    f = pc.numba_float(dtype)
    R = rows * chains
    matvec = pc.make_matvec(R, rreg, pairs)
    nreg = max(rreg, 1)             # local arrays need constant, non-zero sizes
    nraw = 3 * rows

    @pc.inline
    def run(G, g_last, S, W, delta, ds0, lengths, act):
        T, B, d = delta.shape
        zero = delta.dtype.type(0)
        j = cuda.threadIdx.x
        b0 = cuda.blockIdx.x * rows
        sm = cuda.shared.array(0, f)
        sm2 = cuda.shared.array(0, pc.float64)     # the same memory as 8-byte words (pairs)
        xoff = (d - rreg) * d
        wreg = cuda.local.array(nreg, f)
        chain = cuda.local.array(R, f)
        raw = cuda.local.array(nraw, f)
        lens = cuda.local.array(rows, pc.int64)
        pc.load_block(W, True, sm, rreg, wreg, lengths, b0, rows, lens)
        for q in range(rows):
            pc.prefetch(G, g_last, S, lengths, T - 1, b0 + q, j, raw, q)
        for r in range(R):
            chain[r] = 0
        cuda.syncthreads()          # W^T in shared memory before the first product
        for k in range(T - 1, -1, -1):
            buf = xoff + (k % 2) * R * d
            if j < d:
                slot = k % chains
                for q in range(rows):
                    active = k < lens[q]
                    e = raw[3 * q] + raw[3 * q + 1]
                    dsig = cell_step.state_slope(act, raw[3 * q + 2]) if active else zero
                    total = zero
                    for c in range(chains):
                        r = c * rows + q
                        if c == slot:
                            chain[r] = chain[r] + e if exact else e
                        local = chain[r] * dsig
                        sm[buf + r * d + j] = local
                        total += local
                        chain[r] = 0
                    if b0 + q < B:
                        delta[k, b0 + q, j] = total
            # every local gradient of step k written before the product reads them; the
            # other buffer is step k−1's, so one barrier per step suffices.
            cuda.syncthreads()
            for q in range(rows):
                pc.prefetch(G, g_last, S, lengths, k - 1, b0 + q, j, raw, q)
            if j < d:
                matvec(sm, sm2, buf, d, sm, j - rreg * d, d, wreg, 0, d, chain)
        if j < d:
            for q in range(rows):
                b = b0 + q
                if b < B:
                    total = chain[q]
                    for c in range(1, chains):
                        total += chain[c * rows + q]
                    if lengths[b] == 0 and g_last.shape[0] > 0:
                        total += g_last[b, j]
                    ds0[b, j] = total

    return _over_cells(run)


def _coop_backward(dtype, rows, pairs):
    """Cooperative variant (exact only): G·⌈B/rows⌉ blocks per cell × COOP_THREADS threads, block g·…
    owning units [g·C, (g+1)·C) with W^T[:, those units] in shared memory; h for its
    rows·C outputs stays in the registers of the thread that owns each output; Δ_k crosses
    blocks through global memory, one grid barrier per step (over every cell's blocks)."""
    f = pc.numba_float(dtype)
    C, NT = pp.COOP_COLUMNS, pp.COOP_THREADS
    per_thread = (rows * C + NT - 1) // NT
    nraw = 3 * per_thread
    product = pc.make_coop_product(rows, pairs)

    @pc.inline
    def run(G, g_last, S, W, delta, ds0, lengths, act):
        T, B, d = delta.shape
        groups = (d + C - 1) // C
        g = cuda.blockIdx.x % groups
        b0 = (cuda.blockIdx.x // groups) * rows
        tid = cuda.threadIdx.x
        grid = cuda.cg.this_grid()
        sm = cuda.shared.array(0, f)
        sm2 = cuda.shared.array(0, pc.float64)     # the same memory as 8-byte words (pairs)
        xoff = d * C
        roff = xoff + rows * d
        pc.load_w(W, True, sm, 0, C, g * C, C, 0)   # read only after product's first barrier
        wreg = cuda.local.array(1, f)
        acc = cuda.local.array(rows, f)
        h = cuda.local.array(per_thread, f)
        raw = cuda.local.array(nraw, f)
        for u in range(per_thread):
            h[u] = 0
            idx = tid + u * NT
            pc.prefetch(G, g_last, S, lengths, T - 1 if idx < rows * C else -1,
                        b0 + idx // C, g * C + idx % C, raw, u)
        for k in range(T - 1, -1, -1):
            for u in range(per_thread):
                idx = tid + u * NT
                b, col = b0 + idx // C, g * C + idx % C
                if idx < rows * C and b < B and col < d:
                    v = delta.dtype.type(0)
                    if k < lengths[b]:
                        e = h[u] + raw[3 * u] + raw[3 * u + 1]
                        v = e * cell_step.state_slope(act, raw[3 * u + 2])
                    delta[k, b, col] = v
                # step k−1's loads, issued now: their latency hides behind the barrier
                pc.prefetch(G, g_last, S, lengths, k - 1 if idx < rows * C else -1, b, col, raw, u)
            grid.sync()             # Δ_k complete in global memory before any block reads it
            product(delta[k], b0, sm, sm2, 0, xoff, roff, wreg, acc)
            for u in range(per_thread):
                idx = tid + u * NT
                if idx < rows * C:
                    h[u] = pc.column_total(sm, roff, rows, idx // C, idx % C)
        for u in range(per_thread):
            idx = tid + u * NT
            b, col = b0 + idx // C, g * C + idx % C
            if idx < rows * C and b < B and col < d:
                total = h[u]
                if lengths[b] == 0 and g_last.shape[0] > 0:
                    total += g_last[b, col]
                ds0[b, col] = total

    return _over_cells(run)


_cache: dict = {}


def backward_kernel(the_plan: pp.Plan, dtype, exact=True):
    """The compiled-on-demand kernel (a Numba dispatcher) and its launch signature. Numba's
    disk cache (NUMBA_CACHE_DIR) keeps each variant once compiled for every later process: its
    key hashes the kernel's closure, which names the variant, and `compile_cache` adds the
    kernels' sources."""
    key = (the_plan.variant, the_plan.rows, the_plan.chains, the_plan.rreg, the_plan.pairs, exact, str(dtype))
    if key not in _cache:
        if the_plan.variant == "block":
            py = _block_backward(dtype, the_plan.rows, the_plan.chains, the_plan.rreg, exact, the_plan.pairs)
        else:
            py = _coop_backward(dtype, the_plan.rows, the_plan.pairs)
        _cache[key] = key_dispatcher(cuda.jit(py, cache=True), cuda_sources())
    return _cache[key], backward_signature(dtype)


def backward_signature(dtype):
    """(G, G', g_last, g_last', S, S', W, W', delta, delta', ds0, ds0', lengths, act) as launched
    (' the second cell's)."""
    a1, a2, a3, lens = pc.arrays(dtype)
    return (a3, a3, a2, a2, a3, a3, a2, a2, a3, a3, a2, a2, lens, pc.int64)


def plan_backward(B, d, dtype, truncate=None, *, force=None, limits=None, cells=1):
    """`persistent_plan.plan` for the backward direction on the current device."""
    return pp.plan(B, d, dtype, direction="backward", truncate=truncate,
                   limits=limits or pp.device_limits(), force=force, cells=cells)


def _present(array, like, shape, dtype):
    """`array`, or for None (absent) the 0-row array of `shape` the kernel takes in its place,
    on the same side as `like`."""
    if array is not None:
        return array
    return np.zeros(shape, dtype) if isinstance(like, np.ndarray) else cuda.device_array(shape, dtype)


def persistent_backward(G, g_last, S, W, lengths, activation_code, truncate, out_delta, out_ds0,
                        *, plan=None, stream=0):
    """Fill out_delta (T,B,d) = ∂L/∂a_t and out_ds0 (B,d) (see the module docstring).
    `plan` defaults to `plan_backward(B, d, dtype, truncate)`; a "step" plan raises ValueError."""
    persistent_backward_cells([(G, g_last, S, W, out_delta, out_ds0)], lengths, activation_code, truncate,
                              plan=plan, stream=stream)


CELL_NAMES = ("G", "g_last", "S", "W", "out_delta", "out_ds0")


def persistent_backward_cells(cells, lengths, activation_code, truncate, *, plan=None, stream=0):
    """One launch over 1 or 2 cells, each (G, g_last, S, W, out_delta, out_ds0), the last four of
    equal shapes (G, g_last each cell's own, present or None), sharing lengths: fills each out_delta and
    out_ds0. `plan` (its `cells` = len(cells)) defaults to `plan_backward(B, d, dtype, truncate,
    cells=len(cells))`, which must then pair them; a "step" plan raises ValueError."""
    G, g_last, S, W, out_delta, out_ds0 = cells[0]
    T, B, d = out_delta.shape
    dtype = S.dtype
    cells = [(_present(G_, S_, (0, B, d), dtype), _present(last, S_, (0, d), dtype), S_, W_, delta_, ds0_)
             for G_, last, S_, W_, delta_, ds0_ in cells]
    pc.check_same_shapes([cell[2:] for cell in cells], CELL_NAMES[2:])   # G, g_last: each cell's own
    the_plan = plan or plan_backward(B, d, dtype, truncate, cells=len(cells))
    if the_plan.variant == "step":
        raise ValueError(f"no persistent backward for B={B}, d={d}, τ={truncate}: {the_plan.reason}")
    if the_plan.cells != len(cells):
        raise ValueError(f"the plan launches {the_plan.cells} cells, got {len(cells)}: {the_plan.reason}")
    chains = 1 if truncate is None else truncate + 1
    if the_plan.chains != chains:
        raise ValueError(f"plan holds {the_plan.chains} chains, truncate={truncate} needs {chains}")
    if tuple(S.shape) != (T + 1, B, d) or tuple(W.shape) != (d, d) or tuple(out_ds0.shape) != (B, d):
        raise ValueError(f"shapes: S {S.shape} (expected ({T + 1}, {B}, {d})), W {W.shape}, "
                         f"out_ds0 {out_ds0.shape} (expected ({B}, {d}))")
    kernel, sig = backward_kernel(the_plan, dtype, exact=truncate is None)
    names, args = pc.cell_arguments(cells, CELL_NAMES)
    pc.launch(kernel, sig, the_plan, names + ["lengths", "activation_code"],
              args + [lengths, int(activation_code)], stream)
