"""Plain text for character language models.

A text of N characters becomes ids (N,) over a character vocabulary with `<unk>` (id 0)
for characters the model never saw; `split_text` keeps the last fraction for validation.
"""
from __future__ import annotations

import numpy as np

from .errors import DataError, read_lines
from .vocab import UNK, Vocab


def read_text(path, encoding: str = "utf-8") -> str:
    """The whole text of `path` (newlines kept); an empty file or bad bytes raise `DataError`."""
    lines = read_lines(path, encoding)
    with open(path, "rb") as f:
        trailing_newline = f.read().endswith(b"\n")
    text = "\n".join(lines) + ("\n" if trailing_newline else "")
    if not text:
        raise DataError(path, None, "the file is empty; a character model needs text")
    return text


def char_vocab(text: str) -> Vocab:
    """`<unk>` then the distinct characters of `text`, most frequent first."""
    return Vocab.build(text, specials=(UNK,))


def encode_text(text: str, vocab: Vocab | None = None) -> tuple[np.ndarray, Vocab]:
    """(ids (N,) int64, vocab): the characters of `text` as ids over `vocab` (default: `char_vocab(text)`;
    characters it lacks read as `<unk>`)."""
    if not isinstance(text, str) or not text:
        raise ValueError(f"text must be a non-empty str, got {text!r:.40}")
    vocab = char_vocab(text) if vocab is None else vocab
    return vocab.encode(text), vocab


def split_text(ids: np.ndarray, valid_fraction: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """(train, valid): the first (1 − valid_fraction) of `ids` and the rest."""
    if not 0.0 <= valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must lie in [0, 1), got {valid_fraction!r}")
    cut = int(round(len(ids) * (1.0 - valid_fraction)))
    return ids[:cut], ids[cut:]
