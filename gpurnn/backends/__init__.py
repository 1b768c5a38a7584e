"""Backend selection: `"cpu"` always works, `"cuda"` needs a usable GPU, `"auto"` picks."""
from __future__ import annotations

import functools

from ..arrays import on_host

BACKENDS = ("auto", "cpu", "cuda")


class BackendUnavailableError(RuntimeError):
    """The backend asked for cannot run on this machine (the message says what it needs)."""


@functools.cache
def _cpu():
    from .cpu import CPUBackend

    return CPUBackend()


@functools.cache
def _cuda():
    from .cuda import CUDABackend

    return CUDABackend()


def cuda_usable(*, simulator=True) -> bool:
    """True when the CUDA backend can run here: a real GPU, or (unless simulator=False)
    the Numba simulator."""
    try:
        from .cuda import cuda_available, gpu_present
    except ImportError:
        return False
    return cuda_available() if simulator else gpu_present()


def get_backend(name="auto"):
    """The backend object for `name` in `auto | cpu | cuda` (or a backend object itself)."""
    if not isinstance(name, str):
        if hasattr(name, "recurrence_forward"):
            return name
        raise TypeError(f"backend must be 'auto', 'cpu' or 'cuda', got {type(name).__name__}")
    if name not in BACKENDS:
        raise ValueError(f"backend must be 'auto', 'cpu' or 'cuda', got {name!r}")
    if name == "cpu" or (name == "auto" and not cuda_usable(simulator=False)):
        return _cpu()
    if name == "cuda" and not cuda_usable():
        raise BackendUnavailableError("backend='cuda' needs a CUDA GPU with numba-cuda and CuPy installed "
                           "(pip install 'gpurnn[cuda]'), or NUMBA_ENABLE_CUDASIM=1 for the simulator")
    return _cuda()


def backend_for(array):
    """The backend that owns `array`: the CPU for NumPy arrays, else the CUDA backend."""
    return _cpu() if on_host(array) else _cuda()
