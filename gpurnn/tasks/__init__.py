"""The end-to-end tasks behind `gpurnn train --task ...` and `gpurnn eval`, one module each.

A task is a module of this package with a `TASK` object (found by `tasks()`, so a new task
is one new file). The object declares what the command line and the trainer need to know:

    name             the value of --task
    defaults         {"hidden", "lr", "batch_size", "epochs"} and any option of TASK_OPTIONS it
                     takes with a default of its own (e.g. "pool"), when not given
    options          the options of `train` that are this task's (of TASK_OPTIONS); the others
                     of TASK_OPTIONS are refused when given (`check_options`), with `refusals`
                     saying why where it is not plain
    held_out_split   the split `evaluate` scores when given the run's training files:
                     (without --valid, with --valid)
    held_out_in_data whether that split is held out of the training files even with --valid
    commands         the commands that use its model (besides `eval`)

and turns data files into the trainer's data sources (`prepare`) and scores a trained
checkpoint on held-out data (`evaluate`, which returns {metric name: value}, baselines
included). Everything a task needs to read new data again (vocabulary, tags, labels,
split settings) goes into the checkpoint's `meta`.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib
import math
import pkgutil
from typing import Any


from ..arrays import to_host
from ..bptt import forward
from ..model import Params


@dataclasses.dataclass
class Prepared:
    """What `train` needs: data sources, the model's sizes, the loss layout and `meta`."""

    train: Any                 # TokenStreams or SentenceBatches
    valid: Any                 # the same kind, or None
    n_in: int                  # vocabulary size (rows of U)
    n_out: int                 # classes (columns of V)
    output: str                # "all", "last", "mean" or "max" (bptt's output modes)
    meta: dict
    notes: list = dataclasses.field(default_factory=list)   # lines to show the user once (e.g. unseen symbols)


@dataclasses.dataclass
class Options:
    """Task settings from the command line (None: the task's default)."""

    batch_size: int = 32
    seq_len: int = 50          # charlm: chunk length k of streaming BPTT
    valid_fraction: float = 0.1
    min_count: int = 2         # tag/classify: words seen fewer times map to unknown ids
    pool: str = "mean"         # classify: "mean" (label at every step) | "last" | "max"; sequences: "last" | "mean" | "max"
    word_dropout: float = 0.0  # classify: probability of reading a training word as unknown
    features: tuple = ()       # tag/classify: fields read beside each word (gpurnn.data.features)
    signature_dropout: float = 0.0  # tag: chance a training word seen once reads as its signature
    signatures: bool = False   # classify: rare words read their spelling signature, not the bare unknown id
    seed: int = 0


def logits_of(params: Params, source, activation: str, backend: str):
    """Yield (batch, logits (T,B,k) NumPy) for every batch of `source` in its fixed order."""
    for batch in source.iter_epoch(None):
        out = forward(params, batch.inputs, lengths=batch.lengths, activation=activation, backend=backend)
        yield batch, to_host(out.logits)


# The options of `train` that only some tasks take; each task lists its own in `options`.
TASK_OPTIONS = ("seq_len", "valid_fraction", "min_count", "pool", "signatures", "word_dropout", "features",
                "signature_dropout", "bidirectional")


def loss_metrics(loss: float) -> dict:
    """A language model's mean loss per symbol (nats) in the units it is read in."""
    return {"loss_nats": loss, "bits_per_char": loss / math.log(2), "perplexity": math.exp(loss)}


@functools.cache
def tasks() -> dict:
    """{name: task object} of every module of this package that defines `TASK`."""
    found = {}
    for module in pkgutil.iter_modules(__path__):
        task = getattr(importlib.import_module(f"{__name__}.{module.name}"), "TASK", None)
        if task is not None:
            found[task.name] = task
    return dict(sorted(found.items()))


def get_task(name: str):
    """The task object for `name` (one of `tasks()`)."""
    if name not in tasks():
        raise ValueError(f"task must be one of {sorted(tasks())}, got {name!r}")
    return tasks()[name]


def tasks_with_command(command: str) -> tuple:
    """The names of the tasks whose models `gpurnn COMMAND` uses."""
    return tuple(name for name, task in tasks().items() if command in task.commands)


def check_options(task, given) -> None:
    """ValueError naming the first option of TASK_OPTIONS in `given` (names set on the command
    line) that `task` does not take."""
    for name in TASK_OPTIONS:
        if name in given and name not in task.options:
            flag = "--" + name.replace("_", "-")
            takers = [t for t, other in tasks().items() if name in other.options]
            why = task.refusals.get(name, f"it is an option of --task {' and '.join(takers)}")
            own = ", ".join("--" + o.replace("_", "-") for o in task.options) or "none"
            raise ValueError(f"{flag} does not apply to --task {task.name}: {why} (the options of {task.name}: {own})")
