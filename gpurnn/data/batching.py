"""Sentences -> the trainer's padded batches (`gpurnn.batches.SentenceBatches`).

    tagged_batches     CoNLL-U sentences (words, tags): word ids (L,) in, tag ids (L,) out
    labelled_batches   labelled sentences (words, label): word ids (L,) in, the label's id at
                       every step (`every_step`) or once per sentence
"""
from __future__ import annotations

import numpy as np

from ..batches import SentenceBatches
from .vocab import Vocab


def tagged_batches(sentences, encoder, tags: Vocab, batch_size: int, *, shuffle: bool = True) -> SentenceBatches:
    """`TaggedSentence`s -> batches of word ids (L,) or (L,F) (`encoder`: a `WordEncoder` or a
    `FeatureEncoder`) with tag ids (L,) as targets."""
    return SentenceBatches([encoder.encode(s.words) for s in sentences], [tags.encode(s.tags) for s in sentences],
                           batch_size, shuffle=shuffle)


def labelled_batches(sentences, vocab, labels: list[str], batch_size: int, *,
                     every_step: bool = False, shuffle: bool = True) -> SentenceBatches:
    """`LabelledSentence`s -> batches of word ids (L,) or (L,F) (`vocab.encode`: a `Vocab`, a
    `WordEncoder` for signatures or a `FeatureEncoder` for fields beside each word) with the
    index of the label in `labels` as the target at every step (`every_step`, target
    replication) or once per sentence."""
    unknown = sorted({s.label for s in sentences} - set(labels))
    if unknown:
        raise ValueError(f"labels must hold every sentence's label; missing {unknown}")
    ids = [vocab.encode(s.words) for s in sentences]
    y = [labels.index(s.label) for s in sentences]
    targets = [np.full(len(x), c, np.int64) for x, c in zip(ids, y)] if every_step else y
    return SentenceBatches(ids, targets, batch_size, shuffle=shuffle)
