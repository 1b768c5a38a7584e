"""v3 (experiment): the two recurrences split the batch in halves, one thread per half.

Sequences are independent, so each thread runs the whole time loop on its rows with a
single-threaded BLAS: no barrier per step (OpenBLAS's own 2-thread GEMM synchronises its
threads at every step's call, and on a loaded machine each barrier waits for a
descheduled thread). The halves' loops are the backend's own @njit loops compiled with
`nogil=True` and run from two Python threads. SciPy's BLAS (the one those loops call) is
held at 1 thread while they run.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.linalg.cython_blas  # noqa: F401  (loaded before the controller looks for BLAS libraries)
from numba import njit
from threadpoolctl import ThreadpoolController

from gpurnn.backends import cpu

_forward = njit(nogil=True, cache=True)(cpu._recurrence_forward.py_func)
_backward = njit(nogil=True, cache=True)(cpu._backward_exact.py_func)


class SplitBackend(cpu.CPUBackend):
    """`CPUBackend` with the exact recurrences split over `workers` batch slices (B >= min_rows·workers)."""

    def __init__(self, workers=2, min_rows=4):
        self.workers, self.min_rows = workers, min_rows
        self.pool = ThreadPoolExecutor(workers)
        self.blas = ThreadpoolController().select(internal_api="openblas")

    def _slices(self, B):
        """Row ranges of the batch, one per worker (one range when B is too small to split)."""
        parts = self.workers if B >= self.min_rows * self.workers else 1
        edges = np.linspace(0, B, parts + 1).astype(int)
        return [slice(lo, hi) for lo, hi in zip(edges[:-1], edges[1:])]

    def _run(self, fn, slices, make_args):
        """fn(*make_args(rows)) for every slice, in parallel, with BLAS at 1 thread."""
        with self.blas.limit(limits=1):
            for future in [self.pool.submit(fn, *make_args(rows)) for rows in slices]:
                future.result()

    def recurrence_forward(self, XP, W, s0, lengths, activation):
        T, B, d = XP.shape
        S = np.empty((T + 1, B, d), XP.dtype)
        S[0] = s0
        self._run(_forward, self._slices(B), lambda r: (XP[:, r], W, S[:, r], lengths[r], activation))
        return S

    def recurrence_backward(self, G, g_last, S, W, lengths, activation, truncate):
        if truncate is not None or g_last is not None:
            return super().recurrence_backward(G, g_last, S, W, lengths, activation, truncate)
        T, B, d = G.shape
        delta = np.empty((T, B, d), S.dtype)
        ds0 = np.zeros((B, d), S.dtype)
        WT = np.ascontiguousarray(W.T)
        self._run(_backward, self._slices(B),
                  lambda r: (G[:, r], S[:, r], WT, lengths[r], activation, delta[:, r], ds0[r]))
        return delta, ds0
