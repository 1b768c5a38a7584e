"""Pooled outputs ("mean", "max" over each sequence's real states) beyond the gradient suite
(tests/test_gradients.py, tests/test_golden.py): the backends' pool operations against each
other, ties, lengths of 0, `output_logits`, the trainer's evaluation; recurrent initialisations."""

import numpy as np
import pytest
from helpers import FIELDS, assert_close, make_case

import gpurnn
from gpurnn.backends import get_backend
from gpurnn.bptt import output_logits
from gpurnn.cell import random_orthogonal
from gpurnn.train import TrainConfig, Trainer


@pytest.mark.parametrize("mode", ["mean", "max"])
def test_pool_operations_match_the_cpu_backend(mode, backend):
    """pool_states and unpool_grad on `backend` against the CPU's, ties and padding included."""
    rng = np.random.default_rng(0)
    T, B, d = 5, 3, 6
    S = rng.normal(size=(T + 1, B, d))
    S[2, 0] = S[4, 0]                                   # ties: the first (step 2) wins
    S[1:, 1, :2] = 7.0                                  # padding (steps past length 2) must not count
    lengths = np.array([T, 1, 2])
    S[3:, 2] = 100.0
    dP = rng.normal(size=(B, d))
    cpu, be = get_backend("cpu"), get_backend(backend)
    P_ref, arg_ref = cpu.pool_states(S[1:], lengths, mode)          # the states s_1..s_T
    P, arg = be.pool_states(be.asarray(S[1:]), be.asarray(lengths), mode)
    assert_close(be.to_host(P), P_ref, np.float64, "P")
    G_ref = cpu.unpool_grad(dP, lengths, arg_ref, mode, T)
    G = be.unpool_grad(be.asarray(dP), be.asarray(lengths), arg, mode, T)
    assert_close(be.to_host(G), G_ref, np.float64, "G")
    if mode == "max":
        np.testing.assert_array_equal(be.to_host(arg), arg_ref)
        assert (arg_ref[2] < 2).all() and (arg_ref[1] == 0).all()
        np.testing.assert_array_equal(np.take_along_axis(S[1:], arg_ref[None], 0)[0], P_ref)
    else:
        np.testing.assert_allclose(P_ref[2], S[1:3, 2].mean(axis=0))
        np.testing.assert_allclose(G_ref.sum(axis=0), dP)


def test_max_pool_ties_send_the_gradient_to_the_first_step(backend):
    """W = 0 and the same input at every step make every state equal: the max's gradient goes
    to step 1 alone, exactly as a model reading s_1, so dW = s0ᵀ Δ_1 = 0."""
    case = make_case(30, tokens=False, output="max", **dict(T=4, B=2, n=3, d=4, k=3))
    case.params.W[:] = 0
    inputs = np.repeat(case.inputs[:1], 4, axis=0)
    tied = gpurnn.bptt(case.params, inputs, case.targets, output="max", backend=backend)
    first = gpurnn.bptt(case.params, inputs[:1], case.targets, output="last", backend=backend)
    for name in FIELDS:
        assert_close(getattr(tied.grads, name), getattr(first.grads, name), np.float64, name)
    assert np.abs(tied.grads.W).max() == 0


@pytest.mark.parametrize("output", ["mean", "max"])
def test_pooled_outputs_refuse_a_sequence_of_length_zero(output):
    case = make_case(31, output=output, lengths=True)
    lengths = case.lengths.copy()
    lengths[2] = 0
    with pytest.raises(ValueError, match=r"lengths must be >= 1 for output='%s'.*sequence 2" % output):
        gpurnn.bptt(case.params, case.inputs, case.targets, lengths=lengths, output=output, backend="cpu")


@pytest.mark.parametrize("output", ["last", "mean", "max"])
def test_output_logits_read_the_pool_of_the_real_states(output, backend):
    case = make_case(32, tokens=False, output=output, lengths=True, s0=True)
    states, _, s_last = gpurnn.forward(case.params, case.inputs, backend=backend, **case.forward_kwargs())
    real = np.arange(states.shape[0])[:, None, None] < case.lengths[None, :, None]
    if output == "last":
        pooled = s_last
    elif output == "mean":
        pooled = np.where(real, states, 0).sum(0) / case.lengths[:, None]
    else:
        pooled = np.where(real, states, -np.inf).max(0)
    logits, carry = output_logits(case.params, case.inputs, output=output, backend=backend, **case.forward_kwargs())
    assert_close(logits, pooled @ case.params.V + case.params.c, np.float64, "logits")
    assert_close(carry, s_last, np.float64, "s_last")


def test_trainer_evaluates_a_pooled_model_with_its_training_loss():
    case = make_case(33, tokens=False, output="max", lengths=True)
    trainer = Trainer(case.params, TrainConfig(output="max", backend="cpu"))
    batch = [(case.inputs, case.targets, case.lengths)]

    class Source:
        def __len__(self):
            return 1

        def iter_epoch(self, rng=None):
            yield gpurnn.batches.Batch(*batch[0])

    result = gpurnn.bptt(case.params, case.inputs, case.targets, lengths=case.lengths, output="max", backend="cpu")
    stats = trainer.evaluate(Source())
    assert stats.count == result.count and stats.loss == pytest.approx(result.loss / result.count, rel=1e-12)


@pytest.mark.parametrize("d", [1, 2, 7])
def test_orthogonal_init_is_the_q_of_a_qr_whose_r_has_a_positive_diagonal(d):
    """`random_orthogonal` is Haar-distributed because G = W R with R upper triangular and R's
    diagonal positive, G the Gaussian matrix it draws (the QR decomposition made unique,
    whatever sign convention LAPACK's QR follows)."""
    for seed in range(5):
        W = random_orthogonal(d, np.random.default_rng(seed))
        R = W.T @ np.random.default_rng(seed).standard_normal((d, d))
        np.testing.assert_allclose(np.tril(R, -1), 0, atol=1e-12)
        assert (np.diag(R) > 0).all(), (seed, np.diag(R))


def test_recurrent_initialisations():
    uniform = gpurnn.init_params(3, 8, 2, seed=4, dtype="float64")
    orth = gpurnn.init_params(3, 8, 2, seed=4, dtype="float64", recurrent="orthogonal")
    eye = gpurnn.init_params(3, 8, 2, seed=4, recurrent="identity")
    np.testing.assert_allclose(orth.W.T @ orth.W, np.eye(8), atol=1e-12)
    assert not np.allclose(orth.W, np.eye(8)) and not np.allclose(orth.W, uniform.W)
    np.testing.assert_array_equal(orth.U, uniform.U)          # only W changes
    np.testing.assert_array_equal(orth.V, uniform.V)
    np.testing.assert_array_equal(orth.W, gpurnn.init_params(3, 8, 2, seed=4, dtype="float64",
                                                             recurrent="orthogonal").W)
    assert eye.W.dtype == np.float32 and np.array_equal(eye.W, np.eye(8))
    with pytest.raises(ValueError, match="recurrent must be one of"):
        gpurnn.init_params(3, 8, 2, recurrent="xavier")
    assert isinstance(orth, gpurnn.Params)


@pytest.mark.parametrize("output", ["last", "mean", "max"])
def test_gradient_profile_of_a_pooled_model_adds_up_to_bptt(output):
    """Σ_t ∂L_t/∂s_k is ∂L/∂s_k: times σ'(a_k) and summed over steps and sequences it is bptt's db;
    `totals` holds its norm per step."""
    from gpurnn.diagnostics import gradient_profile, sigma_prime_states

    case = make_case(34, tokens=False, output=output, s0=True)
    profile = gradient_profile(case.params, case.inputs, case.targets, s0=case.s0, output=output,
                               keep_vectors=True, backend="cpu")
    per_step = np.nansum(profile.vectors, axis=0)                     # (T,B,d): ∂L/∂s_k
    np.testing.assert_allclose(profile.totals, np.sqrt((per_step ** 2).sum(axis=(1, 2))), rtol=1e-12)
    states = gpurnn.forward(case.params, case.inputs, s0=case.s0).states
    db = (per_step * sigma_prime_states(states, "tanh")).sum(axis=(0, 1))
    r = gpurnn.bptt(case.params, case.inputs, case.targets, s0=case.s0, output=output, backend="cpu")
    assert_close(db, r.grads.b, np.float64, "db")
