"""Validation or cross-validation accuracy of a polarity classifier after every epoch, per seed
(or fold) and averaged: what docs/results.md ("Polarity: what validation chose", "Polarity by
cross-validation") chose the models with. The test split is never read.

    .venv/bin/python profiling/polarity_validation.py --hidden 256 --pool max --signatures \
        --min-count 2 --epochs 6 [--features bigram] [--bidirectional] [--seeds 0 1 2] [--folds 5] [--data ../shared/data]

Each run is the one `gpurnn train --task classify` makes with the same options (relu, W = I
unless `--activation`/`--recurrent-init` say otherwise, Adam, clipping at 5, batches of 32,
word dropout 0.25): the same data split, vocabulary, initial weights, batches and updates (its
validation losses are the ones `train` prints), with the validation split's sentence accuracy
measured after every epoch. One line of JSON per seed, then the mean per epoch.

With `--folds K` it cross-validates instead: the training part (the fixed split's 90%, test
excluded) is cut into K equal folds in its (already shuffled) order, and run k trains on the
other K-1 folds with seed k and is scored on fold k; one line per fold, then the mean over the
folds per epoch and the spread (standard deviation over folds) there. Every sentence of the
training part is scored once, so the mean reads ~9,600 sentences instead of the validation
split's 960.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from gpurnn.generate import sentence_probabilities
from gpurnn.model import init_params
from gpurnn.tasks import Options
from gpurnn.tasks.classify import SPLIT_SEED, Classify, read_sentences, split
from gpurnn.train import Trainer
from gpurnn.train_config import TrainConfig


def validation_curve(data: Path, a, seed: int, fold: int | None = None) -> list[float]:
    """Validation accuracy (%) after each of `a.epochs` epochs of one run: on the validation
    split, or with `fold` on that fold of `a.folds` of the training part."""
    opts = Options(batch_size=a.batch_size, min_count=a.min_count, pool=a.pool, word_dropout=a.word_dropout,
                   signatures=a.signatures, features=tuple(a.features.split(",")) if a.features else (), seed=seed)
    paths = [f"pos={data / 'rt-polarity.pos'}", f"neg={data / 'rt-polarity.neg'}"]
    if fold is None:
        prepared = Classify().prepare(paths, None, opts)
    else:
        part = split(read_sentences(paths), SPLIT_SEED, held_out=True)[0]     # the test split left out
        lo, hi = len(part) * fold // a.folds, len(part) * (fold + 1) // a.folds
        prepared = Classify().prepare_parts(part[:lo] + part[hi:], part[lo:hi], paths, opts)
    params = init_params(prepared.n_in, a.hidden, prepared.n_out, layers=a.layers, bidirectional=a.bidirectional,
                         seed=seed, recurrent=a.recurrent_init)
    config = TrainConfig(output=prepared.output, backend="cpu", activation=a.activation, lr=a.lr,
                         schedule=a.schedule, dropout=a.dropout, average=a.average, seed=seed)
    valid = list(prepared.valid.iter_epoch(None))
    curve = []

    class Accuracy:
        def on_eval(self, trainer, stats):
            P, right, count = trainer.host_params(), 0, 0
            for batch in valid:
                p = sentence_probabilities(P, batch.inputs, batch.lengths, a.pool, activation=a.activation)
                truth = batch.targets if batch.targets.ndim == 1 else batch.targets[0]   # "mean": every step's
                right, count = right + int(np.sum(p.argmax(axis=1) == truth)), count + len(truth)
            curve.append(round(100 * right / count, 2))

    Trainer(params, config, callbacks=[Accuracy()]).fit(prepared.train, epochs=a.epochs, valid=prepared.valid,
                                                        progress=False)
    return curve


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--dropout", type=float, default=0.0)
    ap.add_argument("--bidirectional", action="store_true")
    ap.add_argument("--pool", choices=("mean", "last", "max"), default="max")
    ap.add_argument("--activation", default="relu")
    ap.add_argument("--recurrent-init", default="identity")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--schedule", default="constant")
    ap.add_argument("--average", type=float, default=0.0, help="as train's --average: score the running average")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--word-dropout", type=float, default=0.25)
    ap.add_argument("--min-count", type=int, default=1)
    ap.add_argument("--signatures", action="store_true")
    ap.add_argument("--features", default="", help="fields beside each word, e.g. bigram (as train's --features)")
    ap.add_argument("--folds", type=int, default=0,
                    help="K > 1: K-fold cross-validation over the training part, run k with seed k (--seeds unused)")
    a = ap.parse_args()
    curves = []
    if a.folds > 1:
        for fold in range(a.folds):
            curves.append(validation_curve(a.data, a, seed=fold, fold=fold))
            print(json.dumps({"fold": fold, "seed": fold, "accuracy_per_epoch": curves[-1]}), flush=True)
    else:
        for seed in a.seeds:
            curves.append(validation_curve(a.data, a, seed))
            print(json.dumps({"seed": seed, "valid_accuracy_per_epoch": curves[-1]}), flush=True)
    print(json.dumps({"mean_per_epoch": np.round(np.mean(curves, axis=0), 2).tolist(),
                      "std_per_epoch": np.round(np.std(curves, axis=0), 2).tolist()}))


if __name__ == "__main__":
    main()
