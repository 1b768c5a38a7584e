"""Word autocompletion (`--task autocomplete`): a character model of the words of a running text.

Every word occurrence of a running text (a word appears as often as it is written) is a
sequence `<stop> c_1..c_n` -> `c_1..c_n <stop>` (gpurnn.data.words); the last `valid_fraction`
of the text is held out, and `evaluate` scores completions on it as a user feels them
(gpurnn.tasks.completion) beside the most-frequent-word baseline; `gpurnn complete` offers
the most probable completions of a prefix, `gpurnn sample` draws words.
"""
from __future__ import annotations

from ..batches import SentenceBatches
from ..data.vocab import Vocab
from ..data.words import docstring_words, encode_words, read_words, word_vocab
from ..train import Trainer
from ..trained import load
from . import Options, Prepared, loss_metrics
from .charlm import LANGUAGE_MODEL
from .completion import completion_scores, frequency_completer

STDLIB = "stdlib"   # the word source for autocompletion that needs no file: Python's docstrings
COMPLETION_BEAM = 8  # beam width of the completions `evaluate` scores (k = 3 of them)


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
    defaults = {"hidden": 128, "lr": 5e-3, "batch_size": 32, "epochs": 10}
    options = ("valid_fraction",)
    refusals = {"bidirectional": LANGUAGE_MODEL}
    held_out_split = ("valid", "train")   # with --valid it trains on all the words, and scores those
    held_out_in_data = True
    commands = ("complete", "sample")

    def prepare(self, paths: list[str], valid: str | None, opts: Options) -> Prepared:
        words = _word_source(paths)
        train_words, valid_words = (words, read_words(valid)) if valid else _split_words(words, opts.valid_fraction)
        vocab = word_vocab(words)
        train = SentenceBatches(*encode_words(train_words, vocab), opts.batch_size)
        held = SentenceBatches(*encode_words(valid_words, vocab), 256, shuffle=False) if valid_words else None
        meta = {"task": self.name, "vocab": vocab.to_json(), "valid_fraction": opts.valid_fraction, "words": paths}
        notes = [n for n in [vocab.unseen_note("".join(valid_words), f"--valid {valid}")] if valid and n]
        return Prepared(train, held, len(vocab), len(vocab), "all", meta, notes)

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
        metrics = loss_metrics(trainer.evaluate(SentenceBatches(*encode_words(held, vocab), 256, shuffle=False)).loss)
        model = load(checkpoint_path, backend=backend)
        metrics.update(completion_scores(
            lambda prefix, k: [w for w, _ in model.complete(prefix, k=k, beam=COMPLETION_BEAM)], held))
        if train_words:
            baseline = completion_scores(frequency_completer(train_words), held)
            metrics.update({f"baseline_{name}": value for name, value in baseline.items()})
        return metrics


TASK = Autocomplete()
