"""Several ids per word: the word's own id plus features of it (a bag of feature ids per
step, `gpurnn.forward`'s token ids (T,B,F)), for taggers and classifiers.

Field 0 is `WordEncoder`'s id (the word, or its signature when it is rare). A spelling field
is one feature of every word, frequent or not, so its rows of U learn from all the training
words and an unseen word reads rows shared with the seen words that spell alike:

    suffix<k>    the last k letters of the lower-cased word, "^"-marked when shorter: ing, ^is
    prefix<k>    the first k letters of the lower-cased word, "$"-marked when shorter: un, a$
    signature    the word's unknown-word class (`signature`), for every word
    lower        the lower-cased word (so "The" shares a row with "the")

A context field reads the word's neighbours in its sentence, so it is worked out per sentence:

    bigram       the lower-cased pair (previous word, word), "<s>" before the first word:
                 "not good" (Wang and Manning 2012: bigrams lift bag-of-words sentiment
                 models). Like words, a pair seen fewer than `min_count` times in training
                 reads the field's unknown value (one row per rare pair would only memorise).
    negated      the lower-cased word when a negation (not, no, never, n't, ...) comes before it
                 in its clause (up to the next , . ; : ! ?), else "-": "not very good" gives
                 "very" and "good" rows apart from their plain ones (the NOT_ marking of Das and
                 Chen 2001, Pang et al. 2002); kept when seen `min_count` times, as bigrams.

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

_FIELD = re.compile(r"(suffix|prefix)([1-9])|signature|lower|bigram|negated")
CONTEXT_FIELDS = ("bigram", "negated")
FIELD_UNK = "<unk>"
SENTENCE_START = "<s>"
NOT_NEGATED = "-"
NEGATIONS = frozenset(("not", "no", "never", "nothing", "nobody", "none", "nor", "neither", "nowhere", "without",
                       "cannot", "n't"))
CLAUSE_ENDS = frozenset(",.;:!?")


def check_fields(fields) -> list[str]:
    """The field names, checked: each suffixK, prefixK (K in 1..9), signature, lower, bigram or negated, once."""
    fields = list(fields)
    for name in fields:
        if not isinstance(name, str) or not _FIELD.fullmatch(name):
            raise ValueError("features must be suffixK, prefixK (K in 1..9), signature, lower, bigram or negated, "
                             f"got {name!r}")
    if len(set(fields)) != len(fields):
        raise ValueError(f"features must be distinct, got {fields}")
    return fields


def feature(name: str, word: str) -> str:
    """The value of spelling field `name` for `word`, e.g. feature("suffix3", "Running") == "ing"."""
    if name == "signature":
        return signature(word)
    lower = word.lower()
    if name == "lower":
        return lower
    k = int(name[-1])
    return ("^" + lower)[-k:] if name.startswith("suffix") else (lower + "$")[:k]


def field_values(name: str, words) -> list[str]:
    """The values of field `name` for each word of one sentence (L,), e.g.
    field_values("bigram", ["Not", "good"]) == ["<s> not", "not good"]."""
    if name == "bigram":
        lower = [w.lower() for w in words]
        return [f"{a} {b}" for a, b in zip([SENTENCE_START] + lower[:-1], lower)]
    if name == "negated":
        return _negated([w.lower() for w in words])
    return [feature(name, w) for w in words]


def _negated(lower: list[str]) -> list[str]:
    """`negated`'s values for a sentence of lower-cased words: each word after a negation in its
    clause, "-" for the others (the negation word and the clause's end included)."""
    values, scope = [], False
    for w in lower:
        scope = scope and w not in CLAUSE_ENDS
        values.append(w if scope else NOT_NEGATED)
        scope = scope or w in NEGATIONS or w.endswith("n't")
    return values


class FeatureEncoder:
    """Words -> ids (L,) (no fields: `WordEncoder` alone) or (L, 1 + len(fields)), each field's
    ids offset past the word vocabulary and the fields before it."""

    def __init__(self, words: WordEncoder, fields: dict[str, Vocab] | None = None):
        self.words, self.fields = words, dict(fields or {})
        self.offsets, at = {}, len(words.vocab)
        for name, vocab in self.fields.items():
            self.offsets[name], at = at, at + len(vocab)
        self.size = at
        self._spelling = [name for name in self.fields if name not in CONTEXT_FIELDS]
        self._seen = {}          # word -> the ids of its spelling fields

    @classmethod
    def build(cls, sentences, fields=(), min_count: int = 2, *, all_signatures: bool = False) -> "FeatureEncoder":
        """From training sentences (lists of words): `WordEncoder.build` for field 0, then the fields
        (`with_fields`)."""
        return cls.with_fields(WordEncoder.build(sentences, min_count, all_signatures=all_signatures),
                               sentences, fields, min_count)

    @classmethod
    def with_fields(cls, words: WordEncoder, sentences, fields=(), min_count: int = 2) -> "FeatureEncoder":
        """`words` for field 0 and, per field, the values the training sentences take (most frequent
        first) after the field's `<unk>`: every spelling value, the context values seen at least
        `min_count` times."""
        return cls(words, {name: Vocab.build((v for s in sentences for v in field_values(name, s)),
                                             specials=(FIELD_UNK,), unk=FIELD_UNK,
                                             min_count=min_count if name in CONTEXT_FIELDS else 1)
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
        own = {name: [self._ids(w)[i] for w in words] for i, name in enumerate(self._spelling)}
        columns = [self.words.encode(words)] + [
            own[name] if name in own else [self.offsets[name] + vocab.id(v) for v in field_values(name, words)]
            for name, vocab in self.fields.items()]
        return np.array(columns, dtype=np.int64).T.reshape(len(words), 1 + len(self.fields))

    def _ids(self, word: str) -> list[int]:
        """The ids of `word`'s spelling fields, kept once worked out (a corpus repeats its words)."""
        ids = self._seen.get(word)
        if ids is None:
            ids = [self.offsets[name] + self.fields[name].id(feature(name, word)) for name in self._spelling]
            self._seen[word] = ids
        return ids

    def signature_ids(self) -> np.ndarray:
        """ids (n,): for a word id its signature's id (`WordEncoder.signature_ids`); a field's
        id maps to itself (word dropout leaves the spelling fields alone)."""
        return np.concatenate((self.words.signature_ids(), np.arange(len(self.words.vocab), self.size)))

    def unknown_ids(self) -> np.ndarray:
        """ids (n,): for each id, the unknown id of its field (`<unk>` for a word, a field's own
        `<unk>` for its values): what word dropout reads a dropped id as."""
        unknown = np.full(self.size, self.words.vocab.unk_id, np.int64)
        for name, vocab in self.fields.items():
            unknown[self.offsets[name]: self.offsets[name] + len(vocab)] = self.offsets[name] + vocab.unk_id
        return unknown
