"""CoNLL-U files for part-of-speech tagging (UPOS), read with the `conllu` package (imported
on first use, so the rest of gpurnn imports where it is missing, e.g. a GPU image).

Multiword tokens (ids like 3-4) and empty nodes (ids like 5.1) are left out: each sentence
is its syntactic words and their UPOS tags. A malformed line raises `DataError` naming the
file and the line.
"""
from __future__ import annotations

from typing import NamedTuple

from .errors import DataError, read_lines


class TaggedSentence(NamedTuple):
    """`words[i]` carries the tag `tags[i]`."""

    words: list[str]
    tags: list[str]


def read_conllu(path, encoding: str = "utf-8") -> list[TaggedSentence]:
    """The sentences of a CoNLL-U file as (words, UPOS tags)."""
    sentences, block, first = [], [], 1
    lines = read_lines(path, encoding)
    for number, line in enumerate(lines + [""], 1):
        if line.strip():
            if not block:
                first = number
            block.append(line)
        elif block:
            sentences.extend(_parse_block(path, first, block))
            block = []
    if not sentences:
        raise DataError(path, None, "no sentences found (expected CoNLL-U: tab-separated token lines)")
    return sentences


def _parse_block(path, first: int, block: list[str]) -> list[TaggedSentence]:
    """One blank-line-separated block (lines first..first+len-1) parsed by `conllu`."""
    for offset, line in enumerate(block):
        if not line.startswith("#") and len(line.split("\t")) != 10:
            raise DataError(path, first + offset, f"expected 10 tab-separated CoNLL-U columns, "
                                                  f"got {len(line.split(chr(9)))}: {line!r}")
    conllu, ParseException = _conllu()
    try:
        token_lists = conllu.parse("\n".join(block) + "\n\n")
    except ParseException as e:
        raise DataError(path, first + _bad_line(block), f"malformed CoNLL-U line: {e}") from None
    out = []
    for tokens in token_lists:
        words, tags = [], []
        for offset, token in enumerate(tokens):
            if not isinstance(token["id"], int):
                continue                     # multiword token or empty node
            if token["upos"] in (None, "_"):
                line = first + _token_line(block, offset)
                raise DataError(path, line, f"word {token['form']!r} has no UPOS tag (column 4)")
            words.append(token["form"])
            tags.append(token["upos"])
        if words:
            out.append(TaggedSentence(words, tags))
    return out


def _conllu():
    """The `conllu` module and its parse error, or a ModuleNotFoundError saying what to install."""
    try:
        import conllu
        from conllu.exceptions import ParseException
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError("reading CoNLL-U files needs the conllu package (pip install conllu)",
                                  name="conllu") from error
    return conllu, ParseException


def _bad_line(block: list[str]) -> int:
    """Offset of the first line of `block` that `conllu` cannot parse alone (0 if none)."""
    conllu, ParseException = _conllu()
    for offset, line in enumerate(block):
        try:
            conllu.parse(line + "\n\n")
        except ParseException:
            return offset
    return 0


def _token_line(block: list[str], token_offset: int) -> int:
    """Offset in `block` of the token_offset-th token line (comment lines skipped)."""
    token_lines = [i for i, line in enumerate(block) if not line.startswith("#")]
    return token_lines[token_offset]
