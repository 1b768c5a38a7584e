"""Errors for malformed data files: every message names the file and the line."""
from __future__ import annotations

import os


class DataError(ValueError):
    """Malformed input data; `path` and `line` (1-based, or None for the whole file) say where."""

    def __init__(self, path, line: int | None, message: str):
        self.path, self.line = os.fspath(path), line
        where = self.path if line is None else f"{self.path}:{line}"
        super().__init__(f"{where}: {message}")


def read_lines(path, encoding: str = "utf-8") -> list[str]:
    """The lines of a text file without their line ends; undecodable bytes raise `DataError`
    with the line number, a missing file raises `DataError` too."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise DataError(path, None, f"cannot read file: {e.strerror}") from None
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    out = []
    for number, line in enumerate(lines, 1):
        try:
            out.append(line.decode(encoding).rstrip("\r"))
        except UnicodeDecodeError as e:
            raise DataError(path, number, f"not valid {encoding} text (byte {e.start + 1} of the line)") from None
    return out
