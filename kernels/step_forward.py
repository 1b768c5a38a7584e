"""One step of the recurrence forward, for all B sequences in one launch.

    S[t+1][i, j] = σ(XP[t][i, j] + Σ_m s_t[i, m] W[m, j])   while t < lengths[i]
    S[t+1][i, j] = s_t[i, j]                                 once sequence i has ended

with s_t = S[t] (s0 when t = 0; that launch also stores S[0] = s0). XP = x U + b was
computed for all steps beforehand, so the bias is already in it; the product s_t W is
`tile_product`'s shared-memory tiles, fused with the add, σ and the store of the state
(σ' is later computed from the stored state alone). Where PROD has rows, the product was
computed beforehand into PROD (B,d) (cuBLAS, for large B·d²) and the kernel is the fused
epilogue only (PROD's rows are the same for every thread of a block, so no thread skips a
barrier alone); a PROD of 0 rows: no product given (`gpurnn.backends.base`'s convention).

Launch: block (TILE, TILE), grid (ceil(B/TILE), ceil(d/TILE), cells); thread (ty, tx) of
block (bx, by, c) owns S[t+1][bx·TILE + ty, by·TILE + tx] of cell c. One launch steps one or
two cells (a layer's two directions, each its own arrays, the same lengths): each array comes
as the first cell's and the second's, and a one-cell launch passes its arrays twice. The
barriers are `tile_product`'s.
"""
from numba import cuda, int64

from gpurnn.compile_cache import cuda_sources, key_on_sources

from .cell_step import new_state
from .device import PAD, TILE, array_types, pick, tile_product


@cuda.jit(cache=True)
def step_forward(S_a, S_b, XP_a, XP_b, W_a, W_b, s0_a, s0_b, PROD_a, PROD_b, lengths, t, act):
    """Per cell: S (T+1,B,d) XP (T,B,d) W (d,d) s0 (B,d), PROD (B,d): s_t W, or 0 rows (the
    kernel computes it); lengths (B,) int64; t: the step; act: σ's code."""
    cell = cuda.blockIdx.z
    S, XP, W, s0 = pick(cell, S_a, S_b), pick(cell, XP_a, XP_b), pick(cell, W_a, W_b), pick(cell, s0_a, s0_b)
    PROD = pick(cell, PROD_a, PROD_b)
    use_product = PROD.shape[0] > 0
    prev = s0 if t == 0 else S[t]
    acc = S.dtype.type(0)
    if not use_product:
        sA = cuda.shared.array((TILE, PAD), S.dtype)
        sB = cuda.shared.array((TILE, PAD), S.dtype)
        acc = tile_product(prev, W, 0, 0, sA, sB)
    i = cuda.blockIdx.x * TILE + cuda.threadIdx.y
    j = cuda.blockIdx.y * TILE + cuda.threadIdx.x
    if i < S.shape[1] and j < S.shape[2]:
        if use_product:
            acc = PROD[i, j]
        if t == 0:
            S[0, i, j] = s0[i, j]
        if t < lengths[i]:
            S[t + 1, i, j] = new_state(act, acc, XP[t, i, j])
        else:
            S[t + 1, i, j] = prev[i, j]


def signature(f):
    """step_forward's argument types as launched, for the Numba float type `f`."""
    (_, v2, v3), lens = array_types(f), int64[::1]
    return (v3, v3, v3, v3, v2, v2, v2, v2, v2, v2, lens, int64, int64)


key_on_sources(globals(), cuda_sources())
