"""Optimizers and learning-rate schedules; in-place updates on any backend's arrays.

Each optimizer keeps its slots (one array per parameter and slot, on the parameters'
device) and updates the parameters in place, one fused pass per parameter
(`gpurnn.optim_rules`: Numba on the CPU, a Numba CUDA kernel on CuPy or simulator
arrays): `opt.step(params, grads, lr)`. With g the gradient, t the 1-based step count,
every operation elementwise:

    SGD       m ← μ m + g;            θ ← θ − lr·m           (μ = 0: plain SGD; nesterov: θ ← θ − lr·(g + μ m))
    Adagrad   G ← G + g²;             θ ← θ − lr·g / sqrt(G + ε)                     (min-char-rnn, ε = 1e-8)
    RMSprop   v ← α v + (1−α) g²;     θ ← θ − lr·g / (sqrt(v) + ε)                   (torch.optim.RMSprop)
    Adam      m ← β₁m + (1−β₁)g;  v ← β₂v + (1−β₂)g²
              θ ← θ − (lr / (1−β₁ᵗ)) · m / (sqrt(v)/sqrt(1−β₂ᵗ) + ε)                (torch.optim.Adam)

Schedules map the 0-based step index to a learning rate (`make_schedule`).
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from . import optim_rules as rules
from .backends import backend_for
from .model import Params

__all__ = ["SGD", "Adagrad", "RMSprop", "Adam", "OPTIMIZERS", "Optimizer", "Schedule", "make_optimizer",
           "make_schedule", "SCHEDULES"]


class Optimizer:
    """Base class: `slots` arrays per parameter, created as zeros like the parameters (on
    their device); the update itself is one fused pass per parameter (`gpurnn.optim_rules`)."""

    name = ""
    slots: tuple[str, ...] = ()
    defaults: dict = {}

    def __init__(self, params: Params, **hparams):
        self.hparams = self._check(hparams)
        self.t = 0
        self.state = {slot: params.map(rules.zeros_like) for slot in self.slots}

    def step(self, params: Params, grads: Params, lr: float) -> None:
        """Update `params` (and the slots) in place with `grads` at learning rate `lr`."""
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (0 <= lr < math.inf):
            raise ValueError(f"lr must be a finite number >= 0, got {lr!r}")
        self.t += 1
        code, scalars = self._scalars(float(lr))
        for name, param in params.items():
            slots = [self.state[slot][name] for slot in self.slots]
            s1, s2 = slots[0], slots[-1]
            rules.update(code, param, grads[name], s1, s2, scalars)

    def _scalars(self, lr):
        """(rule code, (lr, a, b, eps, c1, c2)) for this step."""
        raise NotImplementedError  # each optimizer's constants

    def state_dict(self) -> dict:
        """{"slot.U": array, ...} (on the parameters' device)."""
        return {f"{slot}.{name}": array for slot, values in self.state.items() for name, array in values.items()}

    def load_state_dict(self, arrays: dict, t: int) -> None:
        """Restore the slots (moved to the parameters' device) and the step count."""
        for slot, values in self.state.items():
            restored = {}
            for name, target in values.items():
                key = f"{slot}.{name}"
                if key not in arrays:
                    raise ValueError(f"optimizer state for {self.name} is missing {key!r}")
                if tuple(arrays[key].shape) != tuple(target.shape):
                    raise ValueError(f"optimizer state {key!r} must have shape {tuple(target.shape)}, "
                                     f"got {tuple(arrays[key].shape)}")
                restored[name] = backend_for(target).asarray(arrays[key], target.dtype)
            self.state[slot] = Params.from_items(restored.items())
        self.t = int(t)

    @classmethod
    def _check(cls, hparams):
        unknown = set(hparams) - set(cls.defaults)
        if unknown:
            raise TypeError(f"{cls.name} got unknown hyperparameters {sorted(unknown)}; "
                            f"it takes {sorted(cls.defaults)}")
        values = {**cls.defaults, **hparams}
        for key, value in values.items():
            if key != "nesterov" and not (isinstance(value, (int, float)) and 0 <= value < math.inf):
                raise ValueError(f"{cls.name} {key} must be a finite number >= 0, got {value!r}")
        return values


class SGD(Optimizer):
    """SGD with heavy-ball (or Nesterov) momentum; `momentum=0` is plain SGD."""

    name, slots = "sgd", ("momentum",)
    defaults = {"momentum": 0.9, "nesterov": False}

    def _scalars(self, lr):
        code = rules.NESTEROV if self.hparams["nesterov"] else rules.SGD
        return code, (lr, float(self.hparams["momentum"]), 0.0, 0.0, 0.0, 1.0)


class Adagrad(Optimizer):
    """Adagrad as min-char-rnn writes it: ε inside the square root."""

    name, slots = "adagrad", ("sum_sq",)
    defaults = {"eps": 1e-8}

    def _scalars(self, lr):
        return rules.ADAGRAD, (lr, 0.0, 0.0, float(self.hparams["eps"]), 0.0, 1.0)


class RMSprop(Optimizer):
    """RMSprop (Hinton), torch.optim.RMSprop's form without momentum or centring."""

    name, slots = "rmsprop", ("square_avg",)
    defaults = {"alpha": 0.99, "eps": 1e-8}

    def _scalars(self, lr):
        return rules.RMSPROP, (lr, float(self.hparams["alpha"]), 0.0, float(self.hparams["eps"]), 0.0, 1.0)


class Adam(Optimizer):
    """Adam (Kingma and Ba 2015) with bias correction, in torch.optim.Adam's form."""

    name, slots = "adam", ("exp_avg", "exp_avg_sq")
    defaults = {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8}

    def _scalars(self, lr):
        b1, b2, eps = (float(self.hparams[k]) for k in ("beta1", "beta2", "eps"))
        return rules.ADAM, (lr, b1, b2, eps, lr / (1 - b1 ** self.t), math.sqrt(1 - b2 ** self.t))


OPTIMIZERS = {cls.name: cls for cls in (SGD, Adagrad, RMSprop, Adam)}


def make_optimizer(name: str, params: Params, **hparams) -> Optimizer:
    """The optimizer called `name` (sgd | adagrad | rmsprop | adam) with slots shaped like `params`."""
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {name!r}")
    return OPTIMIZERS[name](params, **hparams)


SCHEDULES = ("constant", "step", "cosine")


@dataclasses.dataclass(frozen=True)
class Schedule:
    """lr(step) for the 0-based step index:

        constant  lr
        step      lr · gamma^⌊step / every⌋
        cosine    lr_min + (lr − lr_min) · (1 + cos(π · min(step, total) / total)) / 2
    """

    name: str
    lr: float
    every: int = 1000
    gamma: float = 0.5
    total: int | None = None
    lr_min: float = 0.0

    def __post_init__(self):
        if self.name not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.name!r}")
        if not (isinstance(self.lr, (int, float)) and 0 <= self.lr < math.inf):
            raise ValueError(f"lr must be a finite number >= 0, got {self.lr!r}")
        if self.name == "step" and not (isinstance(self.every, (int, np.integer)) and self.every >= 1):
            raise ValueError(f"step schedule needs every >= 1 (steps between decays), got {self.every!r}")
        if self.name == "cosine" and not (isinstance(self.total, (int, np.integer)) and self.total >= 1):
            raise ValueError(f"cosine schedule needs total >= 1 (the number of steps), got {self.total!r}")

    def __call__(self, step: int) -> float:
        if self.name == "step":
            return self.lr * self.gamma ** (step // self.every)
        if self.name == "cosine":
            frac = min(step, self.total) / self.total
            return self.lr_min + (self.lr - self.lr_min) * (1 + math.cos(math.pi * frac)) / 2
        return self.lr


def make_schedule(name: str, lr: float, *, every: int = 1000, gamma: float = 0.5, total: int | None = None,
                  lr_min: float = 0.0) -> Schedule:
    """A learning-rate schedule (see `Schedule`)."""
    return Schedule(name, lr, every, gamma, total, lr_min)
