"""Gradients of `gpurnn.bptt` on every backend.

- exact BPTT against central finite differences of the loss (float64 parameters perturbed
  by 1e-5, the loss summed in long double), for every parameter and for s0, relative error
  (‖fd − g‖ / ‖g‖ per array) below 1e-7;
- truncated BPTT against the brute-force per-loss-term NumPy reference (tests/helpers.py),
  whose truncated objective has no finite-difference counterpart; `truncate >= T−1` is
  exactly full BPTT;
- the compiled loops against that plain per-step reference in every mode;
- float32 against float64;
- every output layout: a loss per step ("all"), at the last step ("last"), and read from a
  mean or max pool over each sequence's real states ("mean", "max").

The finite differences are taken of the NumPy reference loss, which each test first checks
equals the backend's loss, so the backend runs once per case (the simulator runs every
GPU thread in Python). Sizes shrink under the simulator, and so does the matrix (a
pairwise cover instead of the full product).
"""
import dataclasses

import numpy as np
import pytest
from conftest import SIMULATOR
from helpers import (FIELDS, assert_close, finite_difference, loss_terms, make_case, reference_bptt,
                     reference_loss, relative_error, representative)

import gpurnn
from gpurnn.backends import get_backend

# Under the simulator kernel tiles are 4 wide: n, d, k > 4 put partial tiles in every product.
SIZES = dict(T=5, B=3, n=6, d=5, k=5) if SIMULATOR else dict(T=7, B=4, n=5, d=5, k=4)
# Several full and partial tiles and thread blocks on every backend (GPU tiles are 16 wide).
MODERATE = dict(T=4, B=5, n=7, d=9, k=6) if SIMULATOR else dict(T=16, B=20, n=37, d=45, k=19)
ACTIVATIONS = ["tanh", "logistic", "relu"]
FD_RTOL = 1e-7
# Central differences of the reference loss in long double: error ≈ h²·|f'''|/6 + ε·|L|/h.
# With h = 1e-5 the worst array (a ds0 of norm 1e-5 that vanished through 7 logistic steps)
# is at 5e-9, the others near 1e-11; h = 1e-6 puts that ds0 at 5e-8 (rounding).
FD_STEP = 1e-5
MODES = "activation,output,tokens,lengths,s0"
OUTPUTS = ["all", "last", "mean", "max"]


def run(case, backend, **changes):
    return gpurnn.bptt(case.params, case.inputs, case.targets, backend=backend, **case.kwargs(**changes))


def assert_matches(result, reference, dtype):
    """A `BPTTResult` against (loss, grads by field name, ds0), with the tolerances of `dtype`."""
    loss, grads, ds0 = reference
    assert_close(result.loss, loss, dtype, "loss")
    for name in FIELDS:
        assert_close(getattr(result.grads, name), grads[name], dtype, f"d{name}")
    assert_close(result.ds0, ds0, dtype, "ds0")


@pytest.mark.parametrize(MODES, representative(activation=ACTIVATIONS, output=OUTPUTS, tokens=[True, False],
                                               lengths=[False, True], s0=[False, True]))
def test_exact_gradients_match_finite_differences(activation, output, tokens, lengths, s0, backend):
    case = make_case(1, activation=activation, output=output, tokens=tokens, lengths=lengths, s0=s0, **SIZES)
    r = run(case, backend)
    # ds0 is ∂L/∂s0 also when s0 is omitted (zeros): differentiate at explicit zeros then.
    fd_case = case if s0 else dataclasses.replace(case, s0=np.zeros((SIZES["B"], SIZES["d"])))
    assert r.loss == pytest.approx(reference_loss(fd_case), rel=1e-13)
    assert r.count == len(loss_terms(case))
    objective = (lambda: reference_loss(fd_case, np.longdouble))       # noqa: E731
    errors = {name: relative_error(finite_difference(objective, getattr(fd_case.params, name), FD_STEP),
                                   getattr(r.grads, name)) for name in FIELDS}
    errors["s0"] = relative_error(finite_difference(objective, fd_case.s0, FD_STEP), r.ds0)
    assert max(errors.values()) < FD_RTOL, errors


TRUNCATIONS = [None, 0, 1, 2, SIZES["T"] - 2]


@pytest.mark.parametrize(MODES + ",truncate", representative(
    activation=ACTIVATIONS, output=OUTPUTS, tokens=[True, False], lengths=[False, True], s0=[False, True],
    truncate=TRUNCATIONS))
def test_gradients_match_per_term_reference(activation, output, tokens, lengths, s0, truncate, backend):
    """The fused loops against the plain per-step reference, which backpropagates each loss
    term on its own through at most τ Jacobian factors (all of them for τ = None)."""
    case = make_case(2, activation=activation, output=output, tokens=tokens, lengths=lengths, s0=s0,
                     truncate=truncate, **SIZES)
    r = run(case, backend)
    assert_matches(r, reference_bptt(case), np.float64)


@pytest.mark.parametrize("output", OUTPUTS)
def test_truncation_changes_the_gradient(output, backend):
    """τ < T−1 drops paths: the result differs from full BPTT (the test above is not vacuous)."""
    case = make_case(3, output=output, s0=True, **SIZES)
    full, cut = run(case, backend), run(case, backend, truncate=1)
    assert cut.loss == full.loss
    assert relative_error(cut.grads.W, full.grads.W) > 1e-3
    assert relative_error(cut.ds0, full.ds0) > 1e-3


@pytest.mark.parametrize("output", ["all", "last", "mean"])
@pytest.mark.parametrize("lengths", [False, True])
def test_truncate_at_least_T_minus_1_is_full_bptt(output, lengths, backend):
    """τ ≥ T − 1 keeps every factor: the per-term reference walked back τ steps (its own count,
    not `bptt`'s shortcut to the exact loops) gives the exact gradients, and so does `bptt`,
    bit for bit equal to its exact run (by construction: τ ≥ T − 1 runs the exact loops)."""
    T = SIZES["T"]
    case = make_case(4, output=output, lengths=lengths, s0=True, **SIZES)
    full = run(case, backend)
    exact_loss, exact, exact_ds0 = reference_bptt(case)
    for tau in (T - 1, T, 10 * T):
        _, grads, ds0 = reference_bptt(dataclasses.replace(case, truncate=tau))
        for name in FIELDS:
            assert relative_error(grads[name], exact[name]) < 1e-13, name
            assert relative_error(getattr(full.grads, name), grads[name]) < 1e-10, name
        assert relative_error(full.ds0, ds0) < 1e-10
        r = run(case, backend, truncate=tau)
        assert r.loss == full.loss
        for name in FIELDS:
            np.testing.assert_array_equal(getattr(r.grads, name), getattr(full.grads, name), err_msg=name)
        np.testing.assert_array_equal(r.ds0, full.ds0)


@pytest.mark.parametrize("output", ["all", "last"])
def test_truncated_recurrence_with_tau_T_minus_1_equals_exact(output, backend):
    """The backend's truncated loop itself (which `bptt` bypasses for τ >= T−1) at τ = T−1
    keeps every path, so it must equal the exact loop up to rounding."""
    be = get_backend(backend)
    case = make_case(5, output=output, lengths=True, s0=True, **SIZES)
    T, B, d = SIZES["T"], SIZES["B"], SIZES["d"]
    P = case.params.map(be.asarray)
    lengths = be.asarray(case.lengths)
    XP = be.project_inputs(be.asarray(case.inputs), P.U, P.b, lengths)
    S = be.recurrence_forward(XP, P.W, be.asarray(case.s0), lengths, 0)
    rng = np.random.default_rng(0)
    g = rng.normal(size=(T, B, d)) * (np.arange(T)[:, None] < case.lengths[None, :])[..., None]
    G, g_last = (be.asarray(g), None) if output == "all" else (None, be.asarray(g[0]))
    exact = be.recurrence_backward(G, g_last, S, P.W, lengths, 0, None)
    cut = be.recurrence_backward(G, g_last, S, P.W, lengths, 0, T - 1)
    for name, a, b in zip(("delta", "ds0"), exact, cut):
        assert_close(be.to_host(b), be.to_host(a), np.float64, name)


@pytest.mark.parametrize("output", ["all", "last"])
@pytest.mark.parametrize("truncate", [None, 1])
def test_token_ids_equal_one_hot_dense_inputs(output, truncate, backend):
    """The row gather / scatter-add path of token ids equals the GEMM path on one-hot rows."""
    case = make_case(6, output=output, lengths=True, s0=True, truncate=truncate, **SIZES)
    T, B, n = SIZES["T"], SIZES["B"], SIZES["n"]
    active = np.arange(T)[:, None] < case.lengths[None, :]
    one_hot = np.zeros((T, B, n))
    one_hot[active] = np.eye(n)[case.inputs[active]]
    a, b = run(case, backend), run(dataclasses.replace(case, inputs=one_hot), backend)
    assert_matches(a, (b.loss, dict(b.grads.items()), b.ds0), np.float64)


@pytest.mark.parametrize("activation,output,tokens,truncate",
                         [("tanh", "all", True, None), ("logistic", "last", False, None),
                          ("relu", "all", False, 2), ("tanh", "last", True, 1), ("tanh", "mean", False, 2),
                          ("relu", "max", False, None)])
def test_float32_agrees_with_float64(activation, output, tokens, truncate, backend):
    """Within TOL[float32]: |g32 − g64| <= 2e-5·max(1, max|g64|) + 2e-4·|g64|."""
    case = make_case(7, activation=activation, output=output, tokens=tokens, lengths=True, s0=True,
                     truncate=truncate, **SIZES)
    r64, r32 = run(case, backend), run(case.astype(np.float32), backend)
    assert r32.loss == pytest.approx(r64.loss, rel=1e-5)
    assert all(a.dtype == np.float32 for a in [*r32.grads, r32.ds0, r32.s_last])
    assert_matches(r32, (r64.loss, dict(r64.grads.items()), r64.ds0), np.float32)
    assert_close(r32.s_last, r64.s_last, np.float32, "s_last")


@pytest.mark.parametrize("output,truncate", [("all", None), ("last", 1), ("mean", 2)])
def test_sequences_of_a_batch_are_independent(output, truncate, backend):
    """A batch's gradients are the sums of its sequences' gradients taken one at a time;
    its ds0 and s_last rows are theirs."""
    case = make_case(8, output=output, lengths=True, s0=True, truncate=truncate, **SIZES)
    whole = run(case, backend)
    parts = [run(dataclasses.replace(case, inputs=case.inputs[:, [i]], targets=case.targets[..., [i]],
                                     lengths=case.lengths[[i]], s0=case.s0[[i]]), backend)
             for i in range(SIZES["B"])]
    summed = {name: sum(getattr(p.grads, name) for p in parts) for name in FIELDS}
    assert_matches(whole, (sum(p.loss for p in parts), summed, np.concatenate([p.ds0 for p in parts])), np.float64)
    assert_close(whole.s_last, np.concatenate([p.s_last for p in parts]), np.float64, "s_last")


def test_large_logits_stay_finite(backend):
    """The softmax cross-entropy subtracts the row maximum: logits near ±1000 give the exact loss."""
    case = make_case(9, s0=True, **SIZES)
    case.params.c[:] = 1000.0 * np.linspace(-1, 1, SIZES["k"])
    r = run(case, backend)
    assert np.isfinite(r.loss) and r.loss > 1000
    assert_matches(r, reference_bptt(case), np.float64)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("activation,output,tokens,truncate",
                         [("tanh", "all", True, None), ("logistic", "last", False, 2), ("relu", "all", False, 3),
                          ("tanh", "max", False, 3)])
def test_moderate_sizes_match_per_term_reference(activation, output, tokens, truncate, dtype, backend):
    """Sizes past one tile / block / vector width, in both dtypes, against the reference."""
    case = make_case(20, activation=activation, output=output, tokens=tokens, lengths=True, s0=True,
                     truncate=truncate, **MODERATE)
    r = run(case.astype(dtype), backend)
    assert_matches(r, reference_bptt(case), dtype)


@pytest.mark.parametrize("output,truncate,T,all_zero", representative(
    output=["all", "last"], truncate=[None, 0, 1], T=[1, 3], all_zero=[False, True]))
def test_edge_lengths_and_single_steps(output, truncate, T, all_zero, backend):
    """T = 1, and every sequence of length 0 (output "last" then reads s0 alone, "all" has no
    loss) or lengths (0, T, T−1), against the per-term reference."""
    case = make_case(21, output=output, s0=True, truncate=truncate, **{**SIZES, "T": T})
    B = SIZES["B"]
    lengths = np.zeros(B, np.int64) if all_zero else np.resize([0, T, T - 1], B)
    case = dataclasses.replace(case, lengths=lengths)
    r = run(case, backend)
    assert r.count == len(loss_terms(case))
    assert_matches(r, reference_bptt(case), np.float64)
