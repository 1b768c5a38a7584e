"""v3: register blocking. A block of 16 × 16 threads computes a 64 × 64 tile of C, each
thread a 4 × 4 sub-grid of it (rows ty + 16·a, columns tx + 16·b), from shared-memory tiles
A[64 × 16] and B[16 × 16·4] loaded once per K-step of 16: each loaded value is reused 4×
from registers, 4× fewer shared-memory reads per multiply-add than v2.

    C[i, j] = Σ_m A[i, m] B[m, j]        A (M,K), B (K,N), no transposes (an experiment)

Launch: block (16, 16), grid (ceil(N/64), ceil(M/64)).
Barriers: after the tile loads (tiles complete before use) and after the inner loop (all
reads done before the next loads overwrite the tiles).
"""
from numba import cuda

BM = BN = 64
BK = 16
R = 4   # outputs per thread along each axis
BKP = BK + 1   # padded A-tile row: conflict-free column reads


@cuda.jit
def gemm(A, B, C):
    sA = cuda.shared.array((BM, BKP), C.dtype)
    sB = cuda.shared.array((BK, BN), C.dtype)
    acc = cuda.local.array((R, R), C.dtype)
    a_reg = cuda.local.array(R, C.dtype)
    ty, tx = cuda.threadIdx.y, cuda.threadIdx.x
    tid = ty * 16 + tx
    r0, c0 = cuda.blockIdx.y * BM, cuda.blockIdx.x * BN
    M, K, N = A.shape[0], A.shape[1], B.shape[1]
    zero = C.dtype.type(0)
    for a in range(R):
        for b in range(R):
            acc[a, b] = zero
    for k0 in range(0, K, BK):
        for q in range(R):                  # 1024 elements of each tile, 4 per thread
            e = tid + 256 * q
            i, m = e // BK, e % BK          # A tile: row i, column m
            sA[i, m] = A[r0 + i, k0 + m] if r0 + i < M and k0 + m < K else zero
            m2, j = e // BN, e % BN         # B tile: row m2, column j (coalesced along j)
            sB[m2, j] = B[k0 + m2, c0 + j] if k0 + m2 < K and c0 + j < N else zero
        cuda.syncthreads()                  # tiles complete before any thread reads them
        for m in range(BK):
            for a in range(R):
                a_reg[a] = sA[ty + 16 * a, m]
            for b in range(R):
                bv = sB[m, tx + 16 * b]
                for a in range(R):
                    acc[a, b] += a_reg[a] * bv
        cuda.syncthreads()                  # all reads done before the next loads overwrite
    for a in range(R):
        for b in range(R):
            i, j = r0 + ty + 16 * a, c0 + tx + 16 * b
            if i < M and j < N:
                C[i, j] = acc[a, b]


def launch(A, B, C):
    M, N = C.shape
    gemm[((N + BN - 1) // BN, (M + BM - 1) // BM), (16, 16)](A, B, C)
