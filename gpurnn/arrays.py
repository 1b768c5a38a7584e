"""Where an array lives and how it comes to the host: the one answer every module asks.

    host     NumPy arrays (the CPU backend's)
    device   CuPy arrays on a GPU; Numba device arrays under the CUDA simulator

`array_module` names the library whose functions run on an array where it lives, `on_host`
says whether it is a NumPy array, and `to_host` gives a NumPy array for any of them.
"""
import numpy as np


def array_module(array):
    """`numpy` for host arrays, `cupy` for CuPy arrays (imported only when one is seen)."""
    if type(array).__module__.startswith("cupy"):
        import cupy

        return cupy
    return np


def on_host(array) -> bool:
    """True for a NumPy array, False for a device array (CuPy's or Numba's)."""
    return isinstance(array, np.ndarray)


def to_host(array) -> np.ndarray:
    """A NumPy array of `array`: the array itself when it is one, else a copy from the device
    (CuPy arrays through `cupy.asnumpy`, Numba device arrays through `copy_to_host`)."""
    if on_host(array):
        return array
    if type(array).__module__.startswith("cupy"):
        return array_module(array).asnumpy(array)
    return array.copy_to_host()


def is_array(value) -> bool:
    return hasattr(value, "shape") and hasattr(value, "dtype")
