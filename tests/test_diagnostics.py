"""gpurnn.diagnostics against brute force: explicit products, finite differences, bptt itself."""
from types import SimpleNamespace

import numpy as np
import pytest

import gpurnn
from gpurnn import diagnostics as D
from gpurnn.cell import reference_sigma_prime, reference_step

ACTIVATIONS = ("tanh", "logistic", "relu")


def _model(activation="tanh", d=4, n=3, k=3, T=5, B=2, scale=1.0, seed=0):
    params = gpurnn.init_params(n, d, k, seed=seed, dtype="float64", scale=0.8, recurrent_scale=scale)
    rng = np.random.default_rng(seed + 1)
    params.b[:] = rng.uniform(0.1, 0.3, d)      # keeps relu units active at the start
    inputs = rng.integers(0, n, (T, B))
    targets = rng.integers(0, k, (T, B))
    return params, inputs, targets


def _states(params, inputs, activation, s0):
    """s_1..s_T of one sequence (inputs (T,)) by the cell's reference step, and the step function."""
    def step(s, t, W=params.W):
        x = np.eye(params.n_in)[inputs[t]]
        return reference_step(params.cell(0)._replace(W=W), x, s, activation)[1]

    states = [s0]
    for t in range(len(inputs)):
        states.append(step(states[-1], t))
    return np.array(states), step


def _fd_jacobian(step, states, k, t, eps=1e-6):
    """∂s_t/∂s_k (column Jacobian) by central differences, running the loop from s_k."""
    d = states.shape[1]
    J = np.zeros((d, d))
    for r in range(d):
        ends = []
        for sign in (1, -1):
            s = states[k].copy()
            s[r] += sign * eps
            for j in range(k, t):
                s = step(s, j)
            ends.append(s)
        J[:, r] = (ends[0] - ends[1]) / (2 * eps)
    return J


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_jacobian_norms_equal_products_and_finite_differences(activation):
    params, inputs, _ = _model(activation, scale=0.9)
    norms = D.jacobian_norms(params, inputs, activation=activation, sequence=1, backend="cpu")
    states, step = _states(params, inputs[:, 1], activation, np.zeros(4))
    T = len(inputs)
    for t in range(1, T + 1):
        product = np.eye(4)
        for k in range(t, 0, -1):          # product = ∂s_t/∂s_k, built from the left
            if k < t:
                s = states[k + 1]
                product = product @ (reference_sigma_prime(activation, s)[:, None] * params.W.T)
            assert norms[t - 1, k - 1] == pytest.approx(np.linalg.norm(product, 2), rel=1e-10, abs=1e-12)
            if activation != "relu":           # relu's kink makes differences one-sided
                fd = _fd_jacobian(step, states, k, t)
                np.testing.assert_allclose(product, fd, rtol=1e-6, atol=1e-8)
    assert np.isnan(norms[np.triu_indices(T, 1)]).all()


def test_profile_equals_bptt_ds0_on_each_suffix(backend):
    """‖∂L_t/∂s_k‖ is bptt's ds0 for the inputs after step k, s0 = s_k and a target at t only."""
    params, inputs, targets = _model(T=5, B=2)
    profile = D.gradient_profile(params, inputs, targets, backend=backend)
    states = gpurnn.forward(params, inputs, backend="cpu").states
    T = len(inputs)
    logits = gpurnn.forward(params, inputs, backend="cpu").logits
    for t in range(1, T + 1):
        p = np.exp(logits[t - 1] - logits[t - 1].max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        p[np.arange(2), targets[t - 1]] -= 1                     # ŷ − onehot
        assert profile.norms[t - 1, t - 1] == pytest.approx(np.linalg.norm(p @ params.V.T), rel=1e-9)
        for k in range(1, t):
            only_t = np.full((t - k, 2), -1)
            only_t[-1] = targets[t - 1]
            result = gpurnn.bptt(params, inputs[k:t], only_t, s0=states[k - 1], backend="cpu")
            assert profile.norms[t - 1, k - 1] == pytest.approx(np.linalg.norm(result.ds0), rel=1e-9, abs=1e-14)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_bound_holds_on_every_measured_pair(activation):
    for scale, seed in ((0.3, 0), (1.0, 1), (2.0, 2)):
        params, inputs, targets = _model(activation, d=4, T=8, B=3, scale=scale, seed=seed)
        norms = D.jacobian_norms(params, inputs, activation=activation, backend="cpu")
        assert D.bound_violations(norms, params.W, activation) == 0
        profile = D.gradient_profile(params, inputs, targets, activation=activation, backend="cpu")
        assert D.bound_violations(profile.norms, params.W, activation, relative_to=np.diag(profile.norms)) == 0


def test_bound_violations_counts_a_pair_above_the_bound():
    W = np.eye(2) * 0.5
    norms = np.array([[1.0, np.nan], [0.9, 1.0]])
    assert D.bound_violations(norms, W, "tanh") == 1


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_explicit_dW_tensor_matches_finite_differences(activation):
    params, inputs, _ = _model(activation, d=3, T=4, B=2, scale=0.8)
    s0 = np.random.default_rng(5).uniform(-0.5, 0.5, (2, 3))
    states, step = _states(params, inputs[:, 1], activation, s0[1])
    eps = 1e-6
    for k in (1, 3):
        E = D.explicit_dW(params, inputs, k, activation=activation, s0=s0, sequence=1, backend="cpu")
        for r in range(3):
            for q in range(3):
                shifted = [params.W.copy(), params.W.copy()]
                shifted[0][r, q] += eps
                shifted[1][r, q] -= eps
                fd = (step(states[k - 1], k - 1, shifted[0]) - step(states[k - 1], k - 1, shifted[1])) / (2 * eps)
                np.testing.assert_allclose(E[:, q, r], fd, rtol=1e-6, atol=1e-9)


def test_chain_rule_through_profile_and_tensor_gives_bptt_dW():
    """dW[r,q] = Σ_{k≤t} Σ_p (∂L_t/∂s_k)_p E_k[p,q,r] for one sequence."""
    params, inputs, targets = _model(d=3, T=4, B=1)
    profile = D.gradient_profile(params, inputs, targets, keep_vectors=True, backend="cpu")
    total = np.zeros((3, 3))
    for k in range(1, 5):
        E = D.explicit_dW(params, inputs, k, backend="cpu")
        g = profile.vectors[k - 1:, k - 1, 0].sum(axis=0)        # Σ_{t ≥ k} ∂L_t/∂s_k
        total += np.einsum("p,pqr->rq", g, E)
    np.testing.assert_allclose(total, gpurnn.bptt(params, inputs, targets, backend="cpu").grads.W, rtol=1e-10)


def test_power_iteration_agrees_with_svd():
    rng = np.random.default_rng(3)
    M = rng.standard_normal((6, 80, 80))
    exact = D.batched_spectral_norm(M, method="svd")
    np.testing.assert_allclose(D.batched_spectral_norm(M, method="auto"), exact, rtol=1e-6)
    params, inputs, _ = _model(d=70, T=4, B=1, scale=0.2)
    np.testing.assert_allclose(D.jacobian_norms(params, inputs, method="power", backend="cpu"),
                               D.jacobian_norms(params, inputs, method="svd", backend="cpu"), rtol=1e-6)
    assert D.batched_spectral_norm(np.zeros((2, 3, 3)), method="power").tolist() == [0.0, 0.0]


def test_jacobian_norms_up_to_max_lag():
    params, inputs, _ = _model(T=6)
    full = D.jacobian_norms(params, inputs, backend="cpu")
    short = D.jacobian_norms(params, inputs, max_lag=2, backend="cpu")
    lag = np.subtract.outer(np.arange(6), np.arange(6))
    np.testing.assert_array_equal(short[lag <= 2], full[lag <= 2])
    assert np.isnan(short[lag > 2]).all()


def test_spectral_quantities_and_bound():
    W = np.array([[0.0, 2.0], [0.0, 0.5]])
    assert D.spectral_radius(W) == pytest.approx(0.5)
    assert D.spectral_norm(W) == pytest.approx(np.linalg.norm(W, 2))
    np.testing.assert_allclose(D.lecture_bound(W, "logistic", [0, 1, 2]), (0.25 * D.spectral_norm(W)) ** np.arange(3))


def test_profile_summary_by_lag():
    matrix = np.array([[1.0, np.nan, np.nan], [0.5, 2.0, np.nan], [0.25, 0.5, 4.0]])
    np.testing.assert_allclose(D.summarize_by_lag(matrix, "max"), [4.0, 0.5, 0.25])
    np.testing.assert_allclose(D.summarize_by_lag(matrix, "geomean"), [2.0, 0.5, 0.25])
    profile = D.GradientProfile(matrix)
    np.testing.assert_allclose(profile.relative()[2], [0.0625, 0.125, 1.0])
    with pytest.raises(ValueError, match="statistic"):
        D.summarize_by_lag(matrix, "median")


def test_gradient_norm_log_records_each_step(tmp_path):
    params, inputs, targets = _model(T=4, B=2)
    log = D.GradientNormLog()
    for step in range(3):
        result = gpurnn.bptt(params, inputs, targets, backend="cpu")
        log.record(step, result.grads, loss=result.loss)
    assert log.column("norm")[0] == pytest.approx(gpurnn.global_norm(result.grads))
    assert log.column("norm_W")[1] == pytest.approx(np.linalg.norm(result.grads.W))
    log.on_grads(None, 3, result.grads)
    log.on_step(None, SimpleNamespace(step=3, loss=0.5, grad_norm=2.0))
    log.on_step(None, SimpleNamespace(step=4, loss=0.25, grad_norm=1.0))
    np.testing.assert_allclose(log.column("loss")[3:], [0.5, 0.25])
    assert log.column("step").tolist() == [0, 1, 2, 3, 4] and np.isnan(log.column("norm_W")[4])
    log.save_csv(tmp_path / "log.csv")
    assert (tmp_path / "log.csv").read_text().splitlines()[0].startswith("step,loss,norm,norm_U")
    with pytest.raises(ValueError, match="name"):
        log.column("norm_X")


def test_bad_arguments_are_named():
    params, inputs, _ = _model()
    with pytest.raises(ValueError, match="sequence"):
        D.jacobian_norms(params, inputs, sequence=5, backend="cpu")
    with pytest.raises(ValueError, match="k must"):
        D.explicit_dW(params, inputs, 0, backend="cpu")
    with pytest.raises(ValueError, match="max_lag"):
        D.jacobian_norms(params, inputs, max_lag=-1, backend="cpu")
    with pytest.raises(ValueError, match="method"):
        D.batched_spectral_norm(np.zeros((1, 2, 2)), method="qr")


def test_measure_flow_sets_measurements_beside_the_bound():
    params, inputs, targets = _model(T=6, B=2, scale=0.7)
    flow = D.measure_flow(params, inputs, targets, backend="cpu")
    norms = D.jacobian_norms(params, inputs, backend="cpu")
    assert flow.jacobian_max[2] == pytest.approx(np.nanmax(np.diagonal(norms, offset=-2)))
    assert flow.rho == pytest.approx(D.spectral_radius(params.W)) and flow.norm >= flow.rho
    np.testing.assert_allclose(flow.bound, (flow.gamma * flow.norm) ** np.arange(6))
    np.testing.assert_allclose(flow.radius_rate, (flow.gamma * flow.rho) ** np.arange(6))
    assert flow.violations == 0 and flow.profile_geomean[0] == pytest.approx(1.0)


@pytest.mark.cuda
def test_diagnostics_on_gpu_arrays_match_the_cpu():
    """With CuPy parameters the propagation runs on the GPU; the numbers match the CPU's."""
    from gpurnn.backends import get_backend

    be = get_backend("cuda")
    params, inputs, targets = _model(d=70, T=12, B=3, scale=0.3)
    dev = params.map(be.asarray)
    on_gpu = D.gradient_profile(dev, be.asarray(inputs), be.asarray(targets), backend="cuda")
    on_cpu = D.gradient_profile(params, inputs, targets, backend="cpu")
    np.testing.assert_allclose(on_gpu.norms, on_cpu.norms, rtol=1e-9)
    for method in ("svd", "power"):
        np.testing.assert_allclose(D.jacobian_norms(dev, be.asarray(inputs), method=method, backend="cuda"),
                                   D.jacobian_norms(params, inputs, method="svd", backend="cpu"), rtol=1e-6)
