"""Device functions shared by the kernels: which cell's arrays a block reads, the shared-memory
tile product and the tree reduction (the cell's own math is `cell_step`'s). Every device function is
inlined at the Numba IR level (`inline="always"`): it costs nothing at run time, and unlike a
plain `cuda.jit(device=True)` function it compiles with `compile_ptx` on a machine without a
GPU (a plain one asks the driver for the current device), which the PTX tests need.

Block shapes, shared by the kernels' launches:
  TILE     the edge of the square blocks of the tiled products (16 × 16 = 256 threads);
  LANES    (x, y) of the 2-D elementwise blocks: 32 columns (one warp, coalesced) × 8 rows;
           their grid runs over rows along x (up to 2³¹−1 blocks) and columns along y, so
           T·B rows are never limited by grid.y's 65,535;
  THREADS  threads of the 1-D blocks.
Under the Numba simulator every thread is a Python thread, so the blocks shrink there
(fewer idle padding threads, a faster test suite); the code path is the same.
"""
from numba import cuda

try:   # numba-cuda 0.2x and later keep their own settings module; older ones read numba's
    from numba.cuda.core import config
except ImportError:
    from numba import config

SIM = bool(config.ENABLE_CUDASIM)
TILE = 4 if SIM else 16
PAD = TILE + 1      # shared tiles are (TILE, PAD): the pad spreads transposed stores over the banks
LANES = (4, 2) if SIM else (32, 8)
THREADS = 8 if SIM else 256

inline = cuda.jit(device=True, inline="always")


def array_types(nbtype):
    """The C-contiguous 1-d, 2-d and 3-d Numba array types of `nbtype` (a kernel's launch
    signature: what CuPy arrays and Numba device arrays are)."""
    return nbtype[::1], nbtype[:, ::1], nbtype[:, :, ::1]


@inline
def pick(cell, first, second):
    """Cell `cell`'s array (0: `first`, 1: `second`). A recurrent kernel's launch runs one or
    two cells (a layer's two directions, each its own arrays), each block the cell its block
    index names; a one-cell launch passes its arrays as both."""
    return first if cell == 0 else second


@inline
def tile_product(A, B, trans_a, trans_b, sA, sB):
    """Σ_m op(A)[row, m] · op(B)[m, col] for this thread's (row, col).

    op(X) = Xᵀ when its flag is set; op(A) is (M,K), op(B) is (K,N). The block is
    (TILE, TILE) threads and owns the output tile whose corner is (blockIdx.x·TILE,
    blockIdx.y·TILE): row tiles along the grid's x, which holds up to 2³¹−1 blocks (y holds
    65,535); thread (ty, tx) owns row = corner + ty, col = corner + tx. Each
    pass loads one (TILE, TILE) tile of op(A) and of op(B) into shared memory sA, sB
    (each (TILE, TILE+1): the pad keeps the transposed stores free of bank conflicts),
    reading global memory along rows (coalesced) whether or not the operand is
    transposed. Out-of-range entries load as 0. Every thread of the block must call it.
    Accumulates in A's dtype; returns the sum.
    """
    ty, tx = cuda.threadIdx.y, cuda.threadIdx.x
    r0, c0 = cuda.blockIdx.x * TILE, cuda.blockIdx.y * TILE
    M = A.shape[1] if trans_a else A.shape[0]
    K = A.shape[0] if trans_a else A.shape[1]
    N = B.shape[0] if trans_b else B.shape[1]
    zero = A.dtype.type(0)
    acc = zero
    for k0 in range(0, K, TILE):
        if trans_a:   # op(A)[r0+tx, k0+ty] = A[k0+ty, r0+tx]: threads along tx read one row of A
            i, m = r0 + tx, k0 + ty
            sA[tx, ty] = A[m, i] if i < M and m < K else zero
        else:
            i, m = r0 + ty, k0 + tx
            sA[ty, tx] = A[i, m] if i < M and m < K else zero
        if trans_b:   # op(B)[k0+tx, c0+ty] = B[c0+ty, k0+tx]
            m, j = k0 + tx, c0 + ty
            sB[tx, ty] = B[j, m] if m < K and j < N else zero
        else:
            m, j = k0 + ty, c0 + tx
            sB[ty, tx] = B[m, j] if m < K and j < N else zero
        cuda.syncthreads()    # both tiles complete before any thread reads them
        for m in range(TILE):
            acc += sA[ty, m] * sB[m, tx]
        cuda.syncthreads()    # every thread done reading before the next pass overwrites the tiles
    return acc


@inline
def tree_reduce(buf, x, size, take_max):
    """buf[0] ← the max (take_max) or the sum of buf[0:size], size a power of two; returns it.

    Pass h halves the active threads: thread x < size/2^h combines buf[x] and buf[x + half],
    a fixed order (deterministic). x is the calling thread's index along buf; every thread
    of the block must call it (it holds barriers), after its own buf[x] is stored and a
    barrier has made all of them visible.
    """
    half = size // 2
    while half > 0:
        if x < half:
            buf[x] = max(buf[x], buf[x + half]) if take_max else buf[x] + buf[x + half]
        cuda.syncthreads()    # this pass's results visible before the next pass reads them
        half //= 2
    return buf[0]
