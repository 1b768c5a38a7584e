"""A per-step gradient-norm log that a training loop records into (a callback object).

At every optimisation step it keeps

    global ‖g‖ = sqrt(Σ_θ Σ g_θ²)   before clipping (what Pascanu et al. plot; a spike is an explosion)
    ‖g_θ‖ for each array θ of the tree   (which parameter explodes: W and U carry the recurrence)
    the loss

Use it from an explicit loop (`log.record(step, grads, loss=…, norm=…)`) or pass it to
`gpurnn.train.Trainer(callbacks=[log])`, which calls `on_grads(trainer, step, grads)` before
clipping and `on_step(trainer, stats)` after the update (stats.loss, stats.grad_norm).
"""
from __future__ import annotations

import csv
import math

import numpy as np

from ..backends import backend_for
from ..model import FIELDS

SINGLE_LAYER_COLUMNS = ("step", "loss", "norm", *(f"norm_{name}" for name in FIELDS))


class GradientNormLog:
    """Rows of (step, loss, norm, norm_<name> for each array of the tree: norm_U … norm_c for one
    layer), one per optimisation step; the columns follow the first gradients recorded."""

    def __init__(self):
        self.rows: list[dict] = []
        self.columns = SINGLE_LAYER_COLUMNS

    def record(self, step, grads, loss=None, norm=None) -> None:
        """Log step `step`'s gradients (a `Params`); `norm` defaults to their global norm."""
        backend = backend_for(next(iter(grads)))
        if not self.rows:
            self.columns = ("step", "loss", "norm", *(f"norm_{name}" for name in grads.names()))
        row = {"step": int(step), "loss": math.nan if loss is None else float(loss)}
        for name, g in grads.items():
            row[f"norm_{name}"] = math.sqrt(backend.sum_squares(g))
        total = math.sqrt(sum(row[f"norm_{name}"] ** 2 for name in grads.names()))
        row["norm"] = total if norm is None else float(norm)
        self.rows.append(row)

    def on_grads(self, trainer, step, grads) -> None:
        """Trainer hook: the gradients before clipping."""
        self.record(step, grads)

    def on_step(self, trainer, stats) -> None:
        """Trainer hook: the step's mean loss and norm before clipping."""
        if not self.rows or self.rows[-1]["step"] != stats.step:
            self.rows.append({name: math.nan for name in self.columns} | {"step": int(stats.step)})
        self.rows[-1].update(loss=float(stats.loss), norm=float(stats.grad_norm))

    def column(self, name) -> np.ndarray:
        """One logged quantity over the steps: "step", "loss", "norm" or "norm_W" etc."""
        if name not in self.columns:
            raise ValueError(f"name must be one of {', '.join(self.columns)}, got {name!r}")
        return np.array([row[name] for row in self.rows], dtype=np.float64)

    def save_csv(self, path) -> None:
        """Write the rows as CSV (one header line)."""
        with open(path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.columns)
            writer.writeheader()
            writer.writerows(self.rows)
