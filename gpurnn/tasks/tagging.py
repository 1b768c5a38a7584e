"""Part-of-speech tagging (UPOS) from CoNLL-U files, one output per word.

Inputs are word ids from `WordEncoder`: frequent training words keep an id of their own,
the others read a spelling signature (an unknown-word id refined by capitalisation,
digits, hyphens and suffix). The baseline tags each word with its most frequent training
tag, and unseen words with the most frequent tag overall.
"""
from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np

from ..checkpoint import load_checkpoint
from ..data.batching import tagged_batches
from ..data.conll import read_conllu
from ..data.features import FeatureEncoder
from ..data.vocab import Vocab
from ..data.word_dropout import WordDropout, frequency_dropout
from . import Options, Prepared, logits_of


def most_frequent_tags(sentences) -> dict:
    """{word: its most frequent tag in `sentences`} and, under "", the most frequent tag overall."""
    per_word, overall = defaultdict(Counter), Counter()
    for s in sentences:
        for w, t in zip(s.words, s.tags):
            per_word[w][t] += 1
            overall[t] += 1
    table = {w: c.most_common(1)[0][0] for w, c in per_word.items()}
    table[""] = overall.most_common(1)[0][0]
    return table


def signature_dropout(source, encoder: FeatureEncoder, sentences, p: float) -> WordDropout:
    """`source` with word dropout toward the signature (Kiperwasser and Goldberg 2016): a word
    with an id of its own, seen c times in `sentences`, reads as its signature with chance
    α / (α + c), α = p / (1 − p) (so p for a word seen once), redrawn every epoch."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"signature_dropout must lie in [0, 1), got {p!r}")
    vocab = encoder.words.vocab
    counts = np.zeros(len(encoder))
    for word, count in Counter(w for s in sentences for w in s.words).items():
        if encoder.words.known(word):
            counts[vocab.index[word]] = count
    return WordDropout(source, frequency_dropout(counts, p / (1.0 - p)), encoder.signature_ids())


class Tag:
    name = "tag"
    # chosen on dev accuracy (the --valid file) for en_ewt (docs/results.md, "Tagging,
    # bidirectional"): both directions, spelling fields beside every word, word dropout toward
    # the signature, a cosine schedule
    defaults = {"hidden": 64, "lr": 1e-3, "batch_size": 32, "epochs": 6, "bidirectional": True,
                "features": "suffix1,suffix2,suffix3,suffix4,suffix5,prefix1,prefix2,prefix3,signature,lower",
                "signature_dropout": 0.5, "schedule": "cosine"}
    options = ("min_count", "features", "signature_dropout", "bidirectional")
    refusals = {"valid_fraction": "it holds nothing out of --data: give the validation sentences as --valid"}
    held_out_split = ("train", "train")   # nothing is held out: the files given are scored whole
    held_out_in_data = False
    commands = ("tag",)

    def prepare(self, paths: list[str], valid: str | None, opts: Options) -> Prepared:
        sentences = [s for p in paths for s in read_conllu(p)]
        encoder = FeatureEncoder.build([s.words for s in sentences], opts.features, opts.min_count,
                                       all_signatures=opts.signature_dropout > 0)
        tags = Vocab.build((t for s in sentences for t in s.tags), specials=(), unk=None)
        train = tagged_batches(sentences, encoder, tags, opts.batch_size)
        if opts.signature_dropout > 0:
            train = signature_dropout(train, encoder, sentences, opts.signature_dropout)
        held = tagged_batches(read_conllu(valid), encoder, tags, 256, shuffle=False) if valid else None
        meta = {"task": self.name, **encoder.to_meta(), "tags": tags.symbols,
                "baseline_tags": most_frequent_tags(sentences)}
        return Prepared(train, held, len(encoder), len(tags), "all", meta)

    def evaluate(self, checkpoint_path, paths: list[str], meta: dict, backend: str) -> dict:
        """Accuracy over all words, over words unseen in training, and the baseline's."""
        ckpt = load_checkpoint(checkpoint_path)
        encoder, tags = FeatureEncoder.from_meta(Vocab.from_json(meta["vocab"]), meta), Vocab(meta["tags"], unk=None)
        sentences = [s for p in paths for s in read_conllu(p)]
        table = meta["baseline_tags"]
        right = unseen_right = unseen = 0
        batches = tagged_batches(sentences, encoder, tags, 256, shuffle=False)
        order = iter(sentences)
        for batch, logits in logits_of(ckpt.params, batches, ckpt.activation, backend):
            predicted = logits.argmax(axis=2)
            for b in range(logits.shape[1]):
                s = next(order)
                ok = predicted[: len(s.words), b] == batch.targets[: len(s.words), b]
                new = np.array([w not in table for w in s.words])
                right, unseen, unseen_right = right + ok.sum(), unseen + new.sum(), unseen_right + ok[new].sum()
        total = sum(len(s.words) for s in sentences)
        baseline = sum(table.get(w, table[""]) == t for s in sentences for w, t in zip(s.words, s.tags))
        return {"accuracy": right / total, "accuracy_unseen_words": unseen_right / max(unseen, 1),
                "unseen_word_fraction": unseen / total, "baseline_most_frequent_tag": baseline / total,
                "words": float(total)}


TASK = Tag()
