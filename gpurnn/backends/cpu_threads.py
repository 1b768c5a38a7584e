"""Run the CPU backend's time loops on slices of the batch, one thread per slice.

Sequences of a batch are independent, so the recurrence forward and backward split into
row slices that each run the whole time loop alone: one thread per slice, each calling a
single-threaded BLAS, and no synchronisation until the loops end. The alternative, one
multi-threaded BLAS call per step, puts a thread barrier in every step; on a machine
with more runnable threads than cores each barrier waits for a descheduled thread, and
the loop ran 5-60× slower on the 2-core bench machine (profiling/RESULTS.md, ## CPU).

The number of slices follows the BLAS thread limit in force (so `threadpoolctl`'s
`threadpool_limits(1)` makes everything serial), and a slice keeps at least `MIN_ROWS`
rows. While these loops run, BLAS is held at 1 thread (process-wide, restored after),
also when the batch is not split.

Exact loops with large steps do not come here: `stepwise_blas` sends them to one NumPy
GEMM per step on all threads, which on the quiet machine ran 1.5-2.3× faster than
slices (NumPy's OpenBLAS 0.3.31 reaches 144 GFLOP/s on a (128,512)·(512,512) step with
2 threads; SciPy's 0.3.30, which Numba calls, 60-70 per thread, less when two run).
They pay the per-step barrier that a loaded machine punishes.
"""
from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor

import numpy as np

MIN_ROWS = 4          # rows per slice at least: below, per-step BLAS calls are latency-bound
# B·d² multiply-adds per step at least, else one loop over the whole batch: below, splitting
# measured no faster (B = 8 and 32 with d·d = 256², 128²).
MIN_STEP_WORK = 1 << 21
# B·d² multiply-adds per step at least for `stepwise_blas`: there a NumPy GEMM per step on
# 2 threads (NumPy's OpenBLAS 0.3.31) beats 2 slices on SciPy's 1-thread BLAS by 1.5-2.3×,
# and Python's ~10 µs per step is at most a tenth of a step (profiling/RESULTS.md, ## CPU).
STEPWISE_WORK = 1 << 21
# B·d² at most: OpenBLAS runs such a product on one thread by itself, so no limit is needed.
SERIAL_BLAS_WORK = 1 << 18


@functools.cache
def _blas():
    """threadpoolctl's handle on the BLAS libraries loaded now (SciPy's, which Numba calls, included)."""
    import scipy.linalg.cython_blas  # noqa: F401  (load SciPy's BLAS before looking for libraries)
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController().select(user_api="blas")


@functools.cache
def _pool(workers):
    return ThreadPoolExecutor(workers, thread_name_prefix="gpurnn-cpu")


def slices(B, d):
    """Row slices of a batch of B sequences with d hidden units, one per thread to use."""
    parts = 1
    if B * d * d >= MIN_STEP_WORK and B >= 2 * MIN_ROWS:
        threads = max([lib["num_threads"] for lib in _blas().info()] + [1])
        parts = min(threads, B // MIN_ROWS)
    if parts == 1:
        return [slice(0, B)]
    edges = np.linspace(0, B, parts + 1).astype(np.int64)
    return [slice(int(lo), int(hi)) for lo, hi in zip(edges[:-1], edges[1:])]


def stepwise_blas(B, d):
    """Whether an exact time loop should run in Python with one NumPy GEMM per step on every
    BLAS thread instead (from STEPWISE_WORK multiply-adds per step)."""
    return B * d * d >= STEPWISE_WORK


def run_sliced(loop, B, d, args_for):
    """loop(*args_for(rows)) for every row slice of the batch; in parallel when there are several.

    `loop` must release the GIL (`@njit(nogil=True)`); `args_for(rows)` gives its
    arguments restricted to the rows of one slice (views, so results land in place).
    """
    parts = slices(B, d)
    if len(parts) == 1 and B * d * d <= SERIAL_BLAS_WORK:
        loop(*args_for(parts[0]))               # BLAS runs these small products on one thread anyway
        return
    with _blas().limit(limits=1):               # about 30 µs
        if len(parts) == 1:
            loop(*args_for(parts[0]))
            return
        for future in [_pool(len(parts)).submit(loop, *args_for(rows)) for rows in parts]:
            future.result()
