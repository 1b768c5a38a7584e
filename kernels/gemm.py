"""C = op(A) op(B) (+ bias), the tiled shared-memory GEMM (the simulator's and the fallback's
product; cuBLAS through CuPy does the large products on a GPU, see `gpurnn.backends.cuda`).

    C[i, j] = Σ_m op(A)[i, m] op(B)[m, j]  (+ bias[j] when has_bias)

Launch: block (TILE, TILE), grid (ceil(M/TILE), ceil(N/TILE)) (rows along x: any M; N up to
65,535·TILE); thread (ty, tx) of block (bx, by) owns C[bx·TILE + ty, by·TILE + tx]. The
barriers are `tile_product`'s.
"""
from numba import cuda

from gpurnn.compile_cache import cuda_sources, key_on_sources

from .device import PAD, TILE, tile_product


@cuda.jit(cache=True)
def gemm(A, B, bias, trans_a, trans_b, has_bias, C):
    """op(A) (M,K) · op(B) (K,N) (+ bias (N,)) -> C (M,N); `bias` is a dummy when has_bias is 0."""
    sA = cuda.shared.array((TILE, PAD), A.dtype)
    sB = cuda.shared.array((TILE, PAD), A.dtype)
    acc = tile_product(A, B, trans_a, trans_b, sA, sB)
    i = cuda.blockIdx.x * TILE + cuda.threadIdx.y
    j = cuda.blockIdx.y * TILE + cuda.threadIdx.x
    if i < C.shape[0] and j < C.shape[1]:
        if has_bias:
            acc += bias[j]
        C[i, j] = acc


key_on_sources(globals(), cuda_sources())
