"""What a training run leaves in `--out` (`metrics.jsonl`, `metrics.json`, `loss.png`, TensorBoard
event files) and prints (a line per evaluation, `metric SPLIT/NAME VALUE` lines)."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from .train_config import EvalStats, StepStats


class History:
    """A trainer callback that records every step's stats and every evaluation, with the
    training seconds (Σ of the steps' own times, evaluations left out) at each evaluation.

    With `log` (a JSON-lines file, a run's `metrics.jsonl`) each record is appended and
    flushed as it happens, after the records already there are read back: those up to step
    `upto` (the step of the checkpoint a resumed run starts from; later ones will be
    replayed, so they leave the file), so a resumed run's history holds every step of the run.
    """

    def __init__(self, log=None, *, upto: int | None = None):
        self.steps, self.evals, self.eval_seconds = [], [], []
        self._train_seconds = 0.0
        self._log = None if log is None else self._read(Path(log), upto)

    def _read(self, log: Path, upto):
        if log.exists():
            text = log.read_text(encoding="utf-8")
            records = []
            for line in text.splitlines():
                try:
                    records.append(json.loads(line))
                except ValueError:           # the last line of a run killed while writing it
                    continue
            kept = [r for r in records if upto is None or r["step"] <= upto]
            if len(kept) < len(text.splitlines()) or text and not text.endswith("\n"):
                log.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")
            for record in kept:
                self._add(record)
        return open(log, "a", encoding="utf-8")

    def _add(self, record: dict):
        fields = {k: v for k, v in record.items() if k != "kind"}
        if record["kind"] == "step":
            self.steps.append(StepStats(**fields))
            self._train_seconds += fields["seconds"]
        else:
            self.eval_seconds.append(fields.pop("train_seconds"))
            self.evals.append(EvalStats(**fields))

    def _record(self, record: dict):
        self._add(record)
        if self._log is not None:
            self._log.write(json.dumps(record) + "\n")
            self._log.flush()

    def on_step(self, trainer, stats):
        self._record({"kind": "step", **stats._asdict()})

    def on_eval(self, trainer, stats):
        self._record({"kind": "eval", **stats._asdict(), "train_seconds": self._train_seconds})

    def close(self):
        if self._log is not None:
            self._log.close()


class EvalLog:
    """A trainer callback printing one line per evaluation (for runs without a progress bar:
    --no-progress, or a log file): step, epoch, mean training loss since the last line,
    validation loss, tokens/s; and between evaluations one such line (without the validation
    loss) every `every_seconds`, so a log shows the run moving from its start."""

    def __init__(self, echo=print, every_seconds: float | None = None):
        self.echo, self.every, self.losses, self.last = echo, every_seconds, [], None
        self.since = time.monotonic()

    def on_step(self, trainer, stats):
        self.losses.append(stats.loss)
        self.last = stats
        if self.every is not None and time.monotonic() - self.since >= self.every:
            self._line(trainer, stats.step, "")

    def on_eval(self, trainer, stats):
        self._line(trainer, stats.step, f" valid/loss {stats.loss:.4f}")

    def _line(self, trainer, step: int, valid: str) -> None:
        train = f"{np.mean(self.losses):.4f}" if self.losses else "-"
        epoch = self.last.epoch + 1 if self.last else trainer.position["epoch"]
        speed = f"{self.last.tokens_per_s:,.0f}" if self.last else "-"
        self.echo(f"step {step} epoch {epoch}: train/loss {train}{valid} tokens/s {speed}")
        self.losses, self.since = [], time.monotonic()


class TensorBoardLog:
    """A trainer callback writing TensorBoard event files into `folder` through tensorboardX:
    train/loss, train/grad_norm, train/lr and train/tokens_per_s each step, valid/loss."""

    def __init__(self, folder):
        from tensorboardX import SummaryWriter

        self.writer = SummaryWriter(str(folder))

    def on_step(self, trainer, stats):
        for name in ("loss", "grad_norm", "lr", "tokens_per_s"):
            self.writer.add_scalar(f"train/{name}", getattr(stats, name), stats.step)

    def on_eval(self, trainer, stats):
        self.writer.add_scalar("valid/loss", stats.loss, stats.step)

    def close(self):
        self.writer.close()


def with_split(metrics: dict, split: str) -> dict:
    """`metrics` named `split/name` (a name that already says its split is kept)."""
    return {name if "/" in name else f"{split}/{name}": value for name, value in metrics.items()}


def print_metrics(metrics: dict, echo=print) -> None:
    """One line `metric SPLIT/NAME VALUE` per metric (`metrics` named by `with_split`)."""
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
