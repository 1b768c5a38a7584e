"""A vocabulary: symbols <-> integer ids, with an optional unknown symbol."""
from __future__ import annotations

from collections import Counter
from typing import Iterable, Sequence

import numpy as np

UNK = "<unk>"


class Vocab:
    """`symbols[i]` has id i. Encoding a symbol not in the vocabulary gives the id of `unk`
    (when the vocabulary has one) and raises `ValueError` otherwise."""

    def __init__(self, symbols: Sequence[str], unk: str | None = UNK):
        self.symbols = list(symbols)
        self.index = {s: i for i, s in enumerate(self.symbols)}
        if len(self.index) != len(self.symbols):
            raise ValueError("symbols must be distinct")
        if unk is not None and unk not in self.index:
            raise ValueError(f"unk symbol {unk!r} must be one of the symbols")
        self.unk = unk

    @classmethod
    def build(cls, items: Iterable[str], *, specials: Sequence[str] = (UNK,), min_count: int = 1,
              unk: str | None = UNK) -> "Vocab":
        """`specials` first, then every item seen at least `min_count` times, most frequent first
        (ties in order of first appearance)."""
        counts = Counter(items)
        kept = [s for s, n in counts.most_common() if n >= min_count and s not in specials]
        return cls(list(specials) + kept, unk)

    def __len__(self) -> int:
        return len(self.symbols)

    def __contains__(self, symbol) -> bool:
        return symbol in self.index

    def id(self, symbol: str) -> int:
        """The id of `symbol` (the unknown id when it is not in the vocabulary)."""
        found = self.index.get(symbol)
        if found is not None:
            return found
        if self.unk is None:
            raise ValueError(f"symbol {symbol!r} is not in the vocabulary (which has no unknown symbol)")
        return self.index[self.unk]

    @property
    def unk_id(self) -> int | None:
        return None if self.unk is None else self.index[self.unk]

    def encode(self, seq: Iterable[str]) -> np.ndarray:
        """ids (L,) int64 of the symbols of `seq`."""
        return np.array([self.id(s) for s in seq], dtype=np.int64)

    def unseen(self, seq: Iterable[str]) -> list[str]:
        """The distinct symbols of `seq` that are not in the vocabulary, in order of first appearance."""
        return list(dict.fromkeys(s for s in seq if s not in self.index))

    def unseen_note(self, seq: Iterable[str], what: str) -> str | None:
        """One line saying which symbols of `seq` (`what`, e.g. "the prime") the model never saw
        and reads as the unknown symbol, or None when it saw them all."""
        unseen = self.unseen(seq)
        if not unseen:
            return None
        shown = " ".join(repr(s) for s in unseen[:10]) + (" ..." if len(unseen) > 10 else "")
        return (f"note: {len(unseen)} symbol{'s' if len(unseen) > 1 else ''} of {what} never seen in training, "
                f"read as {self.unk}: {shown}")

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.symbols[int(i)] for i in ids]

    def to_json(self) -> dict:
        return {"symbols": self.symbols, "unk": self.unk}

    @classmethod
    def from_json(cls, data: dict) -> "Vocab":
        return cls(data["symbols"], data.get("unk"))

    def __eq__(self, other) -> bool:
        return isinstance(other, Vocab) and self.symbols == other.symbols and self.unk == other.unk
