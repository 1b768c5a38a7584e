"""Labelled sentences for classification: one sentence per line.

Two layouts: a label per file (`{"pos": "rt-polarity.pos", "neg": "rt-polarity.neg"}`, every
line of a file gets its label) or one file with a label column (`label<TAB>sentence`).
Sentences are split on whitespace (lower-cased unless told otherwise).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .errors import DataError, read_lines


class LabelledSentence(NamedTuple):
    words: list[str]
    label: str


def _tokens(path, number, text, lower):
    words = (text.lower() if lower else text).split()
    if not words:
        raise DataError(path, number, "empty sentence (expected one sentence per line)")
    return words


def read_files_per_label(files: dict, *, lower: bool = True, encoding: str = "utf-8") -> list[LabelledSentence]:
    """Every non-blank line of `files[label]` labelled `label`, files in the given order."""
    if not files:
        raise ValueError("files must map at least one label to a file")
    out = []
    for label, path in files.items():
        lines = read_lines(path, encoding)
        for number, line in enumerate(lines, 1):
            if line.strip():
                out.append(LabelledSentence(_tokens(path, number, line, lower), str(label)))
        if not any(line.strip() for line in lines):
            raise DataError(path, None, f"no sentences for label {label!r}")
    return out


def read_label_column(path, *, sep: str = "\t", lower: bool = True, encoding: str = "utf-8") -> list[LabelledSentence]:
    """Lines `label<sep>sentence` (blank lines skipped)."""
    out = []
    for number, line in enumerate(read_lines(path, encoding), 1):
        if not line.strip():
            continue
        label, found, text = line.partition(sep)
        if not found or not label.strip():
            raise DataError(path, number, f"expected 'label{sep!r}sentence', got {line!r}")
        out.append(LabelledSentence(_tokens(path, number, text, lower), label.strip()))
    if not out:
        raise DataError(path, None, "no sentences found")
    return out


def fixed_split(n: int, *, seed: int = 0, test_fraction: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """(train_indices, test_indices): `numpy.random.default_rng(seed).permutation(n)`, the last
    `test_fraction` of it for test (the polarity task's fixed split)."""
    order = np.random.default_rng(seed).permutation(n)
    cut = n - int(round(n * test_fraction))
    return order[:cut], order[cut:]
