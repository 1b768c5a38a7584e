"""cpu_blas.gemm, the compiled loops' one BLAS call: the library it calls, its thread limit, and
the SciPy fallback behind the same signature."""
import ctypes

import numpy as np
import pytest
from numba import njit
from threadpoolctl import ThreadpoolController, threadpool_limits

from gpurnn.backends import cpu_blas


@njit(cache=True)
def _gemm(trans_a, trans_b, alpha, A, B, beta, C):
    cpu_blas.gemm(trans_a, trans_b, alpha, A, B, beta, C)


def _operands(rng, dtype, trans_a, trans_b, m=7, k=5, n=3):
    """op(A) (m,k) and op(B) (k,n) as row views of wider arrays (row stride > columns), and C (m,n)."""
    A = rng.standard_normal((k, m + 2) if trans_a else (m, k + 2)).astype(dtype)
    B = rng.standard_normal((n, k + 1) if trans_b else (k, n + 1)).astype(dtype)
    A = A[:, :m] if trans_a else A[:, :k]
    B = B[:, :k] if trans_b else B[:, :n]
    return A, B, rng.standard_normal((m, n)).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, False), (False, True), (True, True)])
def test_gemm_matches_numpy_with_beta_transposes_and_row_views(dtype, trans_a, trans_b):
    A, B, C0 = _operands(np.random.default_rng(0), dtype, trans_a, trans_b)
    C = C0.copy()
    _gemm(trans_a, trans_b, 2.0, A, B, 0.5, C)
    want = 2.0 * ((A.T if trans_a else A) @ (B.T if trans_b else B)) + 0.5 * C0
    np.testing.assert_allclose(C, want, rtol=1e-5 if dtype == np.float32 else 1e-13, atol=1e-6)


def test_gemm_calls_numpys_blas_which_the_thread_limit_holds():
    """The compiled loops call the library NumPy's matmul calls, and threadpool_limits(1), which
    `cpu_threads` relies on while two cells run at once, reaches it."""
    assert cpu_blas.LIBRARY in {lib.filepath for lib in ThreadpoolController().select(user_api="blas").lib_controllers}
    with threadpool_limits(limits=1):
        held = {lib.filepath: lib.num_threads for lib in ThreadpoolController().select(user_api="blas").lib_controllers}
    assert held[cpu_blas.LIBRARY] == 1


@pytest.mark.parametrize("kind,dtype,scalar", [("s", np.float32, ctypes.c_float), ("d", np.float64, ctypes.c_double)])
def test_scipy_fallback_has_the_cblas_signature(kind, dtype, scalar):
    """The adapter that takes SYMBOL where NumPy's CBLAS is missing computes the same row-major product."""
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    call = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_int, ctypes.c_int, i64, i64, i64, scalar, ptr, i64, ptr, i64,
                            scalar, ptr, i64)(cpu_blas.scipy_adapters()[kind])
    A, B, C0 = _operands(np.random.default_rng(1), dtype, True, False)
    C = C0.copy()
    size = A.itemsize
    call(cpu_blas.ROW_MAJOR, cpu_blas.TRANS, cpu_blas.NO_TRANS, 7, 3, 5, 1.5, A.ctypes.data, A.strides[0] // size,
         B.ctypes.data, B.strides[0] // size, -1.0, C.ctypes.data, 3)
    np.testing.assert_allclose(C, 1.5 * A.T @ B - C0, rtol=1e-5 if dtype == np.float32 else 1e-13, atol=1e-6)
