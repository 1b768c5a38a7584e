"""Sentence classification (e.g. polarity), one label per sentence.

Data: `label=path` files (every line of the file has that label) or one `label<TAB>sentence`
file. The sentences are split once and for all with `fixed_split` (the permutation of
`numpy.random.default_rng(0)`, last 10% for test, whatever the run's seed), and the
last `valid_fraction` of the training part is held out for early stopping.

Words seen fewer than `min_count` times in training read the unknown id, or with `signatures`
their spelling class (`gpurnn.data.signatures`, as the tagger's), learned from the rare
training words. Word dropout (Iyyer et al. 2015) replaces each training word by the unknown
id with probability `word_dropout`, drawn afresh every epoch, so the model cannot lean on
single rare words. With `features` (`gpurnn.data.features`, e.g. "bigram") each word reads
further ids beside its own, and word dropout reads each dropped id as its field's unknown.

The pool says how a sentence's class is read (`gpurnn.generate.CLASS_OUTPUTS`): "mean" trains
with the label as the target at every step (target replication, Lipton et al. 2016) and
predicts the mean over steps of p(class | prefix); "last" trains and predicts from the final
states (many to one); "max" from the per-unit max over the sentence's states (of both
directions when bidirectional: the BiLSTM-max of Conneau et al. 2017, here with Elman cells).
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from ..checkpoint import load_checkpoint
from ..data.batching import labelled_batches
from ..data.errors import DataError
from ..data.features import FeatureEncoder
from ..data.sentences import fixed_split, read_files_per_label, read_label_column
from ..data.signatures import WordEncoder
from ..data.vocab import Vocab
from ..data.word_dropout import WordDropout
from ..generate import CLASS_OUTPUTS, sentence_probabilities
from . import Options, Prepared

TEST_FRACTION = 0.1
SPLIT_SEED = 0      # the fixed split: numpy.random.default_rng(0).permutation of all sentences
EVAL_BATCH = 256


def read_sentences(paths: list[str]):
    """`label=path` items (a label per file) or a single label-column file."""
    if all("=" in p for p in paths):
        return read_files_per_label(dict(p.split("=", 1) for p in paths))
    if len(paths) == 1:
        return read_label_column(paths[0])
    raise ValueError(f"classification data must be LABEL=PATH items or one LABEL<TAB>SENTENCE file, got {paths}")


def split(sentences, seed: int, held_out: bool):
    """(train, test) by `fixed_split`, or (all, []) when test data comes from elsewhere."""
    if not held_out:
        return sentences, []
    train, test = fixed_split(len(sentences), seed=seed, test_fraction=TEST_FRACTION)
    return [sentences[i] for i in train], [sentences[i] for i in test]


def word_encoder(meta: dict) -> FeatureEncoder:
    """The model's words -> ids: its vocabulary, whose signature ids (if it has any) rare and
    unseen words read, and its fields (if it has any)."""
    return FeatureEncoder.from_meta(Vocab.from_json(meta["vocab"]), meta)


class Classify:
    name = "classify"
    # chosen by 5-fold cross-validation over the training part of rt-polarity (docs/results.md,
    # "Polarity by cross-validation"): an IRNN's max pool, spelling signatures and fields, the
    # running average of its weights, trained on all of the training part
    defaults = {"hidden": 256, "lr": 2e-3, "batch_size": 32, "epochs": 3, "pool": "max", "activation": "relu",
                "recurrent_init": "identity", "signatures": True, "word_dropout": 0.25,
                "features": "suffix2,suffix3,suffix4,prefix2,prefix3", "average": 0.99, "valid_fraction": 0.0}
    options = ("valid_fraction", "min_count", "pool", "signatures", "word_dropout", "features", "bidirectional")
    refusals = {}
    held_out_split = ("test", "test")     # its fixed test split, whatever --valid
    held_out_in_data = True
    commands = ("classify",)

    def prepare(self, paths: list[str], valid: str | None, opts: Options) -> Prepared:
        if opts.pool not in CLASS_OUTPUTS:
            raise ValueError(f"pool must be one of {tuple(CLASS_OUTPUTS)} for classify, got {opts.pool!r}")
        train, _ = split(read_sentences(paths), SPLIT_SEED, held_out=True)
        if valid:
            held = read_sentences([valid])
        else:
            cut = len(train) - int(round(len(train) * opts.valid_fraction))
            train, held = train[:cut], train[cut:]
        return self.prepare_parts(train, held, paths, opts)

    def prepare_parts(self, train: list, held: list, paths: list[str], opts: Options) -> Prepared:
        """`prepare` from the sentences to train on and those to validate on (e.g. one fold of
        a cross-validation, profiling/polarity_validation.py); `paths` go into the meta."""
        labels = sorted({s.label for s in train})
        if len(labels) < 2:
            raise DataError(", ".join(paths), None, f"every training sentence has the label {labels[0]!r}: "
                            "a classifier needs sentences of at least two labels")
        if opts.signatures:
            words = WordEncoder.build((s.words for s in train), min_count=opts.min_count)
        else:
            words = WordEncoder(Vocab.build((w for s in train for w in s.words), min_count=opts.min_count))
        encoder = FeatureEncoder.with_fields(words, [s.words for s in train], opts.features, opts.min_count)
        every_step = opts.pool == "mean"
        meta = {"task": self.name, **encoder.to_meta(), "labels": labels, "pool": opts.pool,
                "split_seed": SPLIT_SEED, "data": paths,
                "majority": Counter(s.label for s in train).most_common(1)[0][0]}
        valid_batches = (labelled_batches(held, encoder, labels, EVAL_BATCH, every_step=every_step, shuffle=False)
                         if held else None)
        train_batches = WordDropout(labelled_batches(train, encoder, labels, opts.batch_size, every_step=every_step),
                                    opts.word_dropout, encoder.unknown_ids())
        return Prepared(train_batches, valid_batches, len(encoder), len(labels), CLASS_OUTPUTS[opts.pool], meta)

    def evaluate(self, checkpoint_path, paths: list[str], meta: dict, backend: str, ensemble=()) -> dict:
        """Accuracy on the fixed split's test part of the training data (or on all of `paths`
        when they are other files), and the majority baseline's. With `ensemble` (more
        checkpoints of the same vocabulary and labels) the class probabilities of all the
        models are averaged."""
        models = [load_checkpoint(p) for p in (checkpoint_path, *ensemble)]
        def inputs_and_labels(m: dict):
            return m.get("vocab"), m.get("features") or {}, m.get("labels")

        for path, model in zip(ensemble, models[1:]):
            if inputs_and_labels(model.meta) != inputs_and_labels(meta):
                raise ValueError(f"ensemble member {path} has another vocabulary, fields or label set")
        labels = meta["labels"]
        sentences = read_sentences(paths)
        test = split(sentences, meta["split_seed"], held_out=True)[1] if paths == meta["data"] else sentences
        batches = list(labelled_batches(test, word_encoder(meta), labels, EVAL_BATCH, shuffle=False).iter_epoch(None))
        p = sum(np.concatenate([sentence_probabilities(m.params, b.inputs, b.lengths, m.meta["pool"],
                                                       activation=m.activation, backend=backend) for b in batches])
                for m in models) / len(models)
        truth = np.array([labels.index(s.label) for s in test])
        majority = sum(s.label == meta["majority"] for s in test)
        return {"accuracy": float(np.mean(p.argmax(axis=1) == truth)), "baseline_majority": majority / len(test),
                "sentences": float(len(test)), "models": float(len(models))}


TASK = Classify()
