"""Word lists for autocompletion (the lecture's task): characters in, the next character out.

A word w = c_1..c_n becomes one sequence of n+1 steps, with `<stop>` on both ends:

    inputs   <stop> c_1 ... c_n          (the first input says "a word starts")
    targets  c_1   c_2 ... <stop>        (the model learns where words end)

so completing a prefix means feeding `<stop> prefix` and sampling until `<stop>`.
"""
from __future__ import annotations

import ast
import functools
import re
import sysconfig
from collections import Counter
from pathlib import Path

import numpy as np

from .errors import DataError, read_lines
from .vocab import UNK, Vocab

STOP = "<stop>"
_WORD = re.compile(r"\b[A-Za-z][a-z]*\b")   # "Return" and "the"; not getValue, snake_case


def read_words(path, encoding: str = "utf-8") -> list[str]:
    """One word per line (blank lines skipped); a line holding whitespace inside raises `DataError`."""
    words = []
    for number, line in enumerate(read_lines(path, encoding), 1):
        word = line.strip()
        if not word:
            continue
        if any(ch.isspace() for ch in word):
            raise DataError(path, number, f"expected one word per line, got {line!r}")
        words.append(word)
    if not words:
        raise DataError(path, None, "no words found (expected one word per line)")
    return words


def word_vocab(words) -> Vocab:
    """`<unk>`, `<stop>`, then the characters of `words`, most frequent first."""
    return Vocab.build((ch for w in words for ch in w), specials=(UNK, STOP))


def encode_words(words, vocab: Vocab) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(inputs, targets): for each word, ids (n+1,) of `<stop> c_1..c_n` and of `c_1..c_n <stop>`."""
    stop = vocab.id(STOP)
    inputs, targets = [], []
    for word in words:
        ids = vocab.encode(word)
        inputs.append(np.concatenate(([stop], ids)))
        targets.append(np.concatenate((ids, [stop])))
    return inputs, targets


@functools.cache
def docstring_words(min_len: int = 3, max_len: int = 14, min_count: int = 2, modules_dir=None) -> list[str]:
    """The words of the docstrings of the installed Python standard library's top-level modules,
    as they occur (running text: a word appears as often as it is written), lower-cased:
    real English text that every Python installation has, for the demo (no download).

    Modules in file-name order, docstrings in `ast.walk` order. A word is a run of letters
    (capitalised or lower-case; identifiers such as camelCase, snake_case or ALL_CAPS are
    left out), `min_len`..`max_len` long, kept when it occurs at least `min_count` times in
    all. Reads source files with `ast`, imports nothing."""
    root = Path(modules_dir or sysconfig.get_paths()["stdlib"])
    running = []
    for path in sorted(root.glob("*.py")):
        try:
            tree = ast.parse(path.read_bytes())
        except (SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node, clean=False)
                if doc:
                    running.extend(w.lower() for w in _WORD.findall(doc) if min_len <= len(w) <= max_len)
    counts = Counter(running)
    return [w for w in running if counts[w] >= min_count]
