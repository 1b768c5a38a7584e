"""v2: v1's loops rewritten (BLAS with β and no Wᵀ transpose in the loop, vectorized σ and
δ rows, NumPy softmax-xent), the whole batch in one loop: with 2 BLAS threads every step's
GEMM is split across threads, a barrier per step. The backend today (v3) runs the same
loops on batch slices in threads instead (`gpurnn/backends/cpu_threads.py`).
"""
from __future__ import annotations

from unittest import mock

from gpurnn.backends import cpu


def _whole_batch(loop, B, d, args_for):
    """`cpu_threads.run_sliced` without the slicing: one loop over every row."""
    loop(*args_for(slice(0, B)))


class StepThreadsBackend(cpu.CPUBackend):
    """`CPUBackend` whose recurrences run over the whole batch in the calling thread."""

    def recurrence_forward(self, *args):
        with mock.patch.object(cpu, "run_sliced", _whole_batch):
            return super().recurrence_forward(*args)

    def recurrence_backward(self, *args):
        with mock.patch.object(cpu, "run_sliced", _whole_batch):
            return super().recurrence_backward(*args)
