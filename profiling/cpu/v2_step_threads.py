"""v2: v1's loops rewritten (BLAS with β and no Wᵀ transpose in the loop, vectorized σ and
δ rows, NumPy softmax-xent), the whole batch in one loop: with 2 BLAS threads every step's
GEMM is split across threads, a barrier per step. The backend today (v3) runs the same
loops as `gpurnn/backends/cpu_threads.py` plans them (one thread, BLAS held there, or
batch slices in threads).
"""
from __future__ import annotations

from unittest import mock

from gpurnn.backends import cpu
from gpurnn.backends.cpu_threads import Plan


def _whole_batch(B, d, cells, truncate, steps):
    """`cpu_threads.plan` as v2 had it: the compiled loops over every row, BLAS not held."""
    return Plan("compiled", [slice(0, B)], False, False, "v2: one loop, every BLAS thread in each step")


class StepThreadsBackend(cpu.CPUBackend):
    """`CPUBackend` whose recurrences run over the whole batch in the calling thread."""

    def layer_forward(self, *args):
        with mock.patch.object(cpu, "plan", _whole_batch):
            return super().layer_forward(*args)

    def _cells_backward(self, *args):
        with mock.patch.object(cpu, "plan", _whole_batch):
            return super()._cells_backward(*args)
