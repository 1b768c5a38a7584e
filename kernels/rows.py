"""Token-row kernels: the input projection of token ids and its gradient dU.

gather_rows   XP[t, i, j] = Σ_f U[tokens[t, i, f], j] + b[j] while t < lengths[i], else 0
              (tokens (T,B,F): F ids per step, added in field order; F = 1 is one row).
              Launch: block LANES = (lx, ly), grid (ceil(T·B/ly), ceil(d/lx)) (rows along x:
              any T·B); thread (ty, tx) owns XP's flat row bx·ly + ty, column by·lx + tx.
              No barrier.
bucket_keys   keys[r] = tokens[r] · R + r for id r = (t·B + i)·F + f read (t < lengths[i]), and
              n · R + r past a sequence's end (R = T·B·F): distinct keys whose order groups
              the ids by token and keeps each group in id order (so any sort gives one order).
              Id r reads Δ's row r // F.
              Launch: block (THREADS,), grid (ceil(T·B/THREADS),). No barrier.
bucket_pieces, bucket_total   dU[v, j] = Σ_{p = offsets[v]}^{offsets[v+1]−1} Δ[order[p] // F, j]:
              the rows of token v's ids in id order, in two passes with no atomics (deterministic).
              The sorted rows are cut at every multiple of PIECE: token v's rows fall into
              pieces base[v] … base[v+1]−1 (one per PIECE-aligned chunk they touch; a
              frequent token gets many, so its thousands of rows are added in parallel).
              bucket_pieces: partial[q, j] = Σ of piece q's rows (ly lanes in a fixed
              stride, then a tree). Launch: block LANES, grid (piece_bound(R, n), ceil(d/lx)):
              an upper bound of the pieces, so the host never reads their count back; the
              blocks past base[n] do nothing.
              bucket_total: dU[v, j] = Σ_q partial[q, j] over token v's pieces, in order.
              Launch: block LANES, grid (ceil(n/ly), ceil(d/lx)). No barrier.
"""
from numba import cuda

from gpurnn.compile_cache import cuda_sources, key_on_sources

from .device import LANES, SIM, tree_reduce

PIECE = 2 if SIM else 256     # sorted rows per chunk of bucket_pieces


@cuda.jit(cache=True)
def gather_rows(tokens, U, b, lengths, XP):
    """tokens (T,B,F) int; U (n,d); b (d,); lengths (B,) int64 -> XP (T,B,d)."""
    T, B, d = XP.shape
    r = cuda.blockIdx.x * cuda.blockDim.y + cuda.threadIdx.y
    j = cuda.blockIdx.y * cuda.blockDim.x + cuda.threadIdx.x
    if r < T * B and j < d:
        t, i = r // B, r % B
        if t < lengths[i]:
            acc = U[tokens[t, i, 0], j]
            for f in range(1, tokens.shape[2]):
                acc += U[tokens[t, i, f], j]
            XP[t, i, j] = acc + b[j]
        else:
            XP[t, i, j] = XP.dtype.type(0)


@cuda.jit(cache=True)
def bucket_keys(tokens, lengths, n, keys):
    """tokens (T,B,F) int; lengths (B,) int64 -> keys (T·B·F,) int64, see the module docstring."""
    T, B, F = tokens.shape
    r = cuda.grid(1)
    if r < T * B * F:
        row, f = r // F, r % F
        t, i = row // B, row % B
        token = tokens[t, i, f] if t < lengths[i] else n
        keys[r] = token * (T * B * F) + r


def piece_bound(rows, n):
    """The most pieces `rows` sorted rows of n tokens can make: one per chunk, plus one
    more wherever a token starts inside a chunk."""
    return -(-rows // PIECE) + min(n, rows)


@cuda.jit(cache=True)
def bucket_pieces(order, offsets, base, piece_token, delta, partial):
    """order (R·F,), offsets (n+1,), base (n+1,), piece_token (Q,) int64; delta (R,d) ->
    partial (Q,d): each piece's sum (rows of the pieces past base[n] are left as they were)."""
    cols, lanes = LANES
    buf = cuda.shared.array((LANES[1], LANES[0]), partial.dtype)
    ty, tx = cuda.threadIdx.y, cuda.threadIdx.x
    q = cuda.blockIdx.x
    j = cuda.blockIdx.y * cols + tx
    n = offsets.shape[0] - 1
    F = order.shape[0] // delta.shape[0]
    v = piece_token[q]
    start, stop = 0, 0
    if v < n:                  # the same for every thread of the block
        chunk = offsets[v] // PIECE + q - base[v]
        start, stop = max(offsets[v], chunk * PIECE), min(offsets[v + 1], (chunk + 1) * PIECE)
    acc = partial.dtype.type(0)
    if j < delta.shape[1]:
        for p in range(start + ty, stop, lanes):
            acc += delta[order[p] // F, j]
    buf[ty, tx] = acc
    cuda.syncthreads()        # all lanes' sums stored before the tree reads them
    total = tree_reduce(buf[:, tx], ty, lanes, False)
    if ty == 0 and v < n and j < delta.shape[1]:
        partial[q, j] = total


@cuda.jit(cache=True)
def bucket_total(base, partial, dU):
    """base (n+1,) int64; partial (Q,d) -> dU (n,d): each token's pieces added in order."""
    v = cuda.blockIdx.x * cuda.blockDim.y + cuda.threadIdx.y
    j = cuda.blockIdx.y * cuda.blockDim.x + cuda.threadIdx.x
    if v < dU.shape[0] and j < dU.shape[1]:
        acc = dU.dtype.type(0)
        for q in range(base[v], base[v + 1]):
            acc += partial[q, j]
        dU[v, j] = acc


key_on_sources(globals(), cuda_sources())
