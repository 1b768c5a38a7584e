"""Language-model tasks: a character model of a text (`charlm`) and word autocompletion.

charlm: the text's ids (N,) are split, last `valid_fraction` for validation, and read as B
streams in chunks of `seq_len` (streaming BPTT). autocomplete: every word occurrence of a
running text (a word appears as often as it is written) is a sequence `<stop> c_1..c_n` ->
`c_1..c_n <stop>` (gpurnn.data.words); the last `valid_fraction` of the text is held out, and
`evaluate` scores completions on it as a user feels them (gpurnn.tasks.completion) beside
the most-frequent-word baseline.
"""
from __future__ import annotations

import math

import numpy as np

from ..batches import SentenceBatches, TokenStreams
from ..data.errors import DataError
from ..data.text import encode_text, read_text, split_text
from ..data.vocab import Vocab
from ..data.words import docstring_words, encode_words, read_words, word_vocab
from ..train import Trainer
from ..trained import load
from . import Options, Prepared
from .completion import completion_scores, frequency_completer

STDLIB = "stdlib"   # the word source for autocompletion that needs no file: Python's docstrings
COMPLETION_BEAM = 8  # beam width of the completions `evaluate` scores (k = 3 of them)


def _loss_metrics(loss: float) -> dict:
    return {"loss_nats": loss, "bits_per_char": loss / math.log(2), "perplexity": math.exp(loss)}


class CharLM:
    name = "charlm"
    held_out_in_data = True     # whether `evaluate` scores a held-out part of the training files

    def prepare(self, paths: list[str], valid: str | None, opts: Options) -> Prepared:
        text = "".join(read_text(p) for p in paths)
        ids, vocab = encode_text(text)
        train_ids, valid_ids = (ids, vocab.encode(read_text(valid))) if valid else split_text(ids, opts.valid_fraction)
        if len(train_ids) <= opts.batch_size:
            raise DataError(", ".join(paths), None, f"{len(train_ids)} characters to train on, fewer than batch_size + 1 "
                            f"= {opts.batch_size + 1} (a stream per row of a batch): lower --batch-size or give more text")
        streams = TokenStreams(train_ids, opts.batch_size, opts.seq_len)
        held = TokenStreams(valid_ids, opts.batch_size, opts.seq_len) if len(valid_ids) > opts.batch_size else None
        meta = {"task": self.name, "vocab": vocab.to_json(), "valid_fraction": opts.valid_fraction,
                "batch_size": opts.batch_size, "seq_len": opts.seq_len}
        return Prepared(streams, held, len(vocab), len(vocab), "all", meta)

    def evaluate(self, checkpoint_path, paths: list[str], meta: dict, backend: str) -> dict:
        """Loss on the last `valid_fraction` of the text of `paths`, and the unigram baseline's:
        −mean log q(c) with q the (add-one smoothed) character frequencies of the rest."""
        vocab = Vocab.from_json(meta["vocab"])
        ids = vocab.encode("".join(read_text(p) for p in paths))
        train_ids, valid_ids = split_text(ids, meta["valid_fraction"]) if meta["valid_fraction"] > 0 else (ids, ids)
        trainer = Trainer.load(checkpoint_path, backend=backend)
        loss = trainer.evaluate(TokenStreams(valid_ids, meta["batch_size"], meta["seq_len"])).loss
        counts = np.bincount(train_ids, minlength=len(vocab)) + 1.0
        unigram = -float(np.mean(np.log(counts / counts.sum())[valid_ids[1:]]))
        return {**_loss_metrics(loss), "baseline_unigram_nats": unigram}


def _word_source(paths: list[str]) -> list[str]:
    """The running words of `paths` (one word per line, in order), or of the standard library's docstrings."""
    if paths == [STDLIB]:
        return docstring_words()
    return [w for p in paths for w in read_words(p)]


def _split_words(words, fraction):
    """(train, held out): the running text's first (1 − fraction) and its last `fraction`."""
    cut = len(words) - int(round(len(words) * fraction))
    return words[:cut], words[cut:]


class Autocomplete:
    name = "autocomplete"
    held_out_in_data = True     # whether `evaluate` scores a held-out part of the training files

    def prepare(self, paths: list[str], valid: str | None, opts: Options) -> Prepared:
        words = _word_source(paths)
        train_words, valid_words = (words, read_words(valid)) if valid else _split_words(words, opts.valid_fraction)
        vocab = word_vocab(words)
        train = SentenceBatches(*encode_words(train_words, vocab), opts.batch_size)
        held = SentenceBatches(*encode_words(valid_words, vocab), 256, shuffle=False) if valid_words else None
        meta = {"task": self.name, "vocab": vocab.to_json(), "valid_fraction": opts.valid_fraction, "words": paths}
        return Prepared(train, held, len(vocab), len(vocab), "all", meta)

    def evaluate(self, checkpoint_path, paths: list[str], meta: dict, backend: str) -> dict:
        """Loss per character (and `<stop>`) on the held-out running text of `paths` (all of it when
        they are not the training words), and its completions scored as a user feels them:
        top-1/top-3 from 2 and 3 typed letters and keystrokes saved, for the model (beam search)
        and, when `paths` are the training words (the baseline needs their counts), for the most
        frequent training words with the typed prefix (`baseline_...`)."""
        words = _word_source(paths)
        train_words, held = _split_words(words, meta["valid_fraction"]) if paths == meta.get("words") else ([], words)
        vocab = Vocab.from_json(meta["vocab"])
        trainer = Trainer.load(checkpoint_path, backend=backend)
        metrics = _loss_metrics(trainer.evaluate(SentenceBatches(*encode_words(held, vocab), 256, shuffle=False)).loss)
        model = load(checkpoint_path, backend=backend)
        metrics.update(completion_scores(
            lambda prefix, k: [w for w, _ in model.complete(prefix, k=k, beam=COMPLETION_BEAM)], held))
        if train_words:
            baseline = completion_scores(frequency_completer(train_words), held)
            metrics.update({f"baseline_{name}": value for name, value in baseline.items()})
        return metrics
