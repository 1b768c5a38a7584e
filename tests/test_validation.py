"""Bad input to `forward`, `bptt` (and `init_params`) raises ValueError, or TypeError for a
wrong kind of value, whose message names the argument, before any work starts: the calls
below pass a backend that fails the test if it is touched at all."""
import numpy as np
import pytest

import gpurnn
from gpurnn.backends import get_backend

T, B, N, D, K = 4, 2, 5, 3, 3


class UntouchableBackend:
    """A backend object that fails the test on any use: validation must come first."""

    def __getattr__(self, name):
        raise AssertionError(f"backend.{name} used before the arguments were checked")


def problem(tokens=True, output="all"):
    """(params, inputs, targets, kwargs) of a valid call; sequence 1 has length 2."""
    rng = np.random.default_rng(0)
    params = gpurnn.init_params(N, D, K, seed=1, dtype="float64")
    inputs = rng.integers(0, N, (T, B)) if tokens else rng.normal(size=(T, B, N))
    targets = rng.integers(0, K, (T, B) if output == "all" else (B,))
    return params, inputs, targets, dict(lengths=np.array([T, 2]), output=output)


def replace_param(params, name, value):
    fields = dict(params.items())
    fields[name] = value
    return gpurnn.Params(**fields)


def nan_at(array, index, value=np.nan):
    array = array.astype(np.float64)
    array[index] = value
    return array


def bad_cases():
    """(id, change(params, inputs, targets, kwargs) -> the same four, error, argument name)."""
    def inputs(fn):
        return lambda p, x, y, kw: (p, fn(x), y, kw)

    def kwarg(**change):
        return lambda p, x, y, kw: (p, x, y, {**kw, **change})

    def param(name, fn):
        return lambda p, x, y, kw: (replace_param(p, name, fn(getattr(p, name))), x, y, kw)

    def targets(fn):
        return lambda p, x, y, kw: (p, x, fn(y), kw)

    dense = np.random.default_rng(2).normal(size=(T, B, N))
    cases = [
        ("token id = n", inputs(lambda x: np.where(np.arange(T)[:, None] == 0, N, x)), ValueError, "inputs"),
        ("negative token id", inputs(lambda x: np.where(np.arange(T)[:, None] == 1, -1, x)), ValueError, "inputs"),
        ("token ids 1-D", inputs(lambda x: x[:, 0]), ValueError, "inputs"),
        ("dense n mismatch", inputs(lambda x: np.zeros((T, B, N + 1))), ValueError, "inputs"),
        ("dense 4-D", inputs(lambda x: np.zeros((T, B, N, 1))), ValueError, "inputs"),
        ("no steps", inputs(lambda x: x[:0]), ValueError, "inputs"),
        ("inputs list", inputs(lambda x: x.tolist()), TypeError, "inputs"),
        ("inputs bool", inputs(lambda x: x > 0), TypeError, "inputs"),
        ("dense NaN", inputs(lambda x: nan_at(dense, (1, 0, 2))), ValueError, "inputs"),
        ("dense Inf", inputs(lambda x: nan_at(dense, (3, 1, 0), np.inf)), ValueError, "inputs"),
        ("dense NaN past length", inputs(lambda x: nan_at(dense, (3, 1, 0))), ValueError, "inputs"),
        ("target = k", targets(lambda y: np.where(y == y.max(), K, y)), ValueError, "targets"),
        ("float targets", targets(lambda y: y.astype(np.float64)), TypeError, "targets"),
        ("targets (T,B+1)", targets(lambda y: np.zeros((T, B + 1), np.int64)), ValueError, "targets"),
        ("targets (T+1,B)", targets(lambda y: np.zeros((T + 1, B), np.int64)), ValueError, "targets"),
        ("targets (B,) for all", targets(lambda y: y[0]), ValueError, "targets"),
        ("targets (T,B) for last", kwarg(output="last"), ValueError, "targets"),
        ("targets None", targets(lambda y: None), TypeError, "targets"),
        ("lengths (B+1,)", kwarg(lengths=np.array([T, 1, 1])), ValueError, "lengths"),
        ("lengths -1", kwarg(lengths=np.array([T, -1])), ValueError, "lengths"),
        ("lengths T+1", kwarg(lengths=np.array([T + 1, 1])), ValueError, "lengths"),
        ("float lengths", kwarg(lengths=np.array([4.0, 2.0])), TypeError, "lengths"),
        ("s0 (B,d+1)", kwarg(s0=np.zeros((B, D + 1))), ValueError, "s0"),
        ("s0 (B+1,d)", kwarg(s0=np.zeros((B + 1, D))), ValueError, "s0"),
        ("s0 (d,)", kwarg(s0=np.zeros(D)), ValueError, "s0"),
        ("s0 NaN", kwarg(s0=nan_at(np.zeros((B, D)), (1, 2))), ValueError, "s0"),
        ("s0 Inf", kwarg(s0=nan_at(np.zeros((B, D)), (0, 0), -np.inf)), ValueError, "s0"),
        ("s0 list", kwarg(s0=[[0.0] * D] * B), TypeError, "s0"),
        ("activation", kwarg(activation="softplus"), ValueError, "activation"),
        ("activation None", kwarg(activation=None), ValueError, "activation"),
        ("output", kwarg(output="first"), ValueError, "output"),
        ("truncate -1", kwarg(truncate=-1), ValueError, "truncate"),
        ("truncate 1.5", kwarg(truncate=1.5), ValueError, "truncate"),
        ("truncate True", kwarg(truncate=True), ValueError, "truncate"),
        ("mixed dtypes", param("V", lambda v: v.astype(np.float32)), ValueError, "params"),
        ("int params", lambda p, x, y, kw: (p.map(lambda a: a.astype(np.int64)), x, y, kw), ValueError, "params"),
        ("W (d,d+1)", param("W", lambda w: np.zeros((D, D + 1))), ValueError, "params.W"),
        ("V rows != d", param("V", lambda v: np.zeros((D + 1, K))), ValueError, "params.V"),
        ("b (d+1,)", param("b", lambda b: np.zeros(D + 1)), ValueError, "params.b"),
        ("c (k+1,)", param("c", lambda c: np.zeros(K + 1)), ValueError, "params.c"),
        ("U 1-D", param("U", lambda u: np.zeros(N)), ValueError, "params.U"),
        ("U list", param("U", lambda u: u.tolist()), TypeError, "params.U"),
        ("params tuple", lambda p, x, y, kw: (tuple(p), x, y, kw), TypeError, "params"),
    ]
    for name in ("U", "W", "V", "b", "c"):
        cases.append((f"{name} NaN", param(name, lambda a: nan_at(a, (0,) * a.ndim)), ValueError, f"params.{name}"))
    cases.append(("W Inf", param("W", lambda a: nan_at(a, (1, 2), np.inf)), ValueError, "params.W"))
    return cases


CASES = bad_cases()


def _ids(cases):
    return [c[0] for c in cases]


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_bad_input_to_bptt_names_the_argument(case):
    name, change, error, argument = case
    params, inputs, targets, kwargs = change(*problem(tokens="dense" not in name))
    with pytest.raises(error, match=rf"\b{argument}\b"):
        gpurnn.bptt(params, inputs, targets, backend=UntouchableBackend(), **kwargs)


FORWARD_CASES = [c for c in CASES if c[3] not in ("targets", "output", "truncate")]


@pytest.mark.parametrize("case", FORWARD_CASES, ids=_ids(FORWARD_CASES))
def test_bad_input_to_forward_names_the_argument(case):
    name, change, error, argument = case
    params, inputs, _, kwargs = change(*problem(tokens="dense" not in name))
    kwargs.pop("output")
    with pytest.raises(error, match=rf"\b{argument}\b"):
        gpurnn.forward(params, inputs, backend=UntouchableBackend(), **kwargs)


@pytest.mark.parametrize("bad,error", [("tpu", ValueError), ("CPU", ValueError), (3, TypeError), (None, TypeError)])
def test_unknown_backend(bad, error):
    params, inputs, targets, kwargs = problem()
    with pytest.raises(error, match="backend"):
        gpurnn.bptt(params, inputs, targets, backend=bad, **kwargs)
    with pytest.raises(error, match="backend"):
        gpurnn.forward(params, inputs, backend=bad)


def test_token_ids_past_a_length_are_never_read(backend):
    """Ids (and dense values) after a sequence's end may be anything: no error, no effect."""
    params, inputs, targets, kwargs = problem()
    garbage = inputs.copy()
    garbage[2:, 1] = [N + 100, -7]                       # sequence 1 has length 2
    a = gpurnn.bptt(params, inputs, targets, backend=backend, **kwargs)
    b = gpurnn.bptt(params, garbage, targets, backend=backend, **kwargs)
    assert a.loss == b.loss
    for x, y in zip([*a.grads, a.ds0, a.s_last], [*b.grads, b.ds0, b.s_last]):
        np.testing.assert_array_equal(x, y)
    states = gpurnn.forward(params, garbage, lengths=kwargs["lengths"], backend=backend).states
    np.testing.assert_array_equal(states[2:, 1], states[[1, 1], 1])


@pytest.mark.parametrize("output", ["all", "last"])
def test_negative_targets_take_no_loss(output, backend):
    params, inputs, targets, kwargs = problem(output=output)
    kwargs["output"] = output
    r = gpurnn.bptt(params, inputs, np.full_like(targets, -3), backend=backend, **kwargs)
    assert r.loss == 0.0 and r.count == 0
    for g in [*r.grads, r.ds0]:
        assert not g.any()


@pytest.mark.parametrize("bad,error,argument", [
    (dict(n_in=0), ValueError, "n_in"), (dict(hidden=2.5), ValueError, "hidden"),
    (dict(n_out=True), ValueError, "n_out"), (dict(dtype="float16"), ValueError, "dtype"),
])
def test_bad_init_params(bad, error, argument):
    kwargs = {**dict(n_in=3, hidden=4, n_out=2), **bad}
    with pytest.raises(error, match=argument):
        gpurnn.init_params(kwargs.pop("n_in"), kwargs.pop("hidden"), kwargs.pop("n_out"), **kwargs)


@pytest.mark.parametrize("case", ["token id = n", "dense NaN", "target = k", "lengths T+1", "W NaN", "s0 Inf"])
def test_bad_input_on_the_backend_is_caught_there(case, backend):
    """The checks run on the backend's own arrays too (a user's data may live on the GPU)."""
    be = get_backend(backend)
    _, change, error, argument = next(c for c in CASES if c[0] == case)
    params, inputs, targets, kwargs = change(*problem(tokens="dense" not in case))
    kwargs = {**kwargs, **{key: be.asarray(kwargs[key]) for key in ("lengths", "s0") if key in kwargs}}
    with pytest.raises(error, match=rf"\b{argument}\b"):
        gpurnn.bptt(params.map(be.asarray), be.asarray(inputs), be.asarray(targets), backend=backend, **kwargs)


@pytest.mark.parametrize("case", ["token id = n", "target = k", "lengths T+1", "W NaN"])
def test_check_values_false_skips_only_the_device_value_checks(case, backend):
    """check_values=False leaves the checks that would wait for the GPU (values of device arrays)
    to the caller; host arrays, and every shape, are still checked."""
    be = get_backend(backend)
    _, change, error, argument = next(c for c in CASES if c[0] == case)
    params, inputs, targets, kwargs = change(*problem())
    with pytest.raises(error, match=rf"\b{argument}\b"):     # host arrays: checked all the same
        gpurnn.bptt(params, inputs, targets, backend=backend, check_values=False, **kwargs)
    if backend == "cpu":
        return
    from gpurnn.validation import check_call

    kwargs = {**kwargs, **{key: be.asarray(kwargs[key]) for key in ("lengths", "s0") if key in kwargs}}
    on_device = (params.map(be.asarray), be.asarray(inputs))
    check_call(*on_device, targets=be.asarray(targets), need_targets=True, check_values=False, **kwargs)
    with pytest.raises(ValueError, match=r"\btargets\b.*shape"):
        check_call(*on_device, targets=be.asarray(targets[:1]), need_targets=True, check_values=False, **kwargs)
