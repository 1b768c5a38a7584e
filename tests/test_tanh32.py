"""The CPU backend's float32 tanh (a rational fit, gpurnn.backends.cpu_blas) against libm itself:
tanhf called through ctypes, and the float64 tanh rounded to float32, on a dense sweep of
float32 values, around the saturation point and far beyond it (±inf included)."""
import ctypes
import ctypes.util

import numpy as np
from numba import njit

from gpurnn.backends.cpu_blas import _tanh32

LIBM = ctypes.CDLL(ctypes.util.find_library("m") or "libm.so.6")
LIBM.tanhf.restype, LIBM.tanhf.argtypes = ctypes.c_float, [ctypes.c_float]
# what the docstring of cpu_blas states, on every CPU: Numba contracts the fit's multiply-adds
# into FMAs where the host has them (4 ulp at most near ±1, 5 from the rounded tanh) and rounds
# each product and sum apart on a CPU without (NUMBA_CPU_NAME=generic: 5 ulp = 2.98e-7, and 6)
ABS_BOUND, ULP_TANHF, ULP_ROUNDED = 5 * 2.0 ** -24, 5, 6


@njit      # not cached: a disk cache keyed on this file alone would keep an old cpu_blas
def fit(x):
    out = np.empty_like(x)
    for i in range(x.size):
        out[i] = _tanh32(x[i])
    return out


def ulps(a, b):
    """Distance in float32 units in the last place (same-sign values: the gap of their bit patterns)."""
    return np.abs(a.view(np.int32).astype(np.int64) - b.view(np.int32).astype(np.int64))


def sweep(step):
    """Positive float32 from 1e-30 to 20, every `step`-th bit pattern, and their negatives."""
    bits = np.arange(np.float32(1e-30).view(np.int32), np.float32(20).view(np.int32), step, dtype=np.int32)
    x = bits.view(np.float32)
    return np.concatenate([x, -x])


def test_against_libm_tanhf():
    x = np.concatenate([sweep(4099), np.linspace(7, 9, 20_001, dtype=np.float32),     # the clamp at 7.905
                        np.float32([0.0, 1e-39, 30.0, 1e30, 3e38, np.inf])])
    x = np.concatenate([x, -x])
    libm = np.array([LIBM.tanhf(float(v)) for v in x], np.float32)
    got = fit(x)
    assert np.abs(got.astype(np.float64) - libm).max() <= ABS_BOUND                 # everywhere, ±inf too
    normal = np.abs(x) >= np.finfo(np.float32).tiny                                 # ulps of subnormals are tiny
    assert ulps(got[normal], libm[normal]).max() <= ULP_TANHF
    assert np.array_equal(np.sign(got), np.sign(libm)) and np.abs(got).max() <= 1


def test_against_the_correctly_rounded_tanh():
    x = sweep(257)
    rounded = np.tanh(x.astype(np.float64)).astype(np.float32)
    got = fit(x)
    assert ulps(got, rounded).max() <= ULP_ROUNDED
    np.testing.assert_array_equal(fit(-x), -got)                   # odd, bit for bit
