"""v1: one thread per output element, operands read straight from global memory.

    C[i, j] = Σ_m A[i, m] B[m, j]        A (M,K), B (K,N)

Launch: block (16, 16), grid (ceil(N/16), ceil(M/16)); thread (ty, tx) owns C[by·16+ty, bx·16+tx].
The baseline: every operand is read K times from global memory (L2 catches some).
"""
from numba import cuda

BLOCK = (16, 16)


@cuda.jit
def gemm(A, B, C):
    i, j = cuda.grid(2)[1], cuda.grid(2)[0]
    if i < C.shape[0] and j < C.shape[1]:
        acc = C.dtype.type(0)
        for m in range(A.shape[1]):
            acc += A[i, m] * B[m, j]
        C[i, j] = acc


def launch(A, B, C):
    M, N = C.shape
    gemm[((N + 15) // 16, (M + 15) // 16), BLOCK](A, B, C)
