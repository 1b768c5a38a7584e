"""Deterministic reductions: column sums (db, dc, the loss) and the sum of squares (the
global gradient norm). No float atomics: every partial sum is formed in a fixed order
that depends only on the array's shape, so the same input always gives the same bits.

sum_rows     out[p, j] = Σ_r A[r, j] over the rows of chunk p: [p·c, min(R, (p+1)·c)),
             c = ceil(R / P), P = out's rows. Launch: block LANES = (lx, ly), grid
             (ceil(m/lx), P). Thread (ty, tx) of block (bx, p) sums its chunk's rows ty,
             ty + ly, … of column bx·lx + tx in order (reads coalesced along the row), then a
             tree over ty in shared memory. A column sum is two launches: P = `row_chunks(R)`
             chunks in parallel, then their P partial rows in one chunk (the backend's
             `sum_rows`); the chunks depend on R alone, so the order of the additions does too.
sum_squares  partials[b] = Σ A_i² (float64) over i = b·THREADS + x + q·THREADS·nblocks, then
             a tree over the block; the host adds the few partials in order.
             Launch: block (THREADS,), grid (nblocks,) with nblocks fixed by A's size.
"""
from numba import cuda

from gpurnn.compile_cache import cuda_sources, key_on_sources

from .device import LANES, SIM, THREADS, tree_reduce

MAX_BLOCKS = 4 if SIM else 512   # sum_squares' grid cap (its partials are copied to the host)
CHUNK_ROWS = 4 if SIM else 256   # rows of one sum_rows chunk (ly lanes add CHUNK_ROWS / ly each)
MAX_CHUNKS = 2 if SIM else 4096  # sum_rows' first-pass chunks at most (its second pass adds them)
_BUF = (LANES[1], LANES[0])      # sum_rows' shared buffer: one row of partial sums per row lane


def row_chunks(R):
    """How many chunks sum_rows' first pass splits R rows into."""
    return max(1, min(-(-R // CHUNK_ROWS), MAX_CHUNKS))


@cuda.jit(cache=True)
def sum_rows(A, out):
    """A (R,m) -> out (P,m): column sums over P chunks of rows, accumulated in out's dtype."""
    cols, lanes = LANES
    buf = cuda.shared.array(_BUF, out.dtype)
    ty, tx = cuda.threadIdx.y, cuda.threadIdx.x
    j = cuda.blockIdx.x * cols + tx
    p = cuda.blockIdx.y
    chunk = (A.shape[0] + out.shape[0] - 1) // out.shape[0]
    acc = out.dtype.type(0)
    if j < A.shape[1]:
        for r in range(p * chunk + ty, min(A.shape[0], (p + 1) * chunk), lanes):
            acc += A[r, j]
    buf[ty, tx] = acc
    cuda.syncthreads()        # all lanes' partial sums stored before the tree reads them
    total = tree_reduce(buf[:, tx], ty, lanes, False)
    if ty == 0 and j < A.shape[1]:
        out[p, j] = total


@cuda.jit(cache=True)
def sum_squares(A, partials):
    """A (N,) flat -> partials (nblocks,) float64: each block's Σ A_i² over its strided share."""
    buf = cuda.shared.array(THREADS, partials.dtype)
    x = cuda.threadIdx.x
    acc = partials.dtype.type(0)
    for q in range(cuda.blockIdx.x * THREADS + x, A.shape[0], THREADS * cuda.gridDim.x):
        v = partials.dtype.type(A[q])
        acc += v * v
    buf[x] = acc
    cuda.syncthreads()        # all partial sums stored before the tree reads them
    total = tree_reduce(buf, x, THREADS, False)
    if x == 0:
        partials[cuda.blockIdx.x] = total


key_on_sources(globals(), cuda_sources())
