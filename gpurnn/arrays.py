"""Which array library an array belongs to: NumPy on the host, CuPy on a GPU."""
import numpy as np


def array_module(array):
    """`numpy` for host arrays, `cupy` for CuPy arrays (imported only when one is seen)."""
    if type(array).__module__.startswith("cupy"):
        import cupy

        return cupy
    return np


def is_array(value) -> bool:
    return hasattr(value, "shape") and hasattr(value, "dtype")
