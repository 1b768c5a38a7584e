"""Classifying sequences of measurements (activity from motion sensors, speaker from speech
frames): dense inputs x_t ∈ R^n, one label per sequence.

Data: one `.ts` or `.npz` file (`gpurnn.data.measurements`) for training; the validation
part is `--valid`, or else `valid_fraction` of every class held out of the training file
(`stratified_split` drawn with the run's seed). Each channel is standardised with the means
and standard deviations of the training part's real steps, stored in the checkpoint's meta
and applied again by `evaluate` and `predict`.

The model reads its output from `pool` over each sequence's real steps (padding never
counts): "last" (s_L), "mean" ((1/L) Σ_t s_t) or "max" (per unit); the engine's output
modes of the same names (`gpurnn.bptt`).
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from ..batches import SentenceBatches
from ..bptt import output_logits
from ..checkpoint import load_checkpoint
from ..data.errors import DataError
from ..data.measurements import Standardizer, class_names, read_measurements, stratified_split
from . import Options, Prepared

POOLS = ("last", "mean", "max")
EVAL_BATCH = 256


def encode(series, labels, classes, scaler: Standardizer, batch_size: int, shuffle: bool, path=None):
    """Batches of standardised float32 sequences (T_i, n) with one class id each (−1 for None labels)."""
    ids = []
    for label in labels if labels is not None else [None] * len(series):
        if label is not None and label not in classes:
            raise DataError(path, None, f"class label {label!r} was not seen in training "
                            f"(expected one of {' '.join(classes)})")
        ids.append(-1 if label is None else classes.index(label))
    return SentenceBatches([scaler(x) for x in series], ids, batch_size, shuffle=shuffle)


def class_scores(checkpoint, path, backend: str, need_labels: bool):
    """(logits (N,k) NumPy, the file's labels or None, the checkpoint's meta) for every sequence
    of `path`, in file order, read and standardised as at training time."""
    ckpt = load_checkpoint(checkpoint)
    meta = ckpt.meta
    data = read_measurements(path, need_labels=need_labels)
    if data.channels != meta["channels"]:
        raise DataError(path, None, f"the sequences have {data.channels} channels, the model reads {meta['channels']}")
    batches = encode(data.series, data.labels, meta["classes"], Standardizer.from_json(meta["standardize"]),
                     EVAL_BATCH, False, path)
    logits = [output_logits(ckpt.params, batch.inputs, lengths=batch.lengths, activation=ckpt.activation,
                            output=meta["pool"], backend=backend)[0] for batch in batches.iter_epoch(None)]
    return np.concatenate(logits), data.labels, meta


class Sequences:
    name = "sequences"
    # max pool and both directions: chosen on validation inside the training files of
    # BasicMotions and JapaneseVowels (docs/results.md, "Defaults chosen by validation")
    defaults = {"hidden": 64, "lr": 2e-3, "batch_size": 16, "epochs": 100, "pool": "max", "bidirectional": True}
    options = ("valid_fraction", "pool", "bidirectional")
    refusals = {}
    held_out_split = ("valid", "train")   # the stratified validation part; with --valid: all of it
    held_out_in_data = False              # with --valid, the training file is scored whole
    commands = ("predict",)

    def prepare(self, paths: list[str], valid: str | None, opts: Options) -> Prepared:
        if opts.pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS} for sequences, got {opts.pool!r}")
        if len(paths) != 1:
            raise ValueError(f"sequences train on one .ts or .npz file, got {len(paths)}: {paths}")
        data = read_measurements(paths[0])
        classes = class_names(data)
        if len(set(data.labels)) < 2:
            raise DataError(paths[0], None, f"every sequence has the label {data.labels[0]!r}: a classifier needs "
                            "sequences of at least two labels")
        if valid:
            held = read_measurements(valid)
            keep = np.arange(len(data.series))
        else:
            keep, held_idx = stratified_split(data.labels, opts.valid_fraction, opts.seed)
            held = _subset(data, held_idx)
        train = _subset(data, keep)
        scaler = Standardizer.fit(train.series)
        meta = {"task": self.name, "classes": classes, "pool": opts.pool, "channels": data.channels,
                "standardize": scaler.to_json(), "data": paths, "valid": valid,
                "split": {"seed": opts.seed, "valid_fraction": opts.valid_fraction},
                "majority": Counter(train.labels).most_common(1)[0][0]}
        valid_batches = (encode(held.series, held.labels, classes, scaler, EVAL_BATCH, False, valid or paths[0])
                         if held.series else None)
        train_batches = encode(train.series, train.labels, classes, scaler, opts.batch_size, True, paths[0])
        return Prepared(train_batches, valid_batches, data.channels, len(classes), opts.pool, meta)

    def evaluate(self, checkpoint_path, paths: list[str], meta: dict, backend: str) -> dict:
        """Accuracy on `paths` (one file; the training file itself: its held-out validation
        part), beside the majority class of the training part."""
        if len(paths) != 1:
            raise ValueError(f"sequences evaluate one .ts or .npz file at a time, got {len(paths)}: {paths}")
        logits, labels, _ = class_scores(checkpoint_path, paths[0], backend, need_labels=True)
        if paths == meta["data"] and not meta["valid"] and meta["split"]["valid_fraction"] > 0:
            split = meta["split"]
            held = stratified_split(labels, split["valid_fraction"], split["seed"])[1]
            logits, labels = logits[held], [labels[i] for i in held]
        truth = np.array([meta["classes"].index(label) for label in labels])
        return {"accuracy": float(np.mean(logits.argmax(axis=1) == truth)),
                "baseline_majority": float(np.mean([label == meta["majority"] for label in labels])),
                "sequences": float(len(labels))}

    def predict(self, checkpoint_path, path, backend: str) -> list[str]:
        """The most probable class of every sequence of `path` (labels, if any, are ignored)."""
        logits, _, meta = class_scores(checkpoint_path, path, backend, need_labels=False)
        return [meta["classes"][i] for i in logits.argmax(axis=1)]


def _subset(data, indices):
    return type(data)([data.series[i] for i in indices], [data.labels[i] for i in indices], data.classes,
                      data.channels)


TASK = Sequences()
