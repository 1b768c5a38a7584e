"""Token-row kernels: the input projection of token ids and its gradient dU.

gather_rows   XP[t, i, j] = U[tokens[t, i], j] + b[j] while t < lengths[i], else 0.
              Launch: block LANES = (lx, ly), grid (ceil(T·B/ly), ceil(d/lx)) (rows along x:
              any T·B); thread (ty, tx) owns XP's flat row bx·ly + ty, column by·lx + tx.
              No barrier.
bucket_keys   keys[r] = tokens[r] · R + r for row r = t·B + i read (t < lengths[i]), and
              n · R + r past a sequence's end: distinct keys whose order groups the rows
              by token and keeps each group in row order (so any sort gives one order).
              Launch: block (THREADS,), grid (ceil(T·B/THREADS),). No barrier.
bucket_sum    dU[v, j] = Σ_{p = offsets[v]}^{offsets[v+1]−1} Δ[order[p], j]: the rows of
              token v, added in row order by the one thread that owns dU[v, j] (per-row
              ownership after a sort: no atomics, deterministic).
              Launch: block LANES, grid (ceil(d/lx), ceil(n/ly)). No barrier.
"""
from numba import cuda


@cuda.jit(cache=True)
def gather_rows(tokens, U, b, lengths, XP):
    """tokens (T,B) int; U (n,d); b (d,); lengths (B,) int64 -> XP (T,B,d)."""
    T, B, d = XP.shape
    r = cuda.blockIdx.x * cuda.blockDim.y + cuda.threadIdx.y
    j = cuda.blockIdx.y * cuda.blockDim.x + cuda.threadIdx.x
    if r < T * B and j < d:
        t, i = r // B, r % B
        XP[t, i, j] = U[tokens[t, i], j] + b[j] if t < lengths[i] else XP.dtype.type(0)


@cuda.jit(cache=True)
def bucket_keys(tokens, lengths, n, keys):
    """tokens (T,B) int; lengths (B,) int64 -> keys (T·B,) int64, see the module docstring."""
    T, B = tokens.shape
    r = cuda.grid(1)
    if r < T * B:
        t, i = r // B, r % B
        token = tokens[t, i] if t < lengths[i] else n
        keys[r] = token * (T * B) + r


@cuda.jit(cache=True)
def bucket_sum(order, offsets, delta, dU):
    """order (R,) rows sorted by key; offsets (n+1,) each token's first place in order;
    delta (R,d) -> dU (n,d)."""
    v = cuda.blockIdx.x * cuda.blockDim.y + cuda.threadIdx.y
    j = cuda.blockIdx.y * cuda.blockDim.x + cuda.threadIdx.x
    if v < dU.shape[0] and j < dU.shape[1]:
        acc = dU.dtype.type(0)
        for p in range(offsets[v], offsets[v + 1]):
            acc += delta[order[p], j]
        dU[v, j] = acc
