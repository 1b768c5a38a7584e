"""Shared test set-up: which backends the parametrized suite runs on, and test sizes.

One pytest process runs the CPU backend (and the CUDA backend too on a machine with a
real GPU). Under the Numba CUDA simulator (`NUMBA_ENABLE_CUDASIM=1`, which must be set
before Numba is imported, hence a process of its own: `make test` runs both), only the
tests that take the `backend` fixture or carry the `sim` marker run, on the "cuda"
backend, at tiny sizes: the simulator executes every thread in Python. On a machine with a
real GPU the `sim` tests run too (on the card), and GPURNN_GPU_TESTS_ONLY=1 keeps only the
tests that touch the GPU (backend-parametrized, `sim` or `cuda`): what profiling/gpu_check.sh
runs first, as the CPU-only and PTX tests run in CI anyway.
"""
import os
import sys
import threading

import pytest

SIMULATOR = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"


class _OnceAllocations(dict):
    """The simulator's table of static shared arrays, made safe for its threads.

    `FakeCUDAShared.array` does `res = table.get(line); if res is None: res = new array;
    table[line] = res` with no lock, so two threads of a block that reach a line's
    `cuda.shared.array` together can each get an array of their own, and one thread's
    stores never reach the others (seen as rare wrong GEMM tiles and column sums). Here a
    miss in `get` holds a lock until the caller's `__setitem__`, so the first thread
    creates the array and every other thread of the block then finds it.
    """

    def __init__(self):
        super().__init__()
        self._creating = threading.Lock()

    def get(self, key, default=None):
        self._creating.acquire()
        if key in self:
            self._creating.release()
            return self[key]
        return default                 # the lock stays held until __setitem__

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        self._creating.release()


def _patch_simulator_shared_arrays():
    from numba.cuda.simulator import kernelapi

    init = kernelapi.FakeCUDAShared.__init__

    def __init__(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self._allocations = _OnceAllocations()

    kernelapi.FakeCUDAShared.__init__ = __init__


if SIMULATOR:
    # The simulator's block manager polls its threads while they wait at syncthreads();
    # with Python's default 5 ms GIL switch interval each barrier costs milliseconds.
    sys.setswitchinterval(5e-5)
    _patch_simulator_shared_arrays()


def real_gpu() -> bool:
    """A real CUDA GPU that the CUDA backend can use (never under the simulator)."""
    if SIMULATOR:
        return False
    from gpurnn.backends import cuda_usable

    return cuda_usable()


def _backends():
    chosen = os.environ.get("GPURNN_TEST_BACKENDS")
    if chosen:
        return chosen.split(",")
    if SIMULATOR:
        return ["cuda"]
    return ["cpu", "cuda"] if real_gpu() else ["cpu"]


BACKENDS = _backends()


@pytest.fixture(params=BACKENDS)
def backend(request):
    """The backend name each parametrized test runs on."""
    return request.param


def pytest_collection_modifyitems(config, items):
    """Under the simulator keep only backend-parametrized and `sim` tests; elsewhere drop
    `sim` tests unless a real GPU runs them; skip `cuda` tests without a real GPU, saying
    why; with GPURNN_GPU_TESTS_ONLY=1 keep only the tests that touch the GPU."""
    no_gpu = pytest.mark.skip(reason="needs a real CUDA GPU; run profiling/gpu_check.sh on one")
    gpu_only = os.environ.get("GPURNN_GPU_TESTS_ONLY") == "1"
    kept, dropped = [], []
    for item in items:
        uses_backend = "backend" in getattr(item, "fixturenames", ())
        sim_marked = item.get_closest_marker("sim") is not None
        gpu_test = uses_backend or sim_marked or item.get_closest_marker("cuda") is not None
        if ((SIMULATOR and not (uses_backend or sim_marked)) or (gpu_only and not gpu_test)
                or (not SIMULATOR and sim_marked and not uses_backend and not real_gpu())):
            dropped.append(item)
            continue
        if item.get_closest_marker("cuda") and not real_gpu():
            item.add_marker(no_gpu)
        kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
