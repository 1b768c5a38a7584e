"""The CPU backend's large arrays, recycled: a fresh array of a few MB costs its page faults.

glibc hands large blocks back to the kernel when they are freed (above its trim threshold),
so every call of `bptt` that made its arrays afresh faulted each page in again: about 6800
faults (27 MB) per call of a 2-layer bidirectional model at B = 32, a quarter of the call's
CPU time (profiling/RESULTS.md, "Stacked and bidirectional models"). Here an array of at least
RECYCLE_BYTES is taken from a pool of arrays of its shape and dtype that nobody else holds
any more — CPython's reference count says so exactly: a view, a caller's name, a pending
thread's argument all hold one — and otherwise made and added to the pool. The pool keeps
at most POOL_BYTES; past that, idle arrays of the shapes used longest ago are dropped.
"""
from __future__ import annotations

import math
import sys
import threading
from collections import OrderedDict

import numpy as np

RECYCLE_BYTES = 1 << 18     # smaller arrays come from NumPy (its own cache, or glibc's heap)
POOL_BYTES = 1 << 29        # the most the pool keeps (in use and idle); a 2-layer bidirectional call at B = 256 (bench_cpu) ~210 MB

_lock = threading.Lock()
_pool: OrderedDict = OrderedDict()     # (shape, dtype) -> [arrays], most recently used last
_held = [0]                            # bytes in the pool


def empty(shape, dtype):
    """An uninitialised C-contiguous array: recycled when large and one is idle."""
    dtype = np.dtype(dtype)
    shape = tuple(map(int, shape))
    size = math.prod(shape) * dtype.itemsize
    if size < RECYCLE_BYTES:
        return np.empty(shape, dtype)
    key = (shape, dtype.str)
    with _lock:
        arrays = _pool.setdefault(key, [])
        _pool.move_to_end(key)
        for i in range(len(arrays)):
            if _idle(arrays, i):
                return arrays[i]
        array = np.empty(shape, dtype)
        arrays.append(array)
        _held[0] += size
        if _held[0] > POOL_BYTES:
            _shrink()
        return array


def _idle(arrays, i):
    """Whether arrays[i] is held by its pool list alone (getrefcount: the list, its argument)."""
    return sys.getrefcount(arrays[i]) == 2


def _shrink():
    """Forget arrays until the pool holds POOL_BYTES at most: idle ones first, the shapes used
    longest ago first; then arrays in use (their holders keep them, the pool lets them go)."""
    for idle_only in (True, False):
        for key in list(_pool):
            arrays = _pool[key]
            i = 0
            while i < len(arrays) and _held[0] > POOL_BYTES:
                if idle_only and not _idle(arrays, i):
                    i += 1
                    continue
                _held[0] -= arrays.pop(i).nbytes
            if not arrays:
                del _pool[key]
            if _held[0] <= POOL_BYTES:
                return
