"""Word ids for taggers, with spelling-aware unknown-word ids.

A word seen at least `min_count` times in training keeps its own id. Any other word is
mapped to its *signature*, an unknown-word id refined by spelling features, in the manner
of the Berkeley parser's unknown-word classes:

    <unk|shape|digit|hyphen|suffix>   shape:  Xx (capitalised) | XX (all capitals) | x (lower) | - (no letter)
                                      digit:  d if the word holds a digit
                                      hyphen: h if it holds a hyphen
                                      suffix: the longest of SUFFIXES the lower-cased word ends with

Rare training words are mapped the same way, so each signature's row of U is learned from
real rare words and an unseen test word reads a row that says "capitalised, ends in -ing".
A signature never seen in training falls back to `<unk>`.
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from .vocab import UNK, Vocab

SUFFIXES = tuple(sorted((
    "s", "es", "ed", "ing", "ly", "er", "est", "ion", "ions", "al", "ive", "ous", "able", "ible", "ful",
    "ness", "ment", "ity", "ic", "y", "ize", "ise", "less", "ish", "ist", "ism", "ant", "ent", "ary", "ate",
    "en", "an", "'s",
), key=len, reverse=True))


def signature(word: str) -> str:
    """The unknown-word class of `word`, e.g. signature("Wrestling") == "<unk|Xx|||ing>"."""
    letters = [ch for ch in word if ch.isalpha()]
    if not letters:
        shape = "-"
    elif all(ch.isupper() for ch in letters):
        shape = "XX" if len(letters) > 1 else "Xx"
    elif word[0].isupper():
        shape = "Xx"
    else:
        shape = "x"
    digit = "d" if any(ch.isdigit() for ch in word) else ""
    hyphen = "h" if "-" in word else ""
    lower = word.lower()
    suffix = next((s for s in SUFFIXES if len(lower) > len(s) + 1 and lower.endswith(s)), "")
    return f"<unk|{shape}|{digit}|{hyphen}|{suffix}>"


class WordEncoder:
    """Words -> ids over `vocab` (frequent words, then signatures, with `<unk>` at id 0)."""

    def __init__(self, vocab: Vocab):
        self.vocab = vocab

    @classmethod
    def build(cls, sentences, min_count: int = 2, *, all_signatures: bool = False) -> "WordEncoder":
        """From training sentences (lists of words): words seen ≥ min_count times, and the
        signatures of the rest (of every word with `all_signatures`, for word dropout)."""
        counts = Counter(w for words in sentences for w in words)
        frequent = [w for w, n in counts.most_common() if n >= min_count]
        signatures = sorted({signature(w) for w, n in counts.items() if all_signatures or n < min_count})
        return cls(Vocab([UNK] + frequent + signatures, UNK))

    def word_id(self, word: str) -> int:
        found = self.vocab.index.get(word)
        return found if found is not None else self.vocab.id(signature(word))

    def encode(self, words) -> np.ndarray:
        """ids (L,) int64 of the words of one sentence."""
        return np.array([self.word_id(w) for w in words], dtype=np.int64)

    def signature_ids(self) -> np.ndarray:
        """ids (n,) int64: for each id, the id of its word's signature (a signature and `<unk>`
        map to themselves; a signature not in the vocabulary to `<unk>`)."""
        return np.array([i if s.startswith("<unk") else self.vocab.id(signature(s))
                         for i, s in enumerate(self.vocab.symbols)], dtype=np.int64)

    def known(self, word: str) -> bool:
        """Whether `word` has an id of its own (not a signature)."""
        return word in self.vocab.index and not word.startswith("<unk")
