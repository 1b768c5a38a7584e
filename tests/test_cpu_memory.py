"""The CPU backend's recycled arrays (`gpurnn.backends.cpu_memory`): an array comes back only
when nobody holds it (a name, a view), small ones are never pooled, and the pool keeps its cap."""
import numpy as np
import pytest

from gpurnn.backends import cpu_memory

SHAPE = (1000, 100)          # 400 KB of float32: pooled


@pytest.fixture(autouse=True)
def empty_pool(monkeypatch):
    monkeypatch.setattr(cpu_memory, "_pool", type(cpu_memory._pool)())
    monkeypatch.setattr(cpu_memory, "_held", [0])


def test_an_array_comes_back_only_when_nobody_holds_it():
    a = cpu_memory.empty(SHAPE, np.float32)
    first = id(a)
    b = cpu_memory.empty(SHAPE, np.float32)
    assert id(b) != first, "a is held by its name"
    view = a[1:]
    del a
    assert id(cpu_memory.empty(SHAPE, np.float32)) not in (first, id(b)), "a is held by a view"
    del view
    again = cpu_memory.empty(SHAPE, np.float32)
    assert id(again) == first and again.shape == SHAPE and again.flags.c_contiguous
    assert cpu_memory._held[0] == 3 * again.nbytes


def test_small_arrays_and_other_shapes_are_new():
    small = cpu_memory.empty((10, 10), np.float32)
    assert cpu_memory._held[0] == 0 and small.shape == (10, 10)
    a = cpu_memory.empty(SHAPE, np.float32)
    del a
    assert cpu_memory.empty(SHAPE, np.float64).dtype == np.float64


def test_the_pool_keeps_its_cap(monkeypatch):
    size = np.dtype(np.float32).itemsize * SHAPE[0] * SHAPE[1]
    monkeypatch.setattr(cpu_memory, "POOL_BYTES", 2 * size)
    held = [cpu_memory.empty(SHAPE, np.float32) for _ in range(3)]    # all in use: the pool lets one go
    assert cpu_memory._held[0] <= 2 * size
    del held
    cpu_memory.empty((SHAPE[0] + 1, SHAPE[1]), np.float32)             # a new shape: idle ones are dropped
    assert cpu_memory._held[0] <= 2 * size
