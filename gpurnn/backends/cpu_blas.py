"""Compiled helpers for the CPU backend's loops: a BLAS GEMM with β, and σ that vectorizes.

`gemm` exposes what Numba's `np.dot` hides: β (to accumulate into C), transposed operands
without copies, and row views of larger arrays. It calls the BLAS NumPy's matmul calls (the
ILP64 OpenBLAS that NumPy's wheels bundle, found among the loaded libraries by threadpoolctl,
so `threadpool_limits` holds it) through its CBLAS ?gemm, registered with LLVM under a name
of ours (`SYMBOL`) at import, so that functions using it still cache. Where no loaded
library exports it, the same name is given to an adapter over SciPy's BLAS (Numba's
`numba_xxgemm`, what `np.dot` calls) and a `BLASFallbackWarning` says why; `LIBRARY` says
which runs.

`activate` applies σ to one row. float32 tanh uses a rational approximation (the
minimax fit Eigen uses; within 2.4e-7 of libm's tanhf, at most 5 ulp from it and from the
correctly rounded tanh, checked by tests/test_tanh32.py) that LLVM turns into
vector instructions, about 40× faster than a scalar libm call per element; float64
keeps libm's tanh, and logistic and relu keep `gpurnn.cell`'s definitions.
"""
from __future__ import annotations

import ctypes
import math
import warnings

import llvmlite.binding as llvm
import numpy as np
from numba import cfunc, njit, types
from numba.extending import overload
from threadpoolctl import ThreadpoolController

from .. import cell

TANH = cell.TANH
sigma = njit(cell.sigma, cache=True)
sigma_prime = njit(cell.sigma_prime_from_state, cache=True)

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112          # CBLAS's enum values
SYMBOL = "gpurnn_cblas_{}gemm"                      # what compiled code calls, "s" or "d" in {}
# ILP64 CBLAS names OpenBLAS exports: NumPy's wheels (scipy-openblas64), then OpenBLAS's own 64_ suffix
CBLAS_NAMES = ("scipy_cblas_{}gemm64_", "cblas_{}gemm64_")
_KINDS = {"s": types.float32, "d": types.float64}


class BLASFallbackWarning(UserWarning):
    """The CPU loops call SciPy's BLAS: no loaded library exports the CBLAS gemm NumPy's wheels do."""


def _cblas_signature(dtype):
    """cblas_?gemm(order, trans_a, trans_b, m, n, k, α, A, lda, B, ldb, β, C, ldc), 64-bit integers."""
    ptr, i64, enum = types.CPointer(dtype), types.int64, types.intc
    return types.void(enum, enum, enum, i64, i64, i64, dtype, ptr, i64, ptr, i64, dtype, ptr, i64)


def numpy_cblas():
    """(path, {"s": address, "d": address}) of the first loaded BLAS library (threadpoolctl's list,
    NumPy's once NumPy is imported) that exports an ILP64 CBLAS sgemm and dgemm; (None, reason)
    where none does."""
    libraries = ThreadpoolController().select(user_api="blas").lib_controllers
    for library in libraries:
        handle = ctypes.CDLL(library.filepath)
        for name in CBLAS_NAMES:
            if all(hasattr(handle, name.format(kind)) for kind in _KINDS):
                return library.filepath, {kind: ctypes.cast(getattr(handle, name.format(kind)), ctypes.c_void_p).value
                                          for kind in _KINDS}
    found = ", ".join(library.filepath for library in libraries) or "none"
    return None, f"no loaded BLAS library exports {' or '.join(n.format('s') for n in CBLAS_NAMES)} (loaded: {found})"


def scipy_adapters():
    """{"s": address, "d": address} of compiled functions with the CBLAS ?gemm signature (row
    major) that call SciPy's ?gemm through Numba's `numba_xxgemm` (column-major, Fortran
    conventions: row-major C = op(A) op(B) is column-major Cᵀ = op(B)ᵀ op(A)ᵀ, so BLAS gets B first)."""
    return {kind: _scipy_adapter(kind, dtype).address for kind, dtype in _KINDS.items()}


def _scipy_adapter(kind, dtype):
    ptr, np_dtype = types.CPointer(dtype), np.float32 if dtype == types.float32 else np.float64
    xxgemm = types.ExternalFunction("numba_xxgemm", types.intc(
        types.char, types.char, types.char, types.intp, types.intp, types.intp,
        ptr, ptr, types.intp, ptr, types.intp, ptr, ptr, types.intp))
    code = ord(kind)

    @cfunc(_cblas_signature(dtype))
    def adapter(order, trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc):
        scalars = np.empty(2, np_dtype)
        scalars[0], scalars[1] = alpha, beta
        xxgemm(code, ord("t") if trans_b == TRANS else ord("n"), ord("t") if trans_a == TRANS else ord("n"), n, m, k,
               scalars[0:].ctypes, B, ldb, A, lda, scalars[1:].ctypes, C, ldc)

    return adapter


def _register():
    """Give SYMBOL's names their functions (NumPy's CBLAS, else the SciPy adapters); which, and why."""
    path, found = numpy_cblas()
    if path is None:
        warnings.warn(f"gpurnn's CPU loops call SciPy's BLAS, slower per step: {found}", BLASFallbackWarning,
                      stacklevel=2)
        library, found = f"SciPy's BLAS through numba_xxgemm ({found})", scipy_adapters()
    else:
        library = path
    for kind, address in found.items():
        llvm.add_symbol(SYMBOL.format(kind), address)
    return library


LIBRARY = _register()
_CBLAS = {dtype: types.ExternalFunction(SYMBOL.format(kind), _cblas_signature(dtype)) for kind, dtype in _KINDS.items()}


def gemm(trans_a, trans_b, alpha, A, B, beta, C):
    """C ← α op(A) op(B) + β C for row-major 2-D arrays whose rows are contiguous.

    op(X) = Xᵀ when trans_X. Shapes: op(A) (m,k), op(B) (k,n), C (m,n). Callable from
    `@njit` code only. A row-major X with row stride ld is passed as (X, ld): row views of
    larger arrays need no copy.
    """
    raise NotImplementedError("gemm is called from @njit code only")


@overload(gemm)
def _gemm_impl(trans_a, trans_b, alpha, A, B, beta, C):
    cblas = _CBLAS[C.dtype]
    scalar = np.float32 if C.dtype == types.float32 else np.float64
    size = np.dtype(scalar).itemsize

    def impl(trans_a, trans_b, alpha, A, B, beta, C):
        m, n = C.shape
        k = A.shape[0] if trans_a else A.shape[1]
        if m == 0 or n == 0:
            return
        cblas(ROW_MAJOR, TRANS if trans_a else NO_TRANS, TRANS if trans_b else NO_TRANS, m, n, k, scalar(alpha),
              A.ctypes, _ld(A, size), B.ctypes, _ld(B, size), scalar(beta), C.ctypes, _ld(C, size))

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
