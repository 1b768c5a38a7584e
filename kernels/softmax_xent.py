"""Fused softmax + cross-entropy + (ŷ − y) over the rows of the logits, one block per row.

For row r with target y = targets[r] ≥ 0, z = Z[r], μ = max_j z_j, Σ = Σ_j e^(z_j − μ):

    dZ[r, j]    = e^(z_j − μ) / Σ − [j = y]                 (ŷ − onehot(y))
    rows[r, 0]  = log Σ + μ − z_y                            (−log ŷ_y, in float64)
    rows[r, 1]  = 1                                          (one loss term)

A row with y < 0 (no target: ignored, past the sequence's end, or not the last step in
"last" mode, which the caller encodes as −1) gets dZ[r] = 0 and rows[r] = (0, 0).
`rows` is then summed by the deterministic `sum_rows` into (loss, count).

The max and the sum are tree reductions over the block's threads in a fixed order, so
the result does not depend on timing.

Launch: block (ROW_THREADS,), grid (R,); thread x handles columns x, x + ROW_THREADS, …
"""
import math

from numba import cuda

from gpurnn.compile_cache import cuda_sources, key_on_sources

from .device import SIM, tree_reduce

# Threads per row (a power of two): 128 covers k up to a few thousand in a handful of
# passes; 4 under the simulator, where each thread is a Python thread.
ROW_THREADS = 4 if SIM else 128


@cuda.jit(cache=True)
def softmax_xent(Z, targets, dZ, rows):
    """Z, dZ (R,k); targets (R,) int64; rows (R,2) float64: (loss, counted) per row."""
    buf = cuda.shared.array(ROW_THREADS, Z.dtype)
    r, x = cuda.blockIdx.x, cuda.threadIdx.x
    k = Z.shape[1]
    y = targets[r]
    if y < 0:     # uniform across the block: every thread leaves, no barrier is skipped by some only
        for j in range(x, k, ROW_THREADS):
            dZ[r, j] = 0
        if x == 0:
            rows[r, 0] = 0
            rows[r, 1] = 0
        return
    top = Z[r, x] if x < k else Z[r, 0]
    for j in range(x + ROW_THREADS, k, ROW_THREADS):
        top = max(top, Z[r, j])
    buf[x] = top
    cuda.syncthreads()        # every thread's partial max stored before the tree reads it
    top = tree_reduce(buf, x, ROW_THREADS, True)
    cuda.syncthreads()        # all threads have read the max before buf is reused for the sum
    total = Z.dtype.type(0)
    for j in range(x, k, ROW_THREADS):
        e = math.exp(Z[r, j] - top)
        dZ[r, j] = e
        total += e
    buf[x] = total
    cuda.syncthreads()        # every thread's partial sum stored before the tree reads it
    total = tree_reduce(buf, x, ROW_THREADS, False)
    one, zero = Z.dtype.type(1), Z.dtype.type(0)
    inv = one / total
    for j in range(x, k, ROW_THREADS):
        dZ[r, j] = dZ[r, j] * inv - (one if j == y else zero)
    if x == 0:
        wide = rows.dtype.type
        rows[r, 0] = math.log(wide(total)) + wide(top) - wide(Z[r, y])
        rows[r, 1] = 1


key_on_sources(globals(), cuda_sources())
