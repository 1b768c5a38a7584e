"""Mean and max pooling over each sequence's real states, and the pool's gradient.

H (T,B,d) holds the states s_1..s_T; sequence b is real on H[0..L−1] with L = lengths[b] ≥ 1.

pool_states  mode MEAN: P[b, j] = (Σ_{t<L} H[t, b, j]) / L, summed in order t = 0..L−1.
             mode MAX:  P[b, j] = max_{t<L} H[t, b, j], argmax[b, j] = t for the first
             t that reaches it (a later equal value never replaces it).
             Launch: block LANES = (lx, ly), grid (ceil(B/ly), ceil(d/lx)) (rows along x, whose
             limit is 2^31 − 1); thread (ty, tx) owns P[bx·ly + ty, by·lx + tx] and walks its
             steps alone. No barrier.
unpool_grad  G (T,B,d) = ∂L/∂s_t explicit from dP (B,d) = ∂L/∂P:
             MEAN: G[t, b, j] = dP[b, j] / L for t < L;  MAX: G[t, b, j] = dP[b, j] where
             t = argmax[b, j];  0 everywhere else (past L, and off the argmax).
             Launch: block LANES, grid (ceil(T·B/ly), ceil(d/lx)); thread (ty, tx) owns G's
             flat row r = t·B + b = bx·ly + ty, column by·lx + tx. No barrier.

Every output entry is written by exactly one thread from a fixed-order loop: no atomics,
the same bits on every run.
"""
from numba import cuda

from gpurnn.compile_cache import cuda_sources, key_on_sources

MEAN, MAX = 0, 1
MODES = {"mean": MEAN, "max": MAX}


@cuda.jit(cache=True)
def pool_states(H, lengths, mode, P, argmax):
    """H (T,B,d); lengths (B,) int64 ≥ 1; mode MEAN | MAX -> P (B,d), argmax (B,d) int64
    (written for MAX only)."""
    B, d = P.shape
    i = cuda.blockIdx.x * cuda.blockDim.y + cuda.threadIdx.y
    j = cuda.blockIdx.y * cuda.blockDim.x + cuda.threadIdx.x
    if i < B and j < d:
        L = lengths[i]
        if mode == MEAN:
            acc = P.dtype.type(0)
            for t in range(L):
                acc += H[t, i, j]
            P[i, j] = acc / P.dtype.type(L)
        else:
            best, where = H[0, i, j], 0
            for t in range(1, L):
                if H[t, i, j] > best:
                    best, where = H[t, i, j], t
            P[i, j] = best
            argmax[i, j] = where


@cuda.jit(cache=True)
def unpool_grad(dP, lengths, argmax, mode, G):
    """dP (B,d); lengths (B,) int64; argmax (B,d) int64 (read for MAX only); mode -> G (T,B,d)."""
    T, B, d = G.shape
    r = cuda.blockIdx.x * cuda.blockDim.y + cuda.threadIdx.y
    j = cuda.blockIdx.y * cuda.blockDim.x + cuda.threadIdx.x
    if r < T * B and j < d:
        t, i = r // B, r % B
        value = G.dtype.type(0)
        if mode == MEAN:
            if t < lengths[i]:
                value = dP[i, j] / G.dtype.type(lengths[i])
        elif argmax[i, j] == t:
            value = dP[i, j]
        G[t, i, j] = value


key_on_sources(globals(), cuda_sources())
