"""A running average of the parameters over the training steps (Polyak averaging as an
exponential moving average, debiased as Adam's moments are): the trainer evaluates and saves
the average (`TrainConfig.average`, `--average`) and goes on training its own parameters.

With θ_t the parameters after step t and β the decay, after every step t = 1, 2, ...

    θ̄_t = θ̄_{t−1} + (θ_t − θ̄_{t−1}) · (1 − β) / (1 − β^t)

so that θ̄_t = Σ_{i≤t} β^{t−i} θ_i / Σ_{i≤t} β^{t−i}: the steps' parameters weighted by β per
step back (about the last 1/(1−β) steps count), the initial parameters not among them
(θ̄_1 = θ_1). The arithmetic runs where the arrays live (`Backend.array_op`: NumPy, CuPy, the
simulator's host copies) over the parameter tree, naming no field.
"""
from __future__ import annotations

from .model import Params


def check_decay(decay, name: str = "average") -> None:
    """ValueError unless 0 <= decay < 1 (0: no average)."""
    if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0 <= decay < 1:
        raise ValueError(f"{name} must be a decay in [0, 1) (0: no average; e.g. 0.99 averages about the last "
                         f"100 steps), got {decay!r}")


class ParamAverage:
    """The average `params` (a tree like the trained one, on its backend) with decay `decay`."""

    def __init__(self, decay: float, params: Params, backend):
        check_decay(decay)
        self.decay, self.backend = float(decay), backend
        self.params = params.map(lambda a: backend.array_op(lambda xp, x: x.copy(), a))

    def update(self, params: Params, step: int) -> None:
        """Fold in the parameters after step `step` (1-based; every step, in order)."""
        weight = (1.0 - self.decay) / (1.0 - self.decay ** step)
        self.params = self.params.map(
            lambda mean, now: self.backend.array_op(lambda xp, m, p: m + weight * (p - m), mean, now), params)
