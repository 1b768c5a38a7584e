"""gpurnn.recurrence: the recurrence alone (no output layer), against float64 finite
differences, token ids against their one-hot inputs, gradients past a length ignored, truncation
with a final-state gradient against the per-term reference, bad input."""
import numpy as np
import pytest
from helpers import reference_layer, reference_layer_backprop

from gpurnn import recurrence
from gpurnn.cell import Cell

T, B, N, D = 4, 3, 2, 3
LENGTHS = np.array([4, 2, 0])


def _problem(seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    U, W, b = rng.normal(0, 0.6, (N, D)), rng.normal(0, 0.6, (D, D)), rng.normal(0, 0.3, D)
    x, s0 = rng.normal(size=(T, B, N)), rng.normal(size=(B, D))
    G, g_last = rng.normal(size=(T, B, D)), rng.normal(size=(B, D))
    return [a.astype(dtype) for a in (x, U, W, b, s0, G, g_last)]


def _loss(x, U, W, b, s0, G, g_last, activation):
    """Σ G ⊙ s_t (steps within each length) + Σ g_last ⊙ s_last."""
    S = recurrence.forward(x, U, W, b, s0=s0, lengths=LENGTHS, activation=activation, backend="cpu")
    active = np.arange(T)[:, None] < LENGTHS[None, :]
    return float((G * S[1:] * active[:, :, None]).sum() + (g_last * S[T]).sum())


@pytest.mark.parametrize("activation", ["tanh", "logistic"])
def test_gradients_equal_finite_differences(activation):
    x, U, W, b, s0, G, g_last = _problem()
    S = recurrence.forward(x, U, W, b, s0=s0, lengths=LENGTHS, activation=activation, backend="cpu")
    grads = recurrence.backward(x, U, W, S, grad_states=G, grad_last=g_last, lengths=LENGTHS,
                                activation=activation, backend="cpu")
    arrays = {"dX": x, "dU": U, "dW": W, "db": b, "ds0": s0}
    for name, array in arrays.items():
        numeric = np.zeros_like(array)
        for index in np.ndindex(array.shape):
            keep = array[index]
            array[index] = keep + 1e-6
            up = _loss(x, U, W, b, s0, G, g_last, activation)
            array[index] = keep - 1e-6
            down = _loss(x, U, W, b, s0, G, g_last, activation)
            array[index] = keep
            numeric[index] = (up - down) / 2e-6
        np.testing.assert_allclose(getattr(grads, name), numeric, rtol=1e-7, atol=1e-8, err_msg=name)
    assert np.all(grads.dX[2:, 1] == 0) and np.all(grads.dX[:, 2] == 0)     # nothing past a length
    np.testing.assert_allclose(S[T, 2], s0[2])                              # length 0 keeps s0


def test_token_ids_equal_one_hot_inputs_and_gradients_past_lengths_are_ignored(backend):
    x, U, W, b, s0, G, g_last = _problem(1, np.float32)
    ids = np.random.default_rng(2).integers(0, N, (T, B))
    one_hot = np.eye(N, dtype=np.float32)[ids]
    S_ids = recurrence.forward(ids, U, W, b, s0=s0, lengths=LENGTHS, backend=backend)
    S_dense = recurrence.forward(one_hot, U, W, b, s0=s0, lengths=LENGTHS, backend=backend)
    np.testing.assert_allclose(S_ids, S_dense, rtol=1e-6, atol=1e-6)
    G_noisy = G.copy()
    G_noisy[np.arange(T)[:, None] >= LENGTHS[None, :]] = np.nan     # past each length: never read
    common = dict(grad_last=g_last, lengths=LENGTHS, truncate=1, backend=backend)
    from_ids = recurrence.backward(ids, U, W, S_ids, grad_states=G_noisy, **common)
    from_dense = recurrence.backward(one_hot, U, W, S_dense, grad_states=G, **common)
    assert from_ids.dX is None and from_dense.dX.shape == (T, B, N)
    for name in ("ds0", "dU", "dW", "db"):
        np.testing.assert_allclose(getattr(from_ids, name), getattr(from_dense, name), rtol=1e-5, atol=1e-5,
                                   err_msg=name)


@pytest.mark.parametrize("change,message", [
    (dict(U=np.zeros((N, D), np.float32)), "U, W and b must share one dtype"),
    (dict(W=np.zeros((D, D + 1))), r"W must have shape \(3, 3\)"),
    (dict(S=np.zeros((T, B, D))), r"S must be an array of shape \(T\+1, B, d\) = \(5, 3, 3\)"),
    (dict(grad_states=np.zeros((T, B, D), np.float32)), "grad_states must have the weights' dtype float64"),
    (dict(grad_last=np.zeros((B, D + 1))), r"grad_last must be an array of shape \(B, d\) = \(3, 3\)"),
    (dict(truncate=-1), "truncate must be None or an int >= 0"),
    (dict(lengths=np.array([5, 1, 1])), r"lengths must lie in \[0, T\]"),
])
def test_bad_arguments_are_named(change, message):
    x, U, W, b, s0, G, g_last = _problem()
    args = dict(x=x, U=U, W=W, S=np.zeros((T + 1, B, D)), grad_states=G, grad_last=g_last) | change
    with pytest.raises(ValueError, match=message):
        recurrence.backward(args.pop("x"), args.pop("U"), args.pop("W"), args.pop("S"), backend="cpu", **args)
    with pytest.raises(ValueError, match=r"b must have shape \(3,\)"):
        recurrence.forward(x, U, W, np.zeros(D + 1), backend="cpu")


@pytest.mark.parametrize("truncate", [None, 0, 1, 2, T - 1])
def test_step_and_final_state_gradients_together_match_the_per_term_reference(truncate, backend):
    """grad_states and grad_last at once (a loss on every s_t and on s_last, as `gpurnn.torch.RNN`
    with a loss on h_n gives): both are loss terms at a sequence's last step, so they add there,
    and each term keeps at most τ Jacobian factors (tests/helpers.py's per-term reference)."""
    x, U, W, b, s0, G, g_last = _problem(3)
    cell = Cell(U, W, b)
    S = recurrence.forward(x, U, W, b, s0=s0, lengths=LENGTHS, backend=backend)
    got = recurrence.backward(x, U, W, S, grad_states=G, grad_last=g_last, lengths=LENGTHS, truncate=truncate,
                              backend=backend)
    for i, L in enumerate(LENGTHS):
        _, Ss = reference_layer([cell], x[:L, i], [s0[i]], "tanh")
        np.testing.assert_allclose(S[:L + 1, i], Ss[0], rtol=1e-12, atol=1e-14)
    grads, ds0, dX = {f: np.zeros_like(a) for f, a in zip("UWb", cell)}, np.zeros_like(s0), np.zeros_like(x)
    for i, L in enumerate(LENGTHS):
        dx, (ds0[i],), (cell_grads,) = reference_layer_backprop([cell], x[:L, i], [S[:L + 1, i]], G[:L, i],
                                                                g_last[i][None], "tanh", truncate)
        dX[:L, i] = dx
        for f in grads:
            grads[f] += cell_grads[f]
    for name, want in (("dU", grads["U"]), ("dW", grads["W"]), ("db", grads["b"]), ("ds0", ds0), ("dX", dX)):
        np.testing.assert_allclose(getattr(got, name), want, rtol=1e-10, atol=1e-12, err_msg=name)
