"""Whether a model fits in memory before a run starts: the parameters and the arrays of their
size that training keeps beside them, against the memory free on the backend's device.

    parameters   per layer and direction, U (n_l, d), W (d, d), b (d,) with n_0 = inputs and
                 n_l = d × directions above; then V (d × directions, k) and c (k,)
    copies       the parameters, their gradients, each optimizer slot (Adam: 2), the running
                 average (--average), and the host copy a checkpoint is written from

The states of a batch (T × B × d per layer and direction) come on top; this estimate counts
only what the model's size alone needs, so a refusal is certain and a pass is no promise.
"""
from __future__ import annotations

import os

from .optim import OPTIMIZERS

FLOAT_BYTES = 4          # float32 parameters
GiB = 2 ** 30


def parameter_count(inputs: int, hidden: int, outputs: int, layers: int = 1, bidirectional: bool = False) -> int:
    """The number of parameters of an Elman stack of `layers` (× 2 directions when bidirectional)."""
    directions = 2 if bidirectional else 1
    count, below = 0, inputs
    for _ in range(layers):
        count += directions * (below * hidden + hidden * hidden + hidden)
        below = hidden * directions
    return count + below * outputs + outputs


def training_bytes(model: dict, optimizer: str, average: bool) -> int:
    """Bytes that training `model` ({"inputs", "hidden", "outputs", "layers", "bidirectional"})
    keeps whatever the batch: the copies of the parameters listed in the module doc."""
    copies = 3 + len(OPTIMIZERS[optimizer].slots) + (1 if average else 0)
    return copies * FLOAT_BYTES * parameter_count(**model)


def free_bytes(backend_name: str) -> int | None:
    """Memory free on the device of the backend named `backend_name` ("cpu" or "cuda"), or None
    when it cannot be told."""
    if backend_name == "cuda":
        try:
            from numba import cuda

            return int(cuda.current_context().get_memory_info()[0])
        except Exception:       # the simulator and some drivers cannot tell
            return None
    try:
        with open("/proc/meminfo") as meminfo:
            fields = dict(line.split(":", 1) for line in meminfo)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        try:
            return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError):
            return None


def check_fits(model: dict, optimizer: str, average: bool, backend_name: str) -> None:
    """ValueError naming --hidden unless the model's parameters and their copies fit in the
    memory free on the backend's device."""
    need, free = training_bytes(model, optimizer, average), free_bytes(backend_name)
    if free is not None and need > free:
        where = "GPU" if backend_name == "cuda" else "CPU"
        raise ValueError(
            f"--hidden {model['hidden']}: the model has {parameter_count(**model):,} parameters, and training keeps "
            f"them, their gradients and the {optimizer} optimizer's state: {need / GiB:.1f} GiB, more than the "
            f"{free / GiB:.1f} GiB of {where} memory free; lower --hidden (or --layers)")
