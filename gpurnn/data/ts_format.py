"""Reader of the UEA/UCR time-series archive's `.ts` text format (classification problems).

    # comments                         anywhere, skipped
    @problemName BasicMotions          header lines, keys case-insensitive
    @timeStamps false                  true (series of (time, value) pairs) is not supported
    @missing false                     true ('?' values) is refused: fill or drop them first
    @univariate false
    @dimensions 6                      channels n (else taken from the first series)
    @equalLength true
    @seriesLength 100                  checked when given with @equalLength true
    @classLabel true Standing Running  the classes, in this order; `false`: no labels
    @data
    0.07,0.08,…:-0.9,1.1,…:…:Standing  one sequence per line: n channels separated by ':',
                                       each a comma-separated series, the label last

Every channel of a line must have the same length (≥ 1); lines may differ in length unless
@equalLength is true. Any departure raises `DataError` naming the file and line and saying
what was expected.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .errors import DataError, read_lines

KEYS = ("problemname", "timestamps", "missing", "univariate", "dimensions", "equallength", "serieslength",
        "classlabel", "targetlabel", "data")


@dataclasses.dataclass
class LabelledSeries:
    """series: float64 arrays (T_i, n), one per sequence; labels: one class name per sequence
    (None for an unlabelled file); classes: the declared class names in order (or None)."""

    series: list
    labels: list | None
    classes: list | None
    channels: int


def read_ts(path) -> LabelledSeries:
    """The sequences of a `.ts` file (see the module docstring)."""
    lines = read_lines(path)
    header, start = _header(path, lines)
    n = header.get("dimensions")
    classes = header.get("classlabel")
    series, labels = [], [] if classes is not None else None
    for number, line in enumerate(lines[start:], start + 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        fields = text.split(":")
        if n is None:
            n = len(fields) - (classes is not None)
        x, label = _data_line(path, number, fields, n, classes)
        if header.get("equallength") and series and len(x) != len(series[0]):
            raise DataError(path, number, f"@equalLength true, but this series has {len(x)} steps and the first "
                            f"had {len(series[0])}")
        if header.get("equallength") and "serieslength" in header and len(x) != header["serieslength"]:
            raise DataError(path, number, f"@seriesLength {header['serieslength']}, but this series has {len(x)} steps")
        series.append(x)
        if labels is not None:
            labels.append(label)
    if not series:
        raise DataError(path, None, "no sequences after @data (expected one line per sequence)")
    return LabelledSeries(series, labels, classes, n)


def _header(path, lines):
    """({key: value}, index of the first line after @data)."""
    header = {}
    for index, line in enumerate(lines):
        number, text = index + 1, line.strip()
        if not text or text.startswith("#"):
            continue
        if not text.startswith("@"):
            raise DataError(path, number, "data before @data (expected header lines starting with '@', then @data)")
        key, _, value = text[1:].partition(" ")
        key, value = key.lower(), value.strip()
        if key not in KEYS:
            raise DataError(path, number, f"unknown header line @{key} (expected one of "
                            f"{', '.join('@' + k for k in KEYS)})")
        if key == "data":
            return header, index + 1
        header[key] = _header_value(path, number, key, value)
    raise DataError(path, None, "no @data line (expected the header to end with @data, then one sequence per line)")


def _header_value(path, number, key, value):
    if key in ("dimensions", "serieslength"):
        if not value.isdigit() or int(value) < 1:
            raise DataError(path, number, f"@{key} must be a positive integer, got {value!r}")
        return int(value)
    if key == "classlabel":
        flag, *classes = value.split()
        if _flag(path, number, key, flag) and not classes:
            raise DataError(path, number, "@classLabel true must list the class labels after it")
        return classes if flag.lower() == "true" else None
    if key == "targetlabel" and _flag(path, number, key, value.split()[0] if value else ""):
        raise DataError(path, number, "@targetLabel true: regression targets are not supported (expected a "
                        "classification file with @classLabel)")
    if key == "timestamps" and _flag(path, number, key, value):
        raise DataError(path, number, "@timeStamps true: series of (time, value) pairs are not supported "
                        "(expected plain comma-separated values)")
    if key == "missing" and _flag(path, number, key, value):
        raise DataError(path, number, "@missing true: missing values ('?') are not supported "
                        "(fill or drop them first, then say @missing false)")
    if key in ("univariate", "equallength"):
        return _flag(path, number, key, value)
    return value


def _flag(path, number, key, value) -> bool:
    if value.lower() not in ("true", "false"):
        raise DataError(path, number, f"@{key} must be true or false, got {value!r}")
    return value.lower() == "true"


def _data_line(path, number, fields, n, classes):
    """(series (T, n) float64, label or None) of one data line split at ':'."""
    expected = n + (classes is not None)
    if len(fields) != expected:
        what = f"{n} channels and a class label" if classes is not None else f"{n} channels"
        raise DataError(path, number, f"expected {what} separated by ':', got {len(fields)} fields")
    label = None
    if classes is not None:
        label = fields[-1].strip()
        if label not in classes:
            raise DataError(path, number, f"class label {label!r} is not one of those @classLabel declares "
                            f"({' '.join(classes)})")
    channels = [_channel(path, number, c + 1, text) for c, text in enumerate(fields[:n])]
    lengths = {len(c) for c in channels}
    if len(lengths) > 1:
        raise DataError(path, number, "ragged channels: every channel of a sequence must have the same number of "
                        f"values, got {', '.join(str(len(c)) for c in channels)}")
    return np.stack(channels, axis=1), label


def _channel(path, number, channel, text):
    values = text.split(",")
    try:
        x = np.array(values, dtype=np.float64)
    except ValueError:
        bad = next(v for v in values if not _is_number(v))
        raise DataError(path, number, f"channel {channel}: {bad.strip()!r} is not a number (expected "
                        "comma-separated decimal numbers)") from None
    if not np.isfinite(x).all():
        raise DataError(path, number, f"channel {channel}: a value is NaN or infinite (expected finite numbers)")
    return x


def _is_number(text) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
