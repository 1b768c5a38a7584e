"""Several ids per word for taggers: the word's own id plus spelling features (a bag of
feature ids per step, `gpurnn.forward`'s token ids (T,B,F)).

Field 0 is `WordEncoder`'s id (the word, or its signature when it is rare); each further
field is one spelling feature of every word, frequent or not, so its rows of U learn from
all the training words and an unseen word reads rows shared with the seen words that
spell alike:

    suffix<k>    the last k letters of the lower-cased word, "^"-marked when shorter: ing, ^is
    prefix<k>    the first k letters of the lower-cased word, "$"-marked when shorter: un, a$
    signature    the word's unknown-word class (`signature`), for every word
    lower        the lower-cased word (so "The" shares a row with "the")

All fields live in one vocabulary of ids: the word vocabulary first (so a checkpoint
without fields reads exactly as before), then each field's values seen in training,
each field with an unknown value of its own. The input projection of a word is the
sum of its F rows of U.
"""
from __future__ import annotations

import re

import numpy as np

from .signatures import WordEncoder, signature
from .vocab import Vocab

_FIELD = re.compile(r"(suffix|prefix)([1-9])|signature|lower")
FIELD_UNK = "<unk>"


def check_fields(fields) -> list[str]:
    """The field names, checked: each suffixK, prefixK (K in 1..9), signature or lower, once."""
    fields = list(fields)
    for name in fields:
        if not isinstance(name, str) or not _FIELD.fullmatch(name):
            raise ValueError(f"features must be suffixK, prefixK (K in 1..9), signature or lower, got {name!r}")
    if len(set(fields)) != len(fields):
        raise ValueError(f"features must be distinct, got {fields}")
    return fields


def feature(name: str, word: str) -> str:
    """The value of field `name` for `word`, e.g. feature("suffix3", "Running") == "ing"."""
    if name == "signature":
        return signature(word)
    lower = word.lower()
    if name == "lower":
        return lower
    k = int(name[-1])
    return ("^" + lower)[-k:] if name.startswith("suffix") else (lower + "$")[:k]


class FeatureEncoder:
    """Words -> ids (L,) (no fields: `WordEncoder` alone) or (L, 1 + len(fields)), each field's
    ids offset past the word vocabulary and the fields before it."""

    def __init__(self, words: WordEncoder, fields: dict[str, Vocab] | None = None):
        self.words, self.fields = words, dict(fields or {})
        self.offsets, at = {}, len(words.vocab)
        for name, vocab in self.fields.items():
            self.offsets[name], at = at, at + len(vocab)
        self.size = at
        self._seen = {}          # word -> its F ids

    @classmethod
    def build(cls, sentences, fields=(), min_count: int = 2, *, all_signatures: bool = False) -> "FeatureEncoder":
        """From training sentences (lists of words): `WordEncoder.build` for field 0 and, per field,
        every value the training words take (most frequent first) after the field's `<unk>`."""
        words = WordEncoder.build(sentences, min_count, all_signatures=all_signatures)
        return cls(words, {name: Vocab.build((feature(name, w) for s in sentences for w in s),
                                             specials=(FIELD_UNK,), unk=FIELD_UNK)
                           for name in check_fields(fields)})

    @classmethod
    def from_meta(cls, vocab: Vocab, meta: dict) -> "FeatureEncoder":
        """The encoder a checkpoint was trained with: its word vocabulary and meta["features"]
        ({field: its Vocab's json}; absent in checkpoints without fields)."""
        fields = meta.get("features") or {}
        check_fields(fields)
        return cls(WordEncoder(vocab), {name: Vocab.from_json(v) for name, v in fields.items()})

    def to_meta(self) -> dict:
        """{"vocab": the word vocabulary, "features": the fields}, for a checkpoint's meta."""
        return {"vocab": self.words.vocab.to_json(), "features": {k: v.to_json() for k, v in self.fields.items()}}

    def __len__(self) -> int:
        return self.size

    def encode(self, words) -> np.ndarray:
        """ids (L,) int64 without fields, else (L, 1 + len(fields)) int64."""
        if not self.fields:
            return self.words.encode(words)
        return np.array([self._ids(w) for w in words], dtype=np.int64).reshape(len(words), 1 + len(self.fields))

    def _ids(self, word: str) -> list[int]:
        """The F ids of `word`, kept once worked out (a corpus repeats its words)."""
        ids = self._seen.get(word)
        if ids is None:
            ids = [self.words.word_id(word)] + [self.offsets[name] + vocab.id(feature(name, word))
                                                for name, vocab in self.fields.items()]
            self._seen[word] = ids
        return ids

    def signature_ids(self) -> np.ndarray:
        """ids (n,): for a word id its signature's id (`WordEncoder.signature_ids`); a field's
        id maps to itself (word dropout leaves the spelling fields alone)."""
        return np.concatenate((self.words.signature_ids(), np.arange(len(self.words.vocab), self.size)))
