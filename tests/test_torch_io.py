"""Export to / import from a PyTorch nn.RNN + nn.Linear state dict (torch values saved by
tests/golden/make_train_golden.py; torch itself is not needed here)."""
import pathlib

import numpy as np
import pytest

from gpurnn import forward, init_params
from gpurnn.torch_io import from_torch_state_dict, to_torch_state_dict

GOLDEN = np.load(pathlib.Path(__file__).parent / "golden" / "torch_rnn.npz")


def _state(nonlinearity):
    prefix = f"{nonlinearity}."
    return {key[len(prefix):]: GOLDEN[key] for key in GOLDEN.files if key.startswith(prefix)
            and not key.startswith(prefix + "logits")}


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_imported_model_gives_torch_logits(nonlinearity):
    params = from_torch_state_dict(_state(nonlinearity))
    assert params.dtype == np.float64 and params.U.shape == (4, 6) and params.V.shape == (6, 3)
    for inputs, key in ((GOLDEN["x"], "dense"), (GOLDEN["ids"].astype(np.int64), "ids")):
        logits = forward(params, inputs, s0=GOLDEN["h0"], activation=nonlinearity, backend="cpu").logits
        np.testing.assert_allclose(logits, GOLDEN[f"{nonlinearity}.logits_{key}"], rtol=1e-10, atol=1e-12)


def test_import_sums_the_two_biases():
    state = _state("tanh")
    params = from_torch_state_dict(state)
    np.testing.assert_array_equal(params.b, state["rnn.bias_ih_l0"] + state["rnn.bias_hh_l0"])
    np.testing.assert_array_equal(params.W, state["rnn.weight_hh_l0"].T)


def test_export_layout_and_round_trip():
    params = init_params(5, 7, 3, seed=1)
    params.b[:] = np.arange(7)
    state = to_torch_state_dict(params, tensors=False)
    assert state["rnn.weight_ih_l0"].shape == (7, 5) and state["linear.weight"].shape == (3, 7)
    np.testing.assert_array_equal(state["rnn.bias_ih_l0"], params.b)
    assert not state["rnn.bias_hh_l0"].any()
    back = from_torch_state_dict(state)
    assert back.dtype == np.float32
    for a, b in zip(params, back):
        np.testing.assert_array_equal(a, b)
        assert b.flags.c_contiguous


def test_prefixes_and_dtype():
    params = init_params(2, 3, 2, seed=0)
    state = to_torch_state_dict(params, tensors=False, rnn_prefix="", linear_prefix="out.")
    assert "weight_hh_l0" in state and "out.bias" in state
    back = from_torch_state_dict(state, rnn_prefix="", linear_prefix="out.", dtype="float64")
    assert back.dtype == np.float64


def test_errors():
    params = init_params(2, 3, 2, seed=0)
    with pytest.raises(ValueError, match="activation must be one of"):
        to_torch_state_dict(params, activation="logistic", tensors=False)
    state = to_torch_state_dict(params, tensors=False)
    with pytest.raises(ValueError, match="lacks 'rnn.weight_hh_l0'"):
        from_torch_state_dict({k: v for k, v in state.items() if k != "rnn.weight_hh_l0"})
    with pytest.raises(ValueError, match="lacks 'rnn.weight_hh_l1'"):     # a second layer, half there
        from_torch_state_dict({**state, "rnn.weight_ih_l1": state["rnn.weight_ih_l0"]})
