"""cpu_blas.gemm, the compiled loops' one BLAS call: β, transposes and row views of wider arrays."""
import numpy as np
import pytest
from numba import njit

from gpurnn.backends import cpu_blas


@njit      # not cached: a disk cache keyed on this file alone would keep an old cpu_blas
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

