"""`gpurnn.forward` on every backend: shapes and dtypes, values against the plain per-step
NumPy reference (the fused, compiled loop against one `cell` per step), frozen states past
each sequence's length, and `s_last`."""
import numpy as np
import pytest
from conftest import SIMULATOR
from helpers import assert_close, make_case, reference_forward, representative

import gpurnn
from gpurnn.backends import get_backend

SIZES = dict(T=5, B=3, n=4, d=4, k=3) if SIMULATOR else dict(T=9, B=5, n=6, d=7, k=4)


@pytest.mark.parametrize("activation,tokens,lengths,s0",
                         representative(activation=["tanh", "logistic", "sigmoid", "relu"], tokens=[True, False],
                                        lengths=[False, True], s0=[False, True]))
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_forward_matches_per_step_reference(activation, tokens, lengths, s0, dtype, backend):
    case = make_case(10, activation=activation, tokens=tokens, lengths=lengths, s0=s0, **SIZES)
    S, Z, s_last = reference_forward(case)
    cast = case.astype(dtype)
    states, logits, last = gpurnn.forward(cast.params, cast.inputs, backend=backend, **cast.forward_kwargs())
    T, B, d, k = SIZES["T"], SIZES["B"], SIZES["d"], SIZES["k"]
    for got, shape in ((states, (T, B, d)), (logits, (T, B, k)), (last, (B, d))):
        assert isinstance(got, np.ndarray) and got.shape == shape and got.dtype == dtype
    assert_close(states, S[1:], dtype, "states")
    assert_close(logits, Z, dtype, "logits")
    assert_close(last, s_last, dtype, "s_last")


@pytest.mark.parametrize("tokens", [True, False])
def test_lengths_freeze_states_and_define_s_last(tokens, backend):
    """Past its length a sequence keeps its state exactly; s_last is the state after its
    last step (s0 for length 0), and bptt reports the same s_last."""
    case = make_case(11, tokens=tokens, lengths=True, s0=True, **SIZES)
    states, _, s_last = gpurnn.forward(case.params, case.inputs, backend=backend, **case.forward_kwargs())
    full = np.concatenate([case.s0[None], states])               # full[t] = s_t
    for i, length in enumerate(case.lengths):
        for t in range(length, SIZES["T"] + 1):
            np.testing.assert_array_equal(full[t, i], full[length, i])
        np.testing.assert_array_equal(s_last[i], full[length, i])
        assert length == 0 or not np.array_equal(full[length, i], full[length - 1, i])
    np.testing.assert_array_equal(s_last, states[-1])
    result = gpurnn.bptt(case.params, case.inputs, case.targets, backend=backend, **case.kwargs())
    np.testing.assert_array_equal(result.s_last, s_last)


def test_s0_defaults_to_zeros(backend):
    case = make_case(12, s0=False, **SIZES)
    zeros = np.zeros((SIZES["B"], SIZES["d"]))
    a = gpurnn.forward(case.params, case.inputs, backend=backend)
    b = gpurnn.forward(case.params, case.inputs, s0=zeros, backend=backend)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_single_step_single_sequence(backend):
    """T = B = 1: s_1 = tanh(U[x] + s0 W + b), z_1 = s_1 V + c."""
    case = make_case(13, T=1, B=1, s0=True)
    P = case.params
    states, logits, s_last = gpurnn.forward(P, case.inputs, s0=case.s0, backend=backend)
    s1 = np.tanh(P.U[case.inputs[0, 0]] + case.s0[0] @ P.W + P.b)
    assert_close(states[0, 0], s1, np.float64, "s_1")
    assert_close(logits[0, 0], s1 @ P.V + P.c, np.float64, "z_1")
    assert_close(s_last[0], s1, np.float64, "s_last")


@pytest.mark.parametrize("id_dtype", [np.int32, np.uint8, np.int16])
def test_token_id_dtypes_and_strided_inputs(id_dtype, backend):
    """Any int dtype for token ids, and non-contiguous arrays (batch-major ids seen
    transposed, Fortran-order parameters and s0) give the same result as contiguous ones."""
    case = make_case(14, lengths=True, s0=True, **SIZES)
    ref = gpurnn.forward(case.params, case.inputs, backend=backend, **case.forward_kwargs())
    strided = np.ascontiguousarray(case.inputs.T).astype(id_dtype).T     # (T,B) view of a (B,T) array
    params = case.params.map(np.asfortranarray)
    assert not (strided.flags.c_contiguous or params.W.flags.c_contiguous)
    got = gpurnn.forward(params, strided, lengths=case.lengths, s0=np.asfortranarray(case.s0), backend=backend)
    for a, b in zip(ref, got):
        np.testing.assert_array_equal(a, b)


def test_results_stay_on_the_backend(backend):
    """Parameters given as the backend's arrays give results as the backend's arrays (no
    copy back to the host); NumPy parameters give NumPy results. Both agree."""
    be = get_backend(backend)
    case = make_case(15, lengths=True, s0=True, **SIZES)
    device_type = type(be.asarray(case.s0))
    P = case.params.map(be.asarray)
    fwd = gpurnn.forward(P, case.inputs, backend=backend, **case.forward_kwargs())
    res = gpurnn.bptt(P, case.inputs, case.targets, backend=backend, **case.kwargs())
    host = gpurnn.bptt(case.params, case.inputs, case.targets, backend=backend, **case.kwargs())
    assert all(type(a) is device_type for a in [*fwd, *res.grads, res.ds0, res.s_last])
    assert isinstance(host.grads.W, np.ndarray) and isinstance(host.ds0, np.ndarray)
    assert res.loss == host.loss
    for a, b in zip([*res.grads, res.ds0, res.s_last], [*host.grads, host.ds0, host.s_last]):
        np.testing.assert_array_equal(be.to_host(a), b)
