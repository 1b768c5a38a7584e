"""Sequences of real-valued measurements with a class label each: reading, splitting, standardising.

Two file formats (chosen by the suffix):

    .ts    the UEA/UCR archive's text format (`gpurnn.data.ts_format`)
    .npz   NumPy arrays: `X` (N, T, n) floats with optional `lengths` (N,) (sequence i is
           X[i, :lengths[i]]), or `X` an object array of N float arrays (T_i, n); `y` (N,)
           labels (ints or strings; optional for prediction). An object array is stored as
           a pickle, which NumPy runs when loading: read only files you trust.

`Standardizer` holds per-channel means and standard deviations fitted on the training
sequences' real steps (never padding) and travels in the checkpoint's metadata, so that
evaluation and prediction transform their inputs the same way.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np

from .errors import DataError
from .ts_format import LabelledSeries, read_ts


def read_measurements(path, *, need_labels: bool = True) -> LabelledSeries:
    """The sequences of a `.ts` or `.npz` file; `need_labels` refuses a file without labels."""
    suffix = os.path.splitext(os.fspath(path))[1].lower()
    if suffix == ".ts":
        data = read_ts(path)
    elif suffix == ".npz":
        data = read_npz(path)
    else:
        raise DataError(path, None, f"unknown format {suffix or '(no suffix)'!r} (expected a .ts or .npz file)")
    if need_labels and data.labels is None:
        raise DataError(path, None, "the sequences have no class labels (expected @classLabel true in a .ts "
                        "file, an array y in a .npz file)")
    return data


def read_npz(path) -> LabelledSeries:
    """The sequences of a `.npz` file (see the module docstring)."""
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {key: _load(f, key, path) for key in f.files}
    except (OSError, ValueError) as e:
        raise DataError(path, None, f"cannot read as a NumPy .npz file: {e}") from None
    if "X" not in arrays:
        raise DataError(path, None, f"no array X (expected X and y, found {sorted(arrays) or 'none'})")
    series = _series(path, arrays["X"], arrays.get("lengths"))
    labels = None
    if "y" in arrays:
        y = arrays["y"]
        if y.shape != (len(series),):
            raise DataError(path, None, f"y must have shape ({len(series)},), one label per sequence, got {y.shape}")
        labels = [str(v) for v in y.tolist()]
    return LabelledSeries(series, labels, None, series[0].shape[1])


def _load(npz, key, path):
    try:
        return npz[key]
    except ValueError:                  # an object array: a pickle
        with np.load(path, allow_pickle=True) as f:
            return f[key]


def _series(path, X, lengths):
    if X.dtype == object:
        items = list(X)
        if lengths is not None:
            raise DataError(path, None, "lengths goes with a padded X (N, T, n), not with a list of sequences")
    else:
        if X.ndim != 3:
            raise DataError(path, None, f"X must be (N, T, n) or a list of (T_i, n) arrays, got shape {X.shape}")
        lengths = np.full(X.shape[0], X.shape[1]) if lengths is None else lengths
        if lengths.shape != (X.shape[0],) or lengths.dtype.kind not in "iu":
            raise DataError(path, None, f"lengths must be ({X.shape[0]},) ints, got {lengths.shape} {lengths.dtype}")
        items = [X[i, :int(L)] for i, L in enumerate(lengths)]
    if not items:
        raise DataError(path, None, "X holds no sequences")
    out = []
    for i, x in enumerate(items):
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[0] < 1 or x.dtype.kind not in "iuf" or x.shape[1] != np.shape(items[0])[1]:
            raise DataError(path, None, f"sequence {i} must be a (T_i >= 1, {np.shape(items[0])[1]}) array of "
                            f"numbers, got shape {x.shape} dtype {x.dtype}")
        if not np.isfinite(x).all():
            raise DataError(path, None, f"sequence {i} holds NaN or infinite values (expected finite numbers)")
        out.append(x.astype(np.float64))
    return out


def class_names(data: LabelledSeries) -> list[str]:
    """The classes: those a `.ts` header declares, else the labels seen (numerically sorted
    when they are all integers)."""
    if data.classes is not None:
        return list(data.classes)
    seen = set(data.labels)
    numeric = all(s.lstrip("-").isdigit() for s in seen)
    return sorted(seen, key=int) if numeric else sorted(seen)


def stratified_split(labels, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held_out) indices: `round(fraction · count)` sequences of every class held out
    (at least one where the class has two or more), drawn by `numpy.random.default_rng(seed)`."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    held = []
    for name in sorted(set(labels.tolist())):
        members = rng.permutation(np.flatnonzero(labels == name))
        count = min(max(int(round(fraction * len(members))), 1), len(members) - 1) if fraction > 0 else 0
        held.extend(members[:count].tolist())
    held = np.sort(np.array(held, np.int64))
    return np.setdiff1d(np.arange(len(labels)), held), held


@dataclasses.dataclass
class Standardizer:
    """x ↦ (x − mean) / std per channel; mean, std (n,) fitted on real steps only."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, series) -> "Standardizer":
        """Fitted on every step of `series` (a list of (T_i, n) arrays); a constant channel gets std 1."""
        steps = np.concatenate(series, axis=0)
        std = steps.std(axis=0)
        return cls(steps.mean(axis=0), np.where(std > 0, std, 1.0))

    def __call__(self, x, dtype=np.float32) -> np.ndarray:
        return ((x - self.mean) / self.std).astype(dtype)

    def to_json(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_json(cls, data: dict) -> "Standardizer":
        return cls(np.array(data["mean"], np.float64), np.array(data["std"], np.float64))
