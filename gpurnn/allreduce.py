"""The data-parallel step's one all-reduce: every gradient, the loss sum and the target
count in one flat buffer, summed over the ranks in one call.

    flat = [ dU.ravel() | dW.ravel() | dV.ravel() | db | dc | loss_sum | count ]   (P + 2,)

in the gradients' dtype, on the gradients' side (a NumPy array for the CPU backend, a
device array for the CUDA backend). The count stays exact in float32 below 2^24 targets a
step. After the sum, the gradients are views of the buffer (no copies back).

Transports: `MPISum` sums host buffers through mpi4py (a device buffer is staged through
the host: the CUDA simulator's path, or a GPU without NCCL); `NCCLSum` sums device
buffers with NCCL through CuPy, on the current stream, the buffer never leaving the GPU.
"""
from __future__ import annotations

import math

import numpy as np

from .arrays import on_host, to_host
from .model import Params

__all__ = ["FlatLayout", "MPISum", "NCCLSum"]


class FlatLayout:
    """Where each gradient lies in the flat buffer: `offsets[i]:offsets[i+1]` holds the tree's
    i-th array (raveled, in `Params` order), the last two entries the loss sum and the count."""

    def __init__(self, grads: Params):
        self.names = grads.names()
        self.shapes = [tuple(int(n) for n in g.shape) for g in grads]
        self.offsets = np.cumsum([0] + [math.prod(shape) for shape in self.shapes]).tolist()
        self.dtype = np.dtype(grads.dtype)
        self.size = self.offsets[-1] + 2                  # + loss_sum, count

    def pack(self, grads: Params, loss_sum: float, count: int):
        """The flat (P + 2,) buffer of `grads`, `loss_sum` and `count`, on the gradients' side."""
        tail = np.array([loss_sum, count], self.dtype)
        if on_host(next(iter(grads))):
            flat = np.empty(self.size, self.dtype)
            for g, start, stop in zip(grads, self.offsets, self.offsets[1:]):
                flat[start:stop] = g.reshape(-1)
            flat[-2:] = tail
            return flat
        from .backends import cuda_memory as mem

        flat = mem.empty((self.size,), self.dtype)
        view = mem.kernel_view(flat)                      # device-to-device copies, no host trip
        for g, start, stop in zip(grads, self.offsets, self.offsets[1:]):
            view[start:stop].copy_to_device(mem.kernel_view(g).reshape(stop - start))
        view[self.size - 2:].copy_to_device(tail)
        return flat

    def unpack(self, flat) -> tuple[Params, float, int]:
        """(gradients as views of `flat`, loss_sum, count)."""
        grads = Params.from_items((name, flat[start:stop].reshape(shape)) for name, shape, start, stop
                                  in zip(self.names, self.shapes, self.offsets, self.offsets[1:]))
        tail = to_host(flat[self.size - 2:])
        return grads, float(tail[0]), int(round(float(tail[1])))


class MPISum:
    """In-place sum of a flat buffer over an mpi4py communicator (device buffers via the host)."""

    name = "mpi"

    def __init__(self, comm):
        from mpi4py import MPI

        self.comm, self.op = comm, MPI.SUM
        self.in_place = MPI.IN_PLACE

    def __call__(self, flat):
        if on_host(flat):
            self.comm.Allreduce(self.in_place, flat, op=self.op)
            return flat
        from .backends import cuda_memory as mem

        host = np.ascontiguousarray(to_host(flat))
        self.comm.Allreduce(self.in_place, host, op=self.op)
        return mem.asarray(host)


class NCCLSum:
    """In-place sum of a CuPy buffer with NCCL over the ranks of `comm` (one GPU each); the
    NCCL unique id goes from rank 0 to the others over MPI."""

    name = "nccl"

    def __init__(self, comm):
        import cupy
        from cupy.cuda import nccl

        self.cupy, self.nccl = cupy, nccl
        uid = comm.bcast(nccl.get_unique_id() if comm.rank == 0 else None, root=0)
        self.communicator = nccl.NcclCommunicator(comm.size, uid, comm.rank)
        self.types = {np.dtype(np.float32): nccl.NCCL_FLOAT32, np.dtype(np.float64): nccl.NCCL_FLOAT64}

    def __call__(self, flat):
        stream = self.cupy.cuda.get_current_stream().ptr
        self.communicator.allReduce(flat.data.ptr, flat.data.ptr, flat.size, self.types[np.dtype(flat.dtype)],
                                    self.nccl.NCCL_SUM, stream)
        return flat

    @staticmethod
    def usable() -> bool:
        """CuPy on a real GPU, with its NCCL bindings."""
        from .backends import cuda_memory as mem

        if mem.cupy_module() is None:
            return False
        try:
            from cupy.cuda import nccl
        except ImportError:
            return False
        return bool(getattr(nccl, "available", True))
