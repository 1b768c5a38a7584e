"""Optimizers and schedules against torch.optim (values saved by tests/golden/make_train_golden.py)."""
import pathlib

import numpy as np
import pytest

from conftest import SIMULATOR
from gpurnn import Params
from gpurnn.backends import get_backend
from gpurnn.optim import make_optimizer, make_schedule

GOLDEN = np.load(pathlib.Path(__file__).parent / "golden" / "optim_torch.npz")
STEPS, LR = 6, 0.05


def _params(prefix):
    return Params(*(GOLDEN[f"{prefix}.{k}"].copy() for k in "UWVbc"))


@pytest.mark.parametrize("name, gpurnn_name, hparams, rtol", [
    ("sgd", "sgd", {"momentum": 0.9}, 1e-12),
    ("sgd_nesterov", "sgd", {"momentum": 0.9, "nesterov": True}, 1e-12),
    # gpurnn's ε sits inside the sqrt (min-char-rnn), torch's 1e-10 outside: with ε → 0 both are g/sqrt(G)
    ("adagrad", "adagrad", {"eps": 1e-20}, 1e-8),
    ("rmsprop", "rmsprop", {"alpha": 0.99, "eps": 1e-8}, 1e-12),
    ("adam", "adam", {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8}, 1e-12),
])
def test_optimizer_matches_torch(name, gpurnn_name, hparams, rtol, backend):
    """The same update on the backend's arrays (NumPy, CuPy, or the simulator's device arrays)."""
    be = get_backend(backend)
    params = _params("init").map(be.asarray)
    opt = make_optimizer(gpurnn_name, params, **hparams)
    for i in range(STEPS):
        opt.step(params, _params(f"grad{i}").map(be.asarray), LR)
    for key, value in params.items():
        np.testing.assert_allclose(be.to_host(value), GOLDEN[f"{name}.{key}"], rtol=rtol, atol=1e-12, err_msg=key)
    assert opt.t == STEPS


def test_adagrad_is_min_char_rnn():
    """min-char-rnn: mem += dparam²; param += −lr · dparam / sqrt(mem + 1e-8)."""
    p, g = np.array([0.5, -1.0]), np.array([0.2, 0.0])
    params = Params(p.copy(), p.copy(), p.copy(), p.copy(), p.copy())
    opt = make_optimizer("adagrad", params)
    opt.step(params, Params(g, g, g, g, g), 0.1)
    np.testing.assert_array_equal(params.W, p - 0.1 * g / np.sqrt(g * g + 1e-8))


def test_state_dict_round_trip_gives_identical_steps():
    a = _params("init")
    opt_a = make_optimizer("adam", a)
    for i in range(3):
        opt_a.step(a, _params(f"grad{i}"), LR)
    b = a.map(np.copy)
    opt_b = make_optimizer("adam", b)
    opt_b.load_state_dict({k: v.copy() for k, v in opt_a.state_dict().items()}, opt_a.t)
    for i in range(3, STEPS):
        opt_a.step(a, _params(f"grad{i}"), LR)
        opt_b.step(b, _params(f"grad{i}"), LR)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_float32_stays_float32():
    params = _params("init").map(lambda x: x.astype(np.float32))
    opt = make_optimizer("rmsprop", params)
    opt.step(params, params.map(np.ones_like), 0.01)
    assert all(v.dtype == np.float32 for v in params)
    assert all(v.dtype == np.float32 for v in opt.state_dict().values())


@pytest.mark.parametrize("name, kwargs, steps", [
    ("step", {"every": 3, "gamma": 0.5}, 10),
    ("cosine", {"total": 7, "lr_min": 0.01}, 8),    # torch's CosineAnnealingLR rises again after T_max
])
def test_schedules_match_torch(name, kwargs, steps):
    schedule = make_schedule(name, 0.1, **kwargs)
    np.testing.assert_allclose([schedule(s) for s in range(steps)], GOLDEN[f"lr.{name}"][:steps], rtol=1e-12)


def test_cosine_holds_its_floor_after_total():
    schedule = make_schedule("cosine", 0.1, total=4, lr_min=0.01)
    assert schedule(4) == schedule(100) == pytest.approx(0.01)
    assert make_schedule("constant", 0.3)(12345) == 0.3


@pytest.mark.parametrize("call, match", [
    (lambda p: make_optimizer("adamw", p), "optimizer must be one of"),
    (lambda p: make_optimizer("adam", p, beta3=0.1), "unknown hyperparameters"),
    (lambda p: make_optimizer("sgd", p, momentum=-0.5), "momentum must be"),
    (lambda p: make_schedule("linear", 0.1), "schedule must be one of"),
    (lambda p: make_schedule("cosine", 0.1), "cosine schedule needs total"),
    (lambda p: make_schedule("step", 0.1, every=0), "step schedule needs every"),
    (lambda p: make_optimizer("sgd", p).step(p, p, float("nan")), "lr must be"),
    (lambda p: make_optimizer("sgd", p).load_state_dict({}, 0), "missing"),
])
def test_bad_arguments(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call(_params("init"))


@pytest.mark.skipif(SIMULATOR, reason="PTX compilation needs the real Numba CUDA target, not the simulator")
@pytest.mark.parametrize("cc", [(9, 0), (8, 0)], ids=lambda cc: f"sm_{cc[0]}{cc[1]}")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_device_update_compiles_to_ptx(dtype, cc):
    """The fused update kernel with the argument types `optim_rules.update` launches it with."""
    from numba import cuda, types

    from gpurnn.kernels.optimizer_update import optimizer_update

    array = getattr(types, dtype)[::1]
    sig = types.void(types.int64, array, array, array, array, *[types.float64] * 6)
    ptx, _ = cuda.compile_ptx(optimizer_update.py_func, sig, cc=cc)
    assert f".target sm_{cc[0]}{cc[1]}" in ptx and ".entry" in ptx
