"""What a training run leaves in `--out`: `metrics.json`, `loss.png`, and `metric NAME VALUE` lines."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np


class History:
    """A trainer callback that records every step's loss and every evaluation's loss, with
    the training seconds (Σ of the steps' own times, evaluations left out) at each evaluation."""

    def __init__(self):
        self.steps, self.evals, self.eval_seconds = [], [], []
        self._train_seconds = 0.0

    def on_step(self, trainer, stats):
        self.steps.append(stats)
        self._train_seconds += stats.seconds

    def on_eval(self, trainer, stats):
        self.evals.append(stats)
        self.eval_seconds.append(self._train_seconds)


def print_metrics(metrics: dict, echo=print) -> None:
    """One line `metric NAME VALUE` per metric (the lines every evaluation ends with)."""
    for name, value in metrics.items():
        echo(f"metric {name} {value:.6g}")


def write_metrics(out: Path, metrics: dict, history: History, extra: dict) -> Path:
    """`out/metrics.json`: final metrics, settings, per-step losses and evaluations."""
    data = {"metrics": metrics, **extra,
            "train": [{"step": s.step, "loss": s.loss, "grad_norm": s.grad_norm, "lr": s.lr, "seconds": s.seconds,
                       "tokens_per_s": s.tokens_per_s} for s in history.steps],
            "valid": [{"step": e.step, "loss": e.loss, "train_seconds": t}
                      for e, t in zip(history.evals, history.eval_seconds)]}
    path = Path(out) / "metrics.json"
    path.write_text(json.dumps(data, indent=1))
    return path


def plot_loss(out: Path, history: History, title: str) -> Path:
    """`out/loss.png`: training loss per step (and its running mean) and validation loss."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    if history.steps:
        steps = np.array([s.step for s in history.steps])
        loss = np.array([s.loss for s in history.steps])
        ax.plot(steps, loss, color="0.75", linewidth=0.6, label="train (per step)")
        window = max(1, len(loss) // 50)
        smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
        ax.plot(steps[window - 1:], smooth, color="C0", label=f"train (mean of {window})")
    if history.evals:
        ax.plot([e.step for e in history.evals], [e.loss for e in history.evals], "o-", color="C1", label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats per target)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    path = Path(out) / "loss.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
