"""gpurnn against golden tensors made once by PyTorch's autograd (tests/golden/make_golden.py).

Each case covers a mix of modes (token/dense inputs, tanh/logistic/relu, output all/last/mean/max,
lengths with a 0 and a full length, s0, truncation); loss, states, logits, s_last, every
gradient and ds0 are compared on every backend, in float64 and (looser) float32.
"""
import pathlib

import numpy as np
import pytest
from helpers import FIELDS, assert_close

import gpurnn

GOLDEN = pathlib.Path(__file__).parent / "golden"
NAMES = sorted(p.stem for p in GOLDEN.glob("bptt_*.npz"))
DTYPES = [np.float64, np.float32]


def load(name, dtype):
    """(golden arrays, params, inputs, call kwargs) with params, s0 and dense inputs in `dtype`."""
    with np.load(GOLDEN / f"{name}.npz") as f:
        g = dict(f)
    params = gpurnn.Params(*(g[name].astype(dtype) for name in FIELDS))
    inputs = g["inputs"] if g["inputs"].dtype.kind in "iu" else g["inputs"].astype(dtype)
    s0 = g["s0"].astype(dtype) if "s0" in g else None
    kwargs = dict(lengths=g.get("lengths"), s0=s0, activation=str(g["activation"]))
    return g, params, inputs, kwargs


def test_golden_files_cover_every_mode():
    """The stored cases span every activation, output, truncation kind, input kind, lengths and s0."""
    seen = {key: set() for key in ("activation", "output", "truncate", "tokens", "lengths", "s0")}
    for name in NAMES:
        with np.load(GOLDEN / f"{name}.npz") as g:
            seen["activation"].add(str(g["activation"]))
            seen["output"].add(str(g["output"]))
            seen["truncate"].add(min(int(g["truncate"]), 1))   # -1 none, 0, 1 for τ >= 1
            seen["tokens"].add(g["inputs"].ndim == 2)
            seen["lengths"].add("lengths" in g and bool((g["lengths"] == 0).any()))
            seen["s0"].add("s0" in g)
    assert seen == {"activation": {"tanh", "logistic", "sigmoid", "relu"}, "output": {"all", "last", "mean", "max"},
                    "truncate": {-1, 0, 1}, "tokens": {True, False}, "lengths": {True, False},
                    "s0": {True, False}}


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("name", NAMES)
def test_bptt_matches_golden(name, dtype, backend):
    g, params, inputs, kwargs = load(name, dtype)
    truncate = int(g["truncate"])
    r = gpurnn.bptt(params, inputs, g["targets"], output=str(g["output"]),
                    truncate=None if truncate < 0 else truncate, backend=backend, **kwargs)
    assert isinstance(r.loss, float)
    assert_close(r.loss, g["loss"], dtype, "loss")
    for field in FIELDS:
        grad = getattr(r.grads, field)
        assert grad.dtype == dtype and grad.shape == g[field].shape, field
        assert_close(grad, g[f"d{field}"], dtype, f"d{field}")
    assert_close(r.ds0, g["ds0"], dtype, "ds0")
    assert_close(r.s_last, g["s_last"], dtype, "s_last")


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("name", NAMES)
def test_forward_matches_golden(name, dtype, backend):
    g, params, inputs, kwargs = load(name, dtype)
    states, logits, s_last = gpurnn.forward(params, inputs, backend=backend, **kwargs)
    for got, key in ((states, "states"), (logits, "logits"), (s_last, "s_last")):
        assert got.dtype == dtype and got.shape == g[key].shape, key
        assert_close(got, g[key], dtype, key)
