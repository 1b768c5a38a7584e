"""The five end-to-end tasks behind `gpurnn train --task ...` and `gpurnn eval`.

Each task turns data files into the trainer's data sources (`prepare`) and scores a trained
checkpoint on held-out data (`evaluate`, which returns {metric name: value}, baselines
included). Everything a task needs to read new data again (vocabulary, tags, labels,
split settings) goes into the checkpoint's `meta`.
"""
from __future__ import annotations

import dataclasses
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


def get_task(name: str):
    """The task object for `name` (charlm | autocomplete | tag | classify | sequences)."""
    from .classify import Classify
    from .lm import Autocomplete, CharLM
    from .sequences import Sequences
    from .tagging import Tag

    tasks = {t.name: t for t in (CharLM(), Autocomplete(), Tag(), Classify(), Sequences())}
    if name not in tasks:
        raise ValueError(f"task must be one of {sorted(tasks)}, got {name!r}")
    return tasks[name]
