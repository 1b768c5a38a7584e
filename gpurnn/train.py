"""The trainer: one gradient step in one place, epochs over a data source, evaluation, checkpoints.

Each step, on whatever backend holds the parameters (NumPy on the CPU, CuPy on a GPU;
parameters, gradients, optimizer state and the carried stream states stay there):

    loss_sum, grads, count = bptt(θ, batch)              # summed cross-entropy, ∂(sum)/∂θ
    grads, loss_sum, count = reduce(grads, ...)          # hook: an all-reduce goes here (data parallel)
    g = grads / count   (loss_norm="mean", default)      # mean loss per target; "sum" keeps the sum
    ‖g‖ checked finite, then clipped (norm or value)     # the norm *before* clipping is logged
    θ ← optimizer(θ, g, lr(step))

A NaN or Inf loss or gradient raises `TrainingDiverged` before the update, so the
parameters (and, with `out_dir`, the checkpoint `last_good.safetensors`) hold the last
good state.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterable, NamedTuple

from .clip import NonFiniteGradientError
from .model import Params

__all__ = ["EvalStats", "StepStats", "TrainConfig", "Trainer", "TrainingDiverged"]


@dataclasses.dataclass
class TrainConfig:
    """Hyperparameters of a run (all JSON-serialisable; saved in every checkpoint)."""

    activation: str = "tanh"          # σ: tanh | logistic | sigmoid | relu
    optimizer: str = "adam"           # sgd | adagrad | rmsprop | adam  (gpurnn.optim)
    lr: float = 2e-3                  # base learning rate
    momentum: float = 0.9             # SGD momentum (0: plain SGD)
    schedule: str = "constant"        # constant | step | cosine  (gpurnn.optim.make_schedule)
    lr_step_every: int = 1000         # "step": multiply lr by lr_gamma every this many steps
    lr_gamma: float = 0.5             # "step": the factor
    lr_min: float = 0.0               # "cosine": the floor reached at total_steps
    total_steps: int | None = None    # "cosine": the horizon (fit's `steps` when None)
    clip: str = "norm"                # norm | value | none
    max_norm: float = 5.0             # clip="norm": ‖g‖ ≤ max_norm (Pascanu et al.)
    clip_value: float = 5.0           # clip="value": each entry in [−clip_value, clip_value]
    truncate: int | None = None       # per-loss truncation τ (None: exact BPTT within each batch/chunk)
    output: str = "all"               # all: a loss per step (LM, tagging) | last: one per sequence (classify)
    loss_norm: str = "mean"           # mean: update with sum/count (per target) | sum
    seed: int = 0                     # data order (and init when the trainer draws params)
    backend: str = "auto"             # auto | cpu | cuda
    eval_every: int = 0               # evaluate on `valid` every this many steps (0: once per epoch)
    checkpoint_every: int = 0         # with out_dir: save every this many steps (0: at evaluations/end)


class StepStats(NamedTuple):
    """One step: `loss` mean per target, `grad_norm` before clipping, `tokens` targets this step,
    `tokens_per_s` over the run so far (wall clock, GPU work included)."""

    step: int
    epoch: int
    loss: float
    count: int
    grad_norm: float
    lr: float
    seconds: float
    tokens_per_s: float


class EvalStats(NamedTuple):
    """An evaluation: `loss` mean cross-entropy per target (nats), over `count` targets."""

    step: int
    loss: float
    count: int


class TrainingDiverged(NonFiniteGradientError):
    """The loss or a gradient became NaN or Inf; the parameters keep the last good state."""


class Trainer:
    """Train `params` with `config`.

    params: initial `Params` (NumPy; moved to the backend's device once), or a checkpoint's.
    callbacks: callables `fn(stats: StepStats)`, or objects with any of
        `on_step(trainer, StepStats)`, `on_grads(trainer, step, grads: Params)` (after the
        reduction and normalisation, before clipping), `on_eval(trainer, EvalStats)`.
    meta: JSON-serialisable facts saved in checkpoints (e.g. {"vocab": [...], "task": "charlm"}).
    out_dir: where `checkpoint.safetensors` (and `last_good.safetensors` on divergence) go.
    reduce: the data-parallel hook `reduce(grads, loss_sum, count) -> (grads, loss_sum, count)`.
    """

    def __init__(self, params: Params, config: TrainConfig | None = None, *, callbacks: Iterable[Any] = (),
                 meta: dict | None = None, out_dir=None, reduce: Callable | None = None):
        raise NotImplementedError

    def step(self, batch) -> StepStats:
        """One gradient step on `batch` (a `gpurnn.batches.Batch`)."""
        raise NotImplementedError

    def fit(self, data, *, steps: int | None = None, epochs: int | None = None, valid=None,
            progress: bool = True) -> list[StepStats]:
        """Train over `data` (a `TokenStreams`, `SentenceBatches` or anything with `__len__` and
        `iter_epoch(rng)`) until `steps` total steps or `epochs` epochs; evaluate on `valid`."""
        raise NotImplementedError

    def evaluate(self, data) -> EvalStats:
        """Mean cross-entropy per target over one pass of `data` (no update)."""
        raise NotImplementedError

    def save(self, path=None):
        """Write a checkpoint (atomically) with everything needed to resume bit for bit."""
        raise NotImplementedError

    @classmethod
    def load(cls, path, *, backend: str | None = None, callbacks: Iterable[Any] = (), out_dir=None) -> "Trainer":
        """A trainer resumed from a checkpoint (on `backend`, default the saved config's)."""
        raise NotImplementedError

    def host_params(self) -> Params:
        """The parameters as NumPy arrays."""
        raise NotImplementedError
