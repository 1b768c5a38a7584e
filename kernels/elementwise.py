"""Elementwise kernels on flat arrays: scaling (clipping by global norm) and clamping
(clipping by value). out[i] = A[i] · factor;  out[i] = min(max(A[i], −limit), limit).

Launch: block (THREADS,), grid (ceil(N/THREADS),); one element per thread, no barrier.
"""
from numba import cuda

from gpurnn.compile_cache import cuda_sources, key_on_sources


@cuda.jit(cache=True)
def scale(A, factor, out):
    """out (N,) = A (N,) · factor, with factor cast to A's dtype."""
    i = cuda.grid(1)
    if i < A.shape[0]:
        out[i] = A[i] * A.dtype.type(factor)


@cuda.jit(cache=True)
def clamp(A, limit, out):
    """out (N,) = A (N,) clamped to [−limit, limit], with limit cast to A's dtype."""
    i = cuda.grid(1)
    if i < A.shape[0]:
        top = A.dtype.type(limit)
        out[i] = min(max(A[i], -top), top)


key_on_sources(globals(), cuda_sources())
