"""Data-parallel training: N ranks (processes) each read a disjoint part of every batch and
take the same step, as one process would on the whole batch.

Per step, on every rank (`Trainer(..., comm=comm)` wires this in; see gpurnn/train.py):

    loss_r, grads_r, count_r = bptt(θ, part r of the global batch)
    flat = pack(grads_r, loss_r, count_r); all-reduce(flat, SUM)     # one call per step
    grads, loss, count = unpack(flat)        # the global sums, the same bits on every rank
    then as in one process: g = grads / count, clip on the global norm, θ ← optimizer(θ, g)

so N ranks with B sequences (streams) each take the steps of one process with N·B: the data
source is built with the global batch and `shard(rank, size)` picks each rank's part
(gpurnn/batches.py). The transport is MPI (mpi4py) for the CPU backend and NCCL (CuPy),
one GPU per rank, for the CUDA backend (gpurnn/allreduce.py).

Operations: rank 0 alone writes checkpoints (the streams' states gathered from every rank
into the global batch's layout, so any number of ranks, or one process, resumes them) and
the run's reports; every `check_every` steps the ranks compare a fingerprint of their
parameters, position and configuration and raise on any difference; an exception on one
rank aborts the whole job (`abort_on_error`, `install_abort_hook`) instead of leaving the
others waiting in the next all-reduce.
"""
from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
import time
import traceback
import zlib

import numpy as np

from .allreduce import FlatLayout, MPISum, NCCLSum
from .batches import part_of, shard
from .arrays import to_host

__all__ = ["DataParallel", "abort_job_on_error", "abort_on_error", "install_abort_hook", "launched_as_ranks", "world"]

ABORT_GRACE_S = 0.2       # lets the launcher forward a failing rank's last words before MPI_Abort
# Set by launchers for each rank: MPICH/Hydra and Slurm's PMI (PMI_SIZE), Open MPI, MVAPICH.
SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def launched_as_ranks() -> bool:
    """Whether a launcher (mpiexec, srun) started this process as one of several ranks (read
    from the environment: mpi4py is not imported)."""
    sizes = [int(os.environ[name]) for name in SIZE_VARIABLES if os.environ.get(name, "").isdigit()]
    return sizes[0] > 1 if sizes else "PMIX_RANK" in os.environ      # PMIx names no size: MPI will say


def world():
    """MPI's COMM_WORLD when this process is one of several launched ranks, else None (a
    single process, for which mpi4py is never imported)."""
    if not launched_as_ranks():
        return None
    try:
        from mpi4py import MPI
    except ImportError:
        raise RuntimeError("this process was launched as one of several MPI ranks, but mpi4py is not installed: "
                           "pip install 'gpurnn[mpi]'") from None
    return MPI.COMM_WORLD if MPI.COMM_WORLD.Get_size() > 1 else None


def install_abort_hook(comm) -> None:
    """Make an uncaught exception on this rank report itself and abort every rank of `comm`
    (MPI_Abort), as `python -m mpi4py` does; installed once per process."""
    if getattr(sys.excepthook, "gpurnn_abort", False) or comm.Get_size() < 2:
        return

    def hook(kind, value, tb):
        _fail(comm, value)

    hook.gpurnn_abort = True
    sys.excepthook = hook


@contextlib.contextmanager
def abort_on_error(comm):
    """Run a block whose failure on any one rank must end the whole job: an exception (or a
    non-zero exit) is reported with the rank's number, then MPI_Abort ends every rank."""
    if comm is None or comm.Get_size() < 2:
        yield
        return
    try:
        yield
    except BaseException as error:
        if _exit_code(error) == 0:
            raise
        _fail(comm, error)


def abort_job_on_error(command):
    """Decorate a command so that its failure on any rank of `world()` aborts the job."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        with abort_on_error(world()):
            return command(*args, **kwargs)

    return run


def _exit_code(error):
    """The exit status an exception asks for: SystemExit's and click's own, else None."""
    if isinstance(error, SystemExit):
        return error.code if isinstance(error.code, int) else (0 if error.code is None else 1)
    return getattr(error, "exit_code", None)


def _fail(comm, error):
    """Report `error` (one line first, the traceback after, so the line survives the abort),
    give the launcher a moment to forward it, and abort the job."""
    code = _exit_code(error)
    where = f"gpurnn: rank {comm.Get_rank()} of {comm.Get_size()}"
    if hasattr(error, "show"):
        error.show()                       # a command-line mistake (click): its own line, no traceback
    elif code is None:
        sys.stderr.write(f"{where} failed: {type(error).__name__}: {error}\n")
        traceback.print_exception(type(error), error, error.__traceback__)
    sys.stderr.write(f"{where} ends the job (exit status {code or 1})\n")
    sys.stdout.flush()
    sys.stderr.flush()
    time.sleep(ABORT_GRACE_S)
    comm.Abort(code or 1)


def select_local_gpu(comm) -> int:
    """Make this rank's GPU (node-local rank modulo the node's GPUs) current for Numba and
    CuPy; call before anything touches the GPU. Returns the device number."""
    from mpi4py import MPI
    from numba import cuda

    local = comm.Split_type(MPI.COMM_TYPE_SHARED).Get_rank()
    device = local % len(cuda.gpus)
    cuda.select_device(device)
    import cupy

    cupy.cuda.Device(device).use()
    return device


class DataParallel:
    """The trainer's side of data parallelism over the mpi4py communicator `comm`.

    backend: the trainer's backend object; "cuda" picks this rank's GPU and sums with NCCL
    where CuPy has it (else through the host with MPI). check_every: steps between the
    parameter fingerprint checks (0: only at the first step).
    """

    def __init__(self, comm, backend, *, check_every: int = 100):
        if not all(hasattr(comm, name) for name in ("Get_rank", "Get_size", "Allreduce", "allgather")):
            raise TypeError(f"comm must be an mpi4py communicator, got {type(comm).__name__}")
        if not isinstance(check_every, int) or check_every < 0:
            raise ValueError(f"check_every must be an int >= 0, got {check_every!r}")
        from mpi4py import MPI

        self.comm, self.rank, self.size, self._max = comm, comm.Get_rank(), comm.Get_size(), MPI.MAX
        self.check_every, self.checked = check_every, False
        self.device = None
        if backend.name == "cuda" and NCCLSum.usable():
            self.device = select_local_gpu(comm)
            self.transport = NCCLSum(comm)
        else:
            self.transport = MPISum(comm)
        install_abort_hook(comm)

    @property
    def is_root(self) -> bool:
        """Rank 0: the one that writes checkpoints, reports and the progress bar."""
        return self.rank == 0

    def reduce(self, grads, loss_sum, count):
        """The trainer's `reduce` hook: global sums of gradients, loss and count (one all-reduce)."""
        layout = FlatLayout(grads)
        return layout.unpack(self.transport(layout.pack(grads, loss_sum, count)))

    def any(self, flag: bool) -> bool:
        """True on every rank when `flag` is true on any (a collective: e.g. a deadline that
        each rank's clock reaches at its own moment)."""
        return bool(self.comm.allreduce(bool(flag), op=self._max))

    def shard(self, data):
        """This rank's part of every batch of the global data source (gpurnn.batches.shard)."""
        return shard(data, self.rank, self.size)

    def gather_rows(self, rows):
        """On rank 0, every rank's `rows` (B_r, ...) stacked in rank order (the global batch's
        rows); None elsewhere."""
        parts = self.comm.gather(to_host(rows), root=0)
        return np.concatenate(parts) if self.is_root else None

    def local_rows(self, rows):
        """This rank's part of the global batch's `rows` (what `gather_rows` stacked)."""
        return part_of(rows, self.rank, self.size)

    def check(self, trainer) -> None:
        """Raise when the ranks' parameters, positions or configurations differ (a collective:
        every rank calls it at the same steps; the trainer does every `check_every` steps)."""
        step = trainer.step_count
        if self.checked and not (self.check_every and step % self.check_every == 0):
            return
        self.checked = True
        prints = self.comm.allgather(fingerprint(trainer))
        if any(p != prints[0] for p in prints):
            differing = [rank for rank, p in enumerate(prints) if p != prints[0]]
            raise RuntimeError(f"the ranks' parameters (or position or configuration) differ at step {step}: "
                               f"ranks {differing} disagree with rank 0 (fingerprints {prints}). The ranks must "
                               "start alike (same seed or checkpoint, same configuration) and update alike.")


def fingerprint(trainer) -> int:
    """CRC-32 of the parameters' bytes, the position in training and the configuration."""
    state = json.dumps({"position": trainer.position, "config": vars(trainer.config)}, sort_keys=True, default=str)
    crc = zlib.crc32(state.encode())
    for array in trainer.params:
        crc = zlib.crc32(to_host(array).tobytes(), crc)
    return crc
