"""Gradient clipping (optax's tests): the norm it leaves, the direction it keeps, idempotence,
the norm it reports, non-finite norms refused, value clamping, bad limits refused. Runs on
the backend's own arrays."""
import math

import numpy as np
import pytest

import gpurnn
from gpurnn.backends import get_backend

DTYPES = [np.float64, np.float32]
RTOL = {np.float64: 1e-12, np.float32: 1e-6}


def grads_on(backend, dtype, seed=0, scale=3.0):
    """Random gradients (n=5, d=4, k=3) as the backend's arrays, and their host copies."""
    rng = np.random.default_rng(seed)
    host = gpurnn.Params(*(scale * rng.normal(size=shape).astype(dtype)
                           for shape in ((5, 4), (4, 4), (4, 3), (4,), (3,))))
    return host.map(get_backend(backend).asarray), host


def to_host(backend, params):
    return params.map(get_backend(backend).to_host)


def norm_of(host):
    return math.sqrt(sum(float(np.sum(np.asarray(g, np.float64) ** 2)) for g in host))


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
def test_global_norm_is_the_norm_over_all_parameters(dtype, backend):
    grads, host = grads_on(backend, dtype)
    flat = np.concatenate([np.asarray(g, np.float64).ravel() for g in host])
    assert gpurnn.global_norm(grads) == pytest.approx(np.linalg.norm(flat), rel=1e-14)


@pytest.mark.parametrize("ratio", [0.1, 0.5, 0.999, 1.0, 2.0])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
def test_clip_grad_norm_leaves_min_norm_and_keeps_direction(ratio, dtype, backend):
    grads, host = grads_on(backend, dtype)
    norm = norm_of(host)
    max_norm = ratio * norm
    clipped, before = gpurnn.clip_grad_norm(grads, max_norm)
    assert before == pytest.approx(norm, rel=1e-14)
    out = to_host(backend, clipped)
    assert norm_of(out) == pytest.approx(min(norm, max_norm), rel=RTOL[dtype])
    factor = min(1.0, max_norm / norm)
    for name, g in out.items():
        assert g.dtype == dtype and g.shape == getattr(host, name).shape, name
        np.testing.assert_allclose(g, factor * getattr(host, name), rtol=RTOL[dtype], atol=0, err_msg=name)
    np.testing.assert_array_equal(to_host(backend, grads).W, host.W)   # the input is left as it was


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
def test_clip_grad_norm_is_idempotent(dtype, backend):
    grads, host = grads_on(backend, dtype)
    max_norm = 0.3 * norm_of(host)
    once, _ = gpurnn.clip_grad_norm(grads, max_norm)
    twice, norm_again = gpurnn.clip_grad_norm(once, max_norm)
    assert norm_again == pytest.approx(max_norm, rel=RTOL[dtype])
    for a, b in zip(to_host(backend, once), to_host(backend, twice)):
        np.testing.assert_allclose(b, a, rtol=RTOL[dtype], atol=0)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
def test_small_gradients_are_left_alone_bit_for_bit(dtype, backend):
    """Below the threshold (even just below) both clippings return every entry unchanged, and a
    trainer step clipped at a large max_norm or value equals an unclipped one, bit for bit."""
    from gpurnn.batches import Batch
    from gpurnn.train import TrainConfig, Trainer

    grads, host = grads_on(backend, dtype)
    largest = max(float(np.abs(g).max()) for g in host)
    for max_norm in (norm_of(host) * (1 + 1e-9), 1e30):
        clipped, _ = gpurnn.clip_grad_norm(grads, max_norm)
        for name, g in to_host(backend, clipped).items():
            np.testing.assert_array_equal(g, getattr(host, name), err_msg=name)
    for name, g in to_host(backend, gpurnn.clip_grad_value(grads, largest * (1 + 1e-6))).items():
        np.testing.assert_array_equal(g, getattr(host, name), err_msg=name)
    batch = Batch(np.array([[0, 1], [2, 3], [1, 0]]), np.array([[1, 2], [0, 1], [2, 0]]))
    after = {}
    for clip, extra in (("none", {}), ("norm", {"max_norm": 1e6}), ("value", {"clip_value": 1e6})):
        trainer = Trainer(gpurnn.init_params(4, 5, 3, seed=2, dtype=dtype),
                          TrainConfig(clip=clip, backend=backend, optimizer="sgd", lr=0.5, **extra))
        trainer.step(batch)
        after[clip] = trainer.host_params()
    for clip in ("norm", "value"):
        for name, p in after[clip].items():
            np.testing.assert_array_equal(p, getattr(after["none"], name), err_msg=f"{clip} {name}")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_clip_grad_norm_refuses_non_finite_gradients(bad, backend):
    _, host = grads_on(backend, np.float64)
    host.V[1, 2] = bad
    grads = host.map(get_backend(backend).asarray)
    with pytest.raises(gpurnn.NonFiniteGradientError, match="norm"):
        gpurnn.clip_grad_norm(grads, 1.0)
    assert issubclass(gpurnn.NonFiniteGradientError, ValueError)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
def test_clip_grad_value_clamps_each_entry(dtype, backend):
    grads, host = grads_on(backend, dtype)
    limit = 2.0
    out = to_host(backend, gpurnn.clip_grad_value(grads, limit))
    for name, g in out.items():
        ref = getattr(host, name)
        assert g.dtype == dtype and g.shape == ref.shape, name
        np.testing.assert_array_equal(g, np.clip(ref, -limit, limit), err_msg=name)
    assert any((np.abs(g) > limit).any() for g in host)                  # something was clamped
    again = to_host(backend, gpurnn.clip_grad_value(out.map(get_backend(backend).asarray), limit))
    for a, b in zip(out, again):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("bad", [0, -1.0, np.nan, np.inf, True, "1", None])
def test_bad_limits_are_refused(bad):
    _, host = grads_on("cpu", np.float64)
    with pytest.raises(ValueError, match="max_norm"):
        gpurnn.clip_grad_norm(host, bad)
    with pytest.raises(ValueError, match="limit"):
        gpurnn.clip_grad_value(host, bad)


def test_clipping_needs_params():
    with pytest.raises(TypeError, match="grads"):
        gpurnn.clip_grad_norm([np.ones(3)], 1.0)
    with pytest.raises(TypeError, match="grads"):
        gpurnn.clip_grad_value({"W": np.ones(3)}, 1.0)
