"""The trainer's configuration, the records it reports, and its divergence error."""
from __future__ import annotations

import dataclasses
from typing import NamedTuple

from .averaging import check_decay
from .cell import activation_code
from .bptt import check_dropout
from .clip import NonFiniteGradientError
from .optim import OPTIMIZERS, SCHEDULES
from .validation import OUTPUTS

__all__ = ["EvalStats", "StepStats", "TrainConfig", "TrainingDiverged", "check_config"]


@dataclasses.dataclass
class TrainConfig:
    """Hyperparameters of a run (all JSON-serialisable; saved in every checkpoint)."""

    activation: str = "tanh"          # σ: tanh | logistic | sigmoid | relu
    optimizer: str = "adam"           # sgd | adagrad | rmsprop | adam  (gpurnn.optim)
    lr: float = 2e-3                  # base learning rate
    momentum: float = 0.9             # SGD momentum (0: plain SGD)
    optimizer_args: dict = dataclasses.field(default_factory=dict)  # e.g. {"beta2": 0.99}, {"eps": 1e-6}
    schedule: str = "constant"        # constant | step | cosine  (gpurnn.optim.make_schedule)
    lr_step_every: int = 1000         # "step": multiply lr by lr_gamma every this many steps
    lr_gamma: float = 0.5             # "step": the factor
    lr_min: float = 0.0               # "cosine": the floor reached at total_steps
    total_steps: int | None = None    # "cosine": the horizon (fit's `steps` when None)
    clip: str = "norm"                # norm | value | none
    max_norm: float = 5.0             # clip="norm": ‖g‖ ≤ max_norm (Pascanu et al.)
    clip_value: float = 5.0           # clip="value": each entry in [−clip_value, clip_value]
    truncate: int | None = None       # per-loss truncation τ (None: exact BPTT within each batch/chunk)
    dropout: float = 0.0              # a stack's inverted dropout between layers (masks seeded by seed and step)
    output: str = "all"               # all: a loss per step (LM, tagging) | last: one per sequence (classify)
                                      # | mean, max: one per sequence, read from a pool of its states
    loss_norm: str = "mean"           # mean: update with sum/count (per target) | sum
    seed: int = 0                     # data order (and init when the trainer draws params)
    backend: str = "auto"             # auto | cpu | cuda
    eval_every: int = 0               # evaluate on `valid` every this many steps (0: once per epoch)
    checkpoint_every: int = 0         # with out_dir: save every this many steps (0: at evaluations/end)
    patience: int = 0                 # stop after this many evaluations without a lower loss (0: never)
    average: float = 0.0              # evaluate and save a running average of the parameters with this
                                      # decay β in [0, 1) (gpurnn.averaging; 0: the trained parameters)


class StepStats(NamedTuple):
    """One step: `loss` mean per target over `count` targets, `tokens` input steps read,
    `grad_norm` before clipping, `lr` used, `seconds` this step took, `tokens_per_s` over
    this trainer's steps so far but its first (which pays Numba's compilation), wall clock,
    GPU work included (the loss is read back each step)."""

    step: int
    epoch: int
    loss: float
    count: int
    tokens: int
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


def check_config(config: TrainConfig) -> None:
    """ValueError (TypeError for a wrong kind) naming the first bad field of `config`."""
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a gpurnn.train.TrainConfig, got {type(config).__name__}")
    choices = {"optimizer": tuple(OPTIMIZERS), "schedule": SCHEDULES, "clip": ("norm", "value", "none"),
               "output": OUTPUTS, "loss_norm": ("mean", "sum")}
    for name, allowed in choices.items():
        if getattr(config, name) not in allowed:
            raise ValueError(f"config.{name} must be one of {allowed}, got {getattr(config, name)!r}")
    activation_code(config.activation)
    check_dropout(config.dropout, "config.dropout")
    check_decay(config.average, "config.average")
    for name in ("max_norm", "clip_value", "lr_step_every"):
        if not getattr(config, name) > 0:
            raise ValueError(f"config.{name} must be > 0, got {getattr(config, name)!r}")
    for name in ("eval_every", "checkpoint_every", "patience"):
        value = getattr(config, name)
        if not isinstance(value, int) or value < 0:
            raise ValueError(f"config.{name} must be an int >= 0, got {value!r}")
