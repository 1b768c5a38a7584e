"""A per-step gradient-norm log a training loop records into (a callback object).

At every optimisation step the trainer hands over the gradients (and, optionally, the loss
and the norm it measured before clipping); the log keeps, per step,

    global ‖g‖ = sqrt(Σ_θ Σ g_θ²)   (before clipping: what Pascanu et al. plot)
    ‖g_θ‖ for θ in U, W, V, b, c   (which parameter explodes: W and U carry the recurrence)

and, every `profile_every` steps when given a batch, the gradient-through-time summary by
lag (`GradientProfile.by_lag`), so one can watch gradients vanish or explode during training.
"""
from __future__ import annotations

import csv
import math

import numpy as np

from ..backends import backend_for
from ..clip import global_norm
from ..model import FIELDS
from .profile import gradient_profile


class GradientNormLog:
    """Callable `log(step, grads, loss=None, norm=None, params=None, batch=None)`.

    `batch` = (inputs, targets) with targets (T,B), and `params`, are only read on steps
    that are multiples of `profile_every` (0: never) to record the by-lag profile.
    """

    def __init__(self, *, profile_every: int = 0, activation: str = "tanh"):
        if isinstance(profile_every, bool) or not isinstance(profile_every, int) or profile_every < 0:
            raise ValueError(f"profile_every must be an int >= 0, got {profile_every!r}")
        self.profile_every = profile_every
        self.activation = activation
        self.rows: list[dict] = []
        self.profiles: dict[int, np.ndarray] = {}

    def __call__(self, step, grads, loss=None, norm=None, params=None, batch=None):
        backend = backend_for(grads.W)
        total = global_norm(grads) if norm is None else float(norm)
        row = {"step": int(step), "loss": math.nan if loss is None else float(loss), "norm": total}
        for name, g in grads.items():
            row[f"norm_{name}"] = math.sqrt(backend.sum_squares(g))
        self.rows.append(row)
        if self.profile_every and step % self.profile_every == 0 and batch is not None and params is not None:
            inputs, targets = batch
            profile = gradient_profile(params, inputs, targets, activation=self.activation)
            self.profiles[int(step)] = profile.by_lag()

    def column(self, name) -> np.ndarray:
        """One logged quantity over the steps: "step", "loss", "norm" or "norm_W" etc."""
        if name not in ("step", "loss", "norm", *(f"norm_{f}" for f in FIELDS)):
            raise ValueError(f"name must be step, loss, norm or norm_<U|W|V|b|c>, got {name!r}")
        return np.array([row[name] for row in self.rows], dtype=np.float64)

    def save_csv(self, path) -> None:
        """Write the per-step rows as CSV (one header line)."""
        with open(path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["step", "loss", "norm", *(f"norm_{f}" for f in FIELDS)])
            writer.writeheader()
            writer.writerows(self.rows)
