"""Checkpoints: one safetensors file holding the arrays and, in its header, JSON metadata.

    arrays    "params.<name>" for each array of the `Params` tree ("params.U" … "params.c" for one
              layer, "params.layers.1.bw.W", "params.head.V" … for a stack), plus any others
              the caller names (the trainer adds
              "optim.<slot>.<param>" and "carry", the streams' states; with an average of the
              parameters, `TrainConfig.average`, "params." holds the average and
              "trained.<name>" the trained parameters)
    metadata  header key "gpurnn": JSON of {"format", "version", **meta} (the trainer stores
              step, epoch, RNG state, configuration, optimizer, vocabulary and any user facts)

Writing is atomic: the bytes go to a temporary file in the same directory, are flushed to
disk, then `os.replace`d onto the target, so an interrupted write leaves either the old
checkpoint or the new one, never a broken file. Arrays are copied to the host before
writing, so a checkpoint written on a GPU loads anywhere as NumPy arrays.
"""
from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save

from .arrays import to_host
from .model import Params
from .validation import check_params

__all__ = ["Checkpoint", "load_checkpoint", "save_checkpoint"]

FORMAT, VERSION = "gpurnn-checkpoint", 1
META_KEY = "gpurnn"
PARAMS = "params."          # the prefix of the parameters' array names


@dataclasses.dataclass
class Checkpoint:
    """What a checkpoint holds: `params` (NumPy), the other `arrays` by name, and `meta`."""

    params: Params
    arrays: dict
    meta: dict

    @property
    def config(self) -> dict:
        """The training configuration (a `TrainConfig` as a dict), or {}."""
        return self.meta.get("config", {})

    @property
    def activation(self) -> str:
        return self.config.get("activation", "tanh")

    @property
    def vocab(self):
        """Whatever the trainer was given as meta["vocab"] (e.g. a list of symbols), or None."""
        return self.meta.get("vocab")


def save_checkpoint(path, params: Params, *, arrays: dict | None = None, meta: dict | None = None) -> Path:
    """Write `params`, `arrays` and the JSON-serialisable `meta` to `path` atomically; return the path."""
    check_params(params)
    path = Path(path)
    tensors = {f"{PARAMS}{name}": np.ascontiguousarray(to_host(value)) for name, value in params.items()}
    for name, value in (arrays or {}).items():
        if name.startswith(PARAMS):
            raise ValueError(f"arrays must not use a name starting {PARAMS!r} such as {name!r} "
                             "(reserved for the parameters)")
        tensors[name] = np.ascontiguousarray(to_host(value))
    header = {"format": FORMAT, "version": VERSION, **(meta or {})}
    try:
        text = json.dumps(header, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise ValueError(f"meta must be JSON-serialisable (finite numbers, str, list, dict): {error}") from None
    data = save(tensors, metadata={META_KEY: text})
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path) -> Checkpoint:
    """Read a checkpoint onto the CPU (NumPy arrays), wherever it was trained."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        with safe_open(str(path), framework="np") as handle:
            header = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError) as error:
        raise ValueError(f"{path} is not a safetensors checkpoint: {error}") from None
    if META_KEY not in header:
        raise ValueError(f"{path} is a safetensors file without gpurnn metadata (not a gpurnn checkpoint)")
    meta = json.loads(header[META_KEY])
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise ValueError(f"{path} has format {meta.get('format')!r} version {meta.get('version')!r}; "
                         f"this gpurnn reads {FORMAT!r} version {VERSION}")
    named = {key[len(PARAMS):]: tensors.pop(key) for key in list(tensors) if key.startswith(PARAMS)}
    try:
        params = Params.from_items(named.items())
    except ValueError as error:
        raise ValueError(f"{path} does not hold one model's arrays: {error}") from None
    check_params(params)
    return Checkpoint(params, tensors, meta)
