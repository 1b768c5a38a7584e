"""Which loop runs a layer's recurrences on the CPU, and on which threads: the one place that decides
(and, by `products_plan`, whether independent products run at once on a thread each).

A layer has D cells (directions) of B sequences each; all D·B are independent. `plan` picks,
with N the BLAS threads allowed now (`threadpool_limits(1)` makes everything serial):

    cells at once  D = 2, N ≥ 2 and at least CELLS_AT_ONCE_WORK per cell loop: the `cpu_loops`
                loops of the two cells on a thread each, BLAS held at 1 thread (each cell in
                batch slices too where N allows). No synchronisation until both end, so a
                loaded machine costs no per-step barrier; a cell's GEMMs keep all B rows.
                Measured against the cells in turn and against stepwise (profiling/RESULTS.md,
                "Stacked and bidirectional models").
    stepwise    exact loops with large steps (B·d² ≥ STEPWISE_WORK): a Python loop around one
                NumPy GEMM per step on every BLAS thread, σ / δ compiled. On the quiet machine
                1.5-2.3× faster than slices there (NumPy's OpenBLAS 0.3.31 reaches 144 GFLOP/s
                on a (128,512)·(512,512) step with 2 threads; SciPy's 0.3.30, which the compiled
                loops call, 60-70 per thread, less when two run), Python's ~10 µs per step at
                most a tenth of a step. It pays a thread barrier per step, which a loaded
                machine punishes (profiling/RESULTS.md, ## CPU).
    slices      otherwise from MIN_STEP_WORK multiply-adds per step (truncated loops; exact ones
                go stepwise there): the batch in row slices of at least MIN_ROWS rows, one
                thread each, BLAS held at 1 thread (below MIN_STEP_WORK = 2^19 splitting
                measured no faster: B·d² = 2^18-3.3·10^5 at B = 16-64; from 2^19 it was as fast
                or up to 2.4× faster at B = 8-128, d = 100-362: profiling/RESULTS.md, issue 20).
    one thread  the rest: the compiled loops in the calling thread, BLAS held at 1 thread
                (process-wide, restored after), or untouched where BLAS runs such products
                on one thread anyway (B·d² ≤ SERIAL_BLAS_WORK).

`products_plan` runs two independent products (a layer's dW of its two cells, dU with dX, the
head's dV with G) on a thread each, BLAS held at 1 thread, where N ≥ 2 and each has at least
PRODUCTS_AT_ONCE_WORK multiply-adds: one thread's GEMM rate is ~90-95 GFLOP/s on these shapes
while OpenBLAS's two threads inside one of them reach ~148 together, and a loaded machine,
which starves BLAS's own threads, costs no barrier inside a product (profiling/RESULTS.md).

Threads of ours run at full speed only while OpenBLAS's idle workers sleep: after a
multi-threaded product they spin for OPENBLAS_THREAD_TIMEOUT (2^n cycles, 2^28 ≈ 0.1 s
unset), which OpenBLAS reads once, when it loads. `import gpurnn` bounds it to 2^20 (~0.4 ms)
for the libraries loaded after it (`gpurnn/__init__.py`); for one loaded before without the
variable (a program that imports NumPy first), `run` stops its workers (OpenBLAS's
`blas_thread_shutdown_`, ~0.1 ms on an idle machine, a scheduler time slice on a loaded one)
before our threads run at once, once the 1-thread limit is in force (restoring the thread
count starts them again, ready for the multi-threaded products that follow), so its spinning
never takes a core our threads need, either way. A phase on the calling thread alone leaves
them be: they spin on the other core. Like `threadpool_limits`, this assumes no other thread
of the process is inside a multi-threaded OpenBLAS call meanwhile.
"""
from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np

MIN_ROWS = 4               # rows per slice at least: below, per-step BLAS calls are latency-bound
MIN_STEP_WORK = 1 << 19    # B·d² multiply-adds per step at least for slices
STEPWISE_WORK = 1 << 21    # B·d² at least for stepwise (exact loops)
SERIAL_BLAS_WORK = 1 << 18  # B·d² at most: OpenBLAS runs such a product on one thread by itself
# T·B·d² multiply-adds per cell at least for cells at once: below, handing a loop to a thread
# and holding BLAS (~0.1 ms a layer) costs more than the loop (a 2-layer bidirectional bptt at
# T = 5, B = 3, d = 4 took 0.59 ms at once, 0.30 in turn)
CELLS_AT_ONCE_WORK = 1 << 22
# multiply-adds per product at least for independent products at once (~0.35 ms each on one
# thread): holding BLAS and handing one to a thread cost ~0.05-0.1 ms
PRODUCTS_AT_ONCE_WORK = 1 << 24


class Plan(NamedTuple):
    """kind "stepwise" | "compiled" | "products"; parts: a cell's row slices; concurrent: tasks on threads
    (BLAS held at 1 thread); hold_blas: BLAS held at 1 thread even inline; reason: why."""

    kind: str
    parts: list
    concurrent: bool
    hold_blas: bool
    reason: str


def plan(B, d, cells, truncate, steps) -> Plan:
    """How `cells` recurrences of `steps` steps over B sequences with d hidden units run
    (truncate None: exact)."""
    work = B * d * d
    if cells > 1 and steps * work >= CELLS_AT_ONCE_WORK and _threads() > 1:
        return Plan("compiled", slices(B, d, cells), True, True,
                    "the layer's cells at once, one thread each (each split in batch slices where large)")
    if truncate is None and work >= STEPWISE_WORK:
        return Plan("stepwise", [slice(0, B)], False, False, "exact, large steps: one NumPy GEMM per step on every thread")
    parts = slices(B, d, 1)
    if len(parts) > 1:
        return Plan("compiled", parts, True, True, "large steps: batch slices, one thread each")
    if work <= SERIAL_BLAS_WORK:
        return Plan("compiled", parts, False, False, "small steps: BLAS runs them on one thread anyway")
    return Plan("compiled", parts, False, True, "one thread, BLAS held there (no per-step barrier)")


def products_plan(macs) -> Plan:
    """How independent products of `macs` multiply-adds each run: at once on a thread each (BLAS
    held at 1 thread) where two threads are allowed and each is large, else one after another on
    every BLAS thread."""
    if len(macs) > 1 and min(macs) >= PRODUCTS_AT_ONCE_WORK and _threads() > 1:
        return Plan("products", [], True, True, "independent products at once, one BLAS thread each")
    return Plan("products", [], False, False, "one product after another, on every BLAS thread")


def run(choice: Plan, loop, tasks):
    """loop(*args) for every args of `tasks` as `choice` says. `loop` must release the GIL
    (`@njit(nogil=True)`, or `np.matmul`); each args holds its outputs (views restricted to
    its rows, or `out` arrays), so results land in place."""
    if not choice.hold_blas:
        for args in tasks:
            loop(*args)
        return
    with _blas().limit(limits=1):               # about 30 µs
        if not choice.concurrent:
            for args in tasks:
                loop(*args)
            return
        for shutdown in _spinning_openblas():      # our threads need every core now
            shutdown()
        pool = _pool(max(1, min(len(tasks), _threads()) - 1))       # the calling thread runs one too
        futures = [pool.submit(loop, *args) for args in tasks[1:]]
        loop(*tasks[0])
        for future in futures:
            future.result()


def slices(B, d, cells):
    """Row slices of a batch of B sequences with d hidden units, one per thread a cell gets when
    `cells` run at once."""
    parts = 1
    if B * d * d >= MIN_STEP_WORK and B >= 2 * MIN_ROWS:
        parts = max(1, min(_threads() // cells, B // MIN_ROWS))
    if parts == 1:
        return [slice(0, B)]
    edges = np.linspace(0, B, parts + 1).astype(np.int64)
    return [slice(int(lo), int(hi)) for lo, hi in zip(edges[:-1], edges[1:])]


def _threads():
    """The BLAS thread limit in force (the largest over the BLAS libraries loaded)."""
    return max([lib["num_threads"] for lib in _blas().info()] + [1])


@functools.cache
def _blas():
    """threadpoolctl's handle on the BLAS libraries loaded now (SciPy's, which Numba calls, included)."""
    import scipy.linalg.cython_blas  # noqa: F401  (load SciPy's BLAS before looking for libraries)
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController().select(user_api="blas")


@functools.cache
def _spinning_openblas():
    """`blas_thread_shutdown_` of each OpenBLAS loaded now whose idle workers spin the default
    2^28 cycles: loaded before OPENBLAS_THREAD_TIMEOUT was set (`openblas_thread_timeout()`, the
    value OpenBLAS read at load, is 0). A value the user set is left alone."""
    found = []
    for lib in _blas().lib_controllers:
        timeout = getattr(lib.dynlib, "openblas_thread_timeout", None) if lib.internal_api == "openblas" else None
        shutdown = getattr(lib.dynlib, "blas_thread_shutdown_", None) if timeout is not None else None
        if shutdown is not None and timeout() == 0:
            found.append(shutdown)
    return found


@functools.cache
def _pool(workers):
    return ThreadPoolExecutor(workers, thread_name_prefix="gpurnn-cpu")
