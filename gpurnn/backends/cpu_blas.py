"""Compiled helpers for the CPU backend's loops: a BLAS GEMM with β, and σ that vectorizes.

`gemm` calls the same BLAS as Numba's own `np.dot` (SciPy's, through Numba's helper
library, so functions using it still cache), but exposes what `np.dot` hides: β (to
accumulate into C), transposed operands without copies, and row views of larger arrays.

`activate` applies σ to one row. float32 tanh uses a rational approximation (the
minimax fit Eigen uses; within 3e-7 of libm's tanhf, at most 5 ulp from it and 6 from the
correctly rounded tanh, with or without FMA contraction: tests/test_tanh32.py) that LLVM
turns into vector instructions, about 40× faster than a scalar libm call per element; float64
keeps libm's tanh, and logistic and relu keep `gpurnn.cell`'s definitions.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, types
from numba.extending import overload

from .. import cell
from ..compile_cache import CPU_SOURCES, key_on_sources

TANH = cell.TANH
sigma = njit(cell.sigma, cache=True)
sigma_prime = njit(cell.sigma_prime_from_state, cache=True)


def _xxgemm(dtype):
    """Numba's C wrapper over SciPy's ?gemm (column-major BLAS, Fortran conventions)."""
    ptr = types.CPointer(dtype)
    return types.ExternalFunction("numba_xxgemm", types.intc(
        types.char, types.char, types.char, types.intp, types.intp, types.intp,
        ptr, ptr, types.intp, ptr, types.intp, ptr, ptr, types.intp))


_GEMM = {types.float32: (ord("s"), _xxgemm(types.float32)), types.float64: (ord("d"), _xxgemm(types.float64))}


def gemm(trans_a, trans_b, alpha, A, B, beta, C):
    """C ← α op(A) op(B) + β C for row-major 2-D arrays whose rows are contiguous.

    op(X) = Xᵀ when trans_X. Shapes: op(A) (m,k), op(B) (k,n), C (m,n). Callable from
    `@njit` code only. Row-major C = op(A) op(B) is column-major Cᵀ = op(B)ᵀ op(A)ᵀ, so
    BLAS gets B first; a row-major X with row stride ld is the column-major Xᵀ with ld.
    """
    raise NotImplementedError("gemm is called from @njit code only")


@overload(gemm)
def _gemm_impl(trans_a, trans_b, alpha, A, B, beta, C):
    kind, xxgemm = _GEMM[C.dtype]
    dtype = np.float32 if C.dtype == types.float32 else np.float64
    size = np.dtype(dtype).itemsize

    def impl(trans_a, trans_b, alpha, A, B, beta, C):
        m, n = C.shape
        k = A.shape[0] if trans_a else A.shape[1]
        if m == 0 or n == 0:
            return
        scalars = np.empty(2, dtype)
        scalars[0], scalars[1] = alpha, beta
        xxgemm(kind, ord("t") if trans_b else ord("n"), ord("t") if trans_a else ord("n"), n, m, k,
               scalars[0:].ctypes, B.ctypes, _ld(B, size), A.ctypes, _ld(A, size),
               scalars[1:].ctypes, C.ctypes, _ld(C, size))

    return impl


@njit(cache=True)
def _ld(X, itemsize):
    """BLAS leading dimension of a row-major X with contiguous rows: its row stride (≥ 1)."""
    return max(X.strides[0] // itemsize, X.shape[1], 1)


@njit(cache=True, fastmath=True, error_model="numpy")
def _tanh32(x):
    """tanh for float32 by a [13/6] rational minimax fit on [−7.9, 7.9] (saturated outside)."""
    x = min(max(x, np.float32(-7.9053111)), np.float32(7.9053111))
    x2 = x * x
    p = np.float32(-2.76076847742355e-16)
    p = p * x2 + np.float32(2.00018790482477e-13)
    p = p * x2 + np.float32(-8.60467152213735e-11)
    p = p * x2 + np.float32(5.12229709037114e-08)
    p = p * x2 + np.float32(1.48572235717979e-05)
    p = p * x2 + np.float32(6.37261928875436e-04)
    p = p * x2 + np.float32(4.89352455891786e-03)
    q = np.float32(1.19825839466702e-06)
    q = q * x2 + np.float32(1.18534705686654e-04)
    q = q * x2 + np.float32(2.26843463243900e-03)
    q = q * x2 + np.float32(4.89352518554385e-03)
    return x * p / q


def fast_tanh(x):
    """tanh(x): the rational fit for float32, libm for float64 (from @njit code)."""
    return math.tanh(x)


@overload(fast_tanh)
def _fast_tanh_impl(x):
    if x == types.float32:
        return lambda x: _tanh32(x)
    return lambda x: math.tanh(x)


@njit(cache=True, error_model="numpy", inline="always")
def activate(act, pre, extra, out):
    """out[j] = σ(pre[j] + extra[j]) over one row (d,); out may be pre."""
    if act == TANH:
        for j in range(out.shape[0]):
            out[j] = fast_tanh(pre[j] + extra[j])
    else:
        for j in range(out.shape[0]):
            out[j] = sigma(act, pre[j] + extra[j])


key_on_sources(globals(), CPU_SOURCES)
