"""Checkpoints: round trip, atomic writes, clear errors."""
import json
import os

import numpy as np
import pytest
from safetensors.numpy import save_file

from gpurnn import init_params
from gpurnn.checkpoint import load_checkpoint, save_checkpoint


def test_round_trip(tmp_path):
    params = init_params(5, 4, 3, seed=0)
    extra = {"optim.exp_avg.W": np.ones((4, 4), np.float32), "carry": np.arange(8.0).reshape(2, 4)}
    meta = {"vocab": ["a", "é", "<stop>"], "config": {"activation": "relu", "lr": 0.1}, "step": 7}
    path = save_checkpoint(tmp_path / "sub" / "ck.safetensors", params, arrays=extra, meta=meta)
    ckpt = load_checkpoint(path)
    for a, b in zip(params, ckpt.params):
        np.testing.assert_array_equal(a, b)
        assert b.dtype == np.float32
    assert set(ckpt.arrays) == set(extra)
    np.testing.assert_array_equal(ckpt.arrays["carry"], extra["carry"])
    assert ckpt.vocab == ["a", "é", "<stop>"] and ckpt.activation == "relu" and ckpt.meta["step"] == 7
    assert ckpt.meta["format"] == "gpurnn-checkpoint"


def test_interrupted_write_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "ck.safetensors", init_params(2, 3, 2, seed=0), meta={"step": 1})
    before = path.read_bytes()

    def crash(*args):
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, init_params(2, 3, 2, seed=1), meta={"step": 2})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ck.safetensors"]    # no temporary file left
    assert load_checkpoint(path).meta["step"] == 1


def test_overwrite_replaces(tmp_path):
    path = tmp_path / "ck.safetensors"
    save_checkpoint(path, init_params(2, 3, 2, seed=0), meta={"step": 1})
    save_checkpoint(path, init_params(2, 3, 2, seed=1), meta={"step": 2})
    assert load_checkpoint(path).meta["step"] == 2
    assert len(list(tmp_path.iterdir())) == 1


def test_errors(tmp_path):
    params = init_params(2, 3, 2, seed=0)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="not a safetensors checkpoint"):
        load_checkpoint(junk)
    plain = tmp_path / "plain.safetensors"
    save_file({"x": np.zeros(2)}, str(plain))
    with pytest.raises(ValueError, match="without gpurnn metadata"):
        load_checkpoint(plain)
    other = tmp_path / "other.safetensors"
    save_file({"x": np.zeros(2)}, str(other), metadata={"gpurnn": json.dumps({"format": "x", "version": 9})})
    with pytest.raises(ValueError, match="this gpurnn reads"):
        load_checkpoint(other)
    with pytest.raises(ValueError, match="JSON-serialisable"):
        save_checkpoint(tmp_path / "a.safetensors", params, meta={"bad": object()})
    with pytest.raises(ValueError, match="JSON-serialisable"):
        save_checkpoint(tmp_path / "a.safetensors", params, meta={"loss": float("nan")})
    with pytest.raises(ValueError, match="reserved"):
        save_checkpoint(tmp_path / "a.safetensors", params, arrays={"params.W": params.W})
    with pytest.raises(TypeError, match="params must be a gpurnn.Params"):
        save_checkpoint(tmp_path / "a.safetensors", {"W": params.W})
