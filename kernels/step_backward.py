"""One step of backpropagation through the recurrence, exact or truncated, all B sequences.

Rows r = c·B + i of the output hold chain c of sequence i (m chains; exact BPTT has m = 1).
For step k (run from T−1 down to 0), with s = S[k+1][i, j]:

    e  = G[k, i, j] + [k = lengths[i] − 1] · g_last[i, j]     ∂L_k/∂s_k, the explicit term,
                                                               for chain c = slot (0 for the others);
                                                               G or g_last with 0 rows: absent
    h  = Σ_m P[p][r, m] · W[j, m]     (δ W^T of the step after; the caller passes zeros at T−1)
    v  = h + e         exact (reset = 0): one chain collects every later loss
    v  = e  if c = slot, else h       truncated (reset = 1): chain `slot` restarts at the
                                      loss of step k, the others carry their loss back
    O[o][r, j] = v · σ'(s)  if k < lengths[i],  0 past the sequence's end

Where PROD has rows, h was computed beforehand into PROD (m·B,d) (cuBLAS, for large
products) and the kernel is the epilogue only; a PROD of 0 rows: the kernel computes h.

With k = −1 the same kernel gives ds0 = Δ_0 W^T (+ g_last for sequences of length 0):
no σ' (s0 is not an activation's output) and no G term.

`sum_chains` then adds a truncated step's m chains into Δ_k in a fixed order (c = 0..m−1).

Launch (step_backward): block (TILE, TILE), grid (ceil(m·B/TILE), ceil(d/TILE), cells);
thread (ty, tx) of block (bx, by, c) owns O[o][bx·TILE + ty, by·TILE + tx] of cell c; the
barriers are `tile_product`'s. Launch (sum_chains): block LANES = (lx, ly), grid (ceil(B/ly),
ceil(d/lx), cells); no barrier. Cells as in `step_forward`: each array the first cell's and the
second's (a one-cell launch passes its arrays twice), the cell of a block its blockIdx.z.
"""
from numba import cuda, int64

from gpurnn.compile_cache import cuda_sources, key_on_sources

from .cell_step import state_slope
from .device import PAD, TILE, array_types, pick, tile_product


@cuda.jit(cache=True)
def step_backward(P_a, P_b, W_a, W_b, G_a, G_b, g_last_a, g_last_b, S_a, S_b, O_a, O_b, PROD_a, PROD_b,
                  p, lengths, k, slot, reset, act, o):
    """Per cell: P (·,m·B,d): earlier outputs, read at P[p]; O (·,m·B,d): written at O[o];
    G (T,B,d), g_last (B,d), each with 0 rows when absent; S (T+1,B,d) the states; PROD (m·B,d):
    P[p] W^T, or 0 rows (the kernel computes it). lengths (B,) int64."""
    cell = cuda.blockIdx.z
    P, W, G, g_last = pick(cell, P_a, P_b), pick(cell, W_a, W_b), pick(cell, G_a, G_b), pick(cell, g_last_a, g_last_b)
    S, O, PROD = pick(cell, S_a, S_b), pick(cell, O_a, O_b), pick(cell, PROD_a, PROD_b)
    use_product = PROD.shape[0] > 0
    h = O.dtype.type(0)
    if not use_product:
        sA = cuda.shared.array((TILE, PAD), O.dtype)
        sB = cuda.shared.array((TILE, PAD), O.dtype)
        h = tile_product(P[p], W, 0, 1, sA, sB)
    B, d = S.shape[1], S.shape[2]
    r = cuda.blockIdx.x * TILE + cuda.threadIdx.y
    j = cuda.blockIdx.y * TILE + cuda.threadIdx.x
    if r >= O.shape[1] or j >= d:
        return
    c, i = r // B, r % B
    if k >= lengths[i]:
        O[o, r, j] = 0
        return
    e = O.dtype.type(0)
    if c == slot:
        if G.shape[0] > 0 and k >= 0:
            e += G[k, i, j]
        if g_last.shape[0] > 0 and k == lengths[i] - 1:
            e += g_last[i, j]
    if use_product:
        h = PROD[r, j]
    v = e if reset and c == slot else h + e
    O[o, r, j] = v * state_slope(act, S[k + 1, i, j]) if k >= 0 else v


@cuda.jit(cache=True)
def sum_chains(ring_a, ring_b, delta_a, delta_b, o, m, k):
    """Per cell: Δ_k[i, j] = Σ_{c=0}^{m−1} ring[o][c·B + i, j], in that order (deterministic)."""
    ring, delta = pick(cuda.blockIdx.z, ring_a, ring_b), pick(cuda.blockIdx.z, delta_a, delta_b)
    B, d = delta.shape[1], delta.shape[2]
    i = cuda.blockIdx.x * cuda.blockDim.y + cuda.threadIdx.y
    j = cuda.blockIdx.y * cuda.blockDim.x + cuda.threadIdx.x
    if i < B and j < d:
        total = delta.dtype.type(0)
        for c in range(m):
            total += ring[o, c * B + i, j]
        delta[k, i, j] = total


def signature(f):
    """step_backward's argument types as launched, for the Numba float type `f`."""
    (_, v2, v3), lens = array_types(f), int64[::1]
    return (v3, v3, v2, v2, v3, v3, v2, v2, v3, v3, v3, v3, v2, v2, int64, lens, int64, int64, int64, int64, int64)


key_on_sources(globals(), cuda_sources())
