"""The CUDA backend's arrays: one small layer, so the backend has one code path.

On a real GPU the backend's arrays are CuPy arrays (the library users and the trainer
hold), and cuBLAS through CuPy is at hand. Under the Numba CUDA simulator
(`NUMBA_ENABLE_CUDASIM=1`) CuPy cannot run, so they are Numba's (simulated) device arrays.
Both index, slice and reshape alike, and `kernel_view` turns either into what a Numba
kernel launch takes, through `__cuda_array_interface__` (no copy); the backend converts
each array once per operation and launches many kernels on the views.

Allocation failures raise `DeviceMemoryError`, naming the shape, dtype and bytes asked for.
The kernels' launch geometry (grid, block, stream) is here too (`tiles`, `lanes`, `line`).
"""
from __future__ import annotations

import functools

import numpy as np
from numba import cuda

from gpurnn.arrays import to_host      # the one copy to host; the backend calls it as mem.to_host
from gpurnn.kernels.device import LANES, THREADS, TILE
from gpurnn.kernels.device import SIM as SIMULATOR


class DeviceMemoryError(MemoryError):
    """The GPU could not hold an array the CUDA backend asked for."""


@functools.cache
def cupy_module():
    """CuPy on a real GPU, None under the simulator or where it is missing or unusable."""
    if SIMULATOR:
        return None
    try:
        import cupy

        cupy.cuda.runtime.getDeviceCount()
    except Exception:     # no CuPy, no driver, no device: all mean "no CuPy here"
        return None
    return cupy


def gpu_present() -> bool:
    """A real CUDA GPU that Numba and CuPy can both use."""
    if SIMULATOR:
        return False
    try:
        return bool(cuda.is_available()) and cupy_module() is not None
    except Exception:     # a broken driver install raises from is_available on some versions
        return False


def allocating(what, shape, dtype, make):
    """make() with allocation failures turned into a DeviceMemoryError naming the sizes."""
    try:
        return make()
    except (MemoryError, cuda.cudadrv.driver.CudaAPIError) as error:
        size = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        raise DeviceMemoryError(f"out of GPU memory allocating {what} of shape {tuple(shape)} {np.dtype(dtype)} "
                                f"({size / 2**20:.1f} MiB): {error}") from error


def empty(shape, dtype):
    """An uninitialised device array."""
    cp = cupy_module()
    make = (lambda: cp.empty(shape, dtype)) if cp else (lambda: cuda.device_array(shape, dtype))
    return allocating("an array", shape, dtype, make)


def zeros(shape, dtype):
    cp = cupy_module()
    make = (lambda: cp.zeros(shape, dtype)) if cp else (lambda: cuda.to_device(np.zeros(shape, dtype)))
    return allocating("an array", shape, dtype, make)


def is_device_array(array) -> bool:
    cp = cupy_module()
    return isinstance(array, cp.ndarray) if cp else cuda.devicearray.is_cuda_ndarray(array)


def asarray(array, dtype=None):
    """A C-contiguous device array of `dtype` (array's own dtype when None); no copy when
    `array` already is one. Host arrays are copied over once."""
    dtype = np.dtype(array.dtype if dtype is None else dtype)
    cp = cupy_module()
    if cp:
        return allocating("a copy", array.shape, dtype, lambda: cp.ascontiguousarray(cp.asarray(array, dtype)))
    if is_device_array(array):
        if array.dtype == dtype and array.is_c_contiguous():
            return array
        array = to_host(array)
    host = np.ascontiguousarray(array, dtype)
    return allocating("a copy", host.shape, dtype, lambda: cuda.to_device(host))


def kernel_view(array):
    """What a Numba kernel launch takes: CuPy arrays through their CUDA array interface, no
    copy and no stream synchronisation (the backend's Numba launches go on CuPy's current
    stream, `launch_stream`, so they are ordered with CuPy's own work)."""
    cp = cupy_module()
    return cuda.as_cuda_array(array, sync=False) if cp and isinstance(array, cp.ndarray) else array


def launch_stream():
    """The stream for the backend's Numba launches: CuPy's current stream, so a caller's
    `with cupy.cuda.Stream():` orders them with CuPy's work on it (cuBLAS, copies, sorts);
    0, the default stream, under the simulator and for CuPy's default stream."""
    cp = cupy_module()
    return _numba_stream(cp.cuda.get_current_stream().ptr) if cp else 0


@functools.lru_cache(maxsize=16)
def _numba_stream(ptr):
    """Numba's handle on the CUDA stream `ptr` (not owned: never destroyed by Numba)."""
    return cuda.external_stream(ptr) if ptr else 0


def array_library():
    """The array module for small index work (sort, search): CuPy on a GPU, else NumPy (the
    simulator's device arrays are copied to the host for it, see `device_index_op`)."""
    return cupy_module() or np


def device_index_op(fn, *arrays):
    """fn(*arrays) -> a tuple of arrays, through `array_library()`: on the device with CuPy,
    else on host copies whose results are copied back."""
    if cupy_module():
        return fn(*arrays)
    return tuple(asarray(result) for result in fn(*(to_host(a) for a in arrays)))


def blocks(count, size):
    """Blocks of `size` that cover `count` (at least one)."""
    return max(1, -(-count // size))


def tiles(rows, cols, cells=1):
    """Grid, block and stream of the (TILE, TILE) tiled kernels for a (rows, cols) output (row
    tiles along the grid's x, which has room for any row count), per cell along z."""
    return (blocks(rows, TILE), blocks(cols, TILE), cells), (TILE, TILE), launch_stream()


def lanes(rows, cols, cells=1):
    """Grid, block and stream of the LANES-shaped elementwise kernels for a (rows, cols)
    output, per cell along z."""
    return (blocks(rows, LANES[1]), blocks(cols, LANES[0]), cells), LANES, launch_stream()


def line(count):
    """Grid, block and stream of the 1-D kernels over `count` elements."""
    return blocks(count, THREADS), THREADS, launch_stream()
