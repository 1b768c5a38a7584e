"""Stacked and bidirectional models: gpurnn against PyTorch's nn.RNN (golden tensors made by
tests/golden/make_stack_golden.py, and live where torch is installed), finite differences,
dropout, padding, the parameter tree and the torch state dict round trip."""
import pathlib

import numpy as np
import pytest

from helpers import reference_stack_bptt

import gpurnn
from gpurnn.backends import get_backend
from gpurnn.backends.layer_by_cell import reverse
from gpurnn.checkpoint import load_checkpoint, save_checkpoint
from gpurnn.stack import dropout_masks
from gpurnn.torch_io import from_torch_state_dict, to_torch_state_dict

GOLDEN = pathlib.Path(__file__).parent / "golden"
NAMES = sorted(p.stem for p in GOLDEN.glob("stack_*.npz"))


def load(name):
    with np.load(GOLDEN / f"{name}.npz") as f:
        g = dict(f)
    params = gpurnn.Params.from_items((key[len("param."):], g[key]) for key in g if key.startswith("param."))
    kwargs = dict(lengths=g["lengths"], s0=g["s0"], activation=str(g["activation"]))
    return g, params, kwargs


def test_golden_cases_cover_the_stack():
    specs = {(int(g["layers"]), bool(g["bidirectional"]), str(g["activation"]), str(g["output"]),
              g["inputs"].ndim == 2) for g in map(lambda n: load(n)[0], NAMES)}
    assert {s[1] for s in specs} == {True, False} and {s[2] for s in specs} == {"tanh", "relu"}
    assert {s[3] for s in specs} == {"all", "last"} and {s[4] for s in specs} == {True, False}


@pytest.mark.parametrize("name", NAMES)
def test_bptt_matches_torch(name, backend):
    g, params, kwargs = load(name)
    r = gpurnn.bptt(params, g["inputs"], g["targets"], output=str(g["output"]), input_grad=True, backend=backend,
                    **kwargs)
    np.testing.assert_allclose(r.loss, g["loss"], rtol=1e-12)
    for key, grad in r.grads.items():
        np.testing.assert_allclose(grad, g[f"grad.{key}"], rtol=1e-9, atol=1e-12, err_msg=key)
    np.testing.assert_allclose(r.ds0, g["ds0"], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(r.s_last, g["s_last"], rtol=1e-12, atol=1e-14)
    if "dinputs" in g:
        np.testing.assert_allclose(r.dinputs, g["dinputs"], rtol=1e-9, atol=1e-12)
    else:
        assert r.dinputs is None


@pytest.mark.parametrize("name", [n for n in NAMES if "_all_" in n])
def test_forward_matches_torch(name, backend):
    g, params, kwargs = load(name)
    states, logits, s_last = gpurnn.forward(params, g["inputs"], backend=backend, **kwargs)
    active = np.arange(len(states))[:, None] < g["lengths"][None, :]     # torch pads with zeros
    np.testing.assert_allclose(states[active], g["states"][active], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(logits[active], g["logits"][active], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(s_last, g["s_last"], rtol=1e-12, atol=1e-14)


def small_problem(seed=0, layers=2, bidirectional=True, T=5, B=3, n=3, d=3, k=2):
    rng = np.random.default_rng(seed)
    params = gpurnn.init_params(n, d, k, layers=layers, bidirectional=bidirectional, seed=seed, dtype="float64",
                                scale=0.8)
    params = params.map(lambda a: a + 0.1 * rng.normal(size=a.shape))           # biases away from 0
    cells = layers * (2 if bidirectional else 1)
    return params, rng.normal(size=(T, B, n)), rng.integers(0, k, (T, B)), np.array([T, 2, 0])[:B], \
        0.5 * rng.normal(size=(cells, B, d))


@pytest.mark.parametrize("output,dropout", [("all", 0.0), ("last", 0.3), ("all", 0.5)])
def test_finite_differences(output, dropout):
    """Every gradient (parameters, dense inputs, s0) against central differences of the loss, with
    dropout's masks fixed by their seed (CPU: the CUDA backend meets torch's goldens above)."""
    params, x, y, lengths, s0 = small_problem()
    targets = y if output == "all" else y[0]
    kw = dict(lengths=lengths, activation="tanh", output=output, dropout=dropout, dropout_seed=7, backend="cpu")
    r = gpurnn.bptt(params, x, targets, s0=s0, input_grad=True, **kw)
    assert gpurnn.bptt(params, x, targets, s0=s0, **kw).dinputs is None       # only when asked

    def loss(params=params, x=x, s0=s0):
        return gpurnn.bptt(params, x, targets, s0=s0, **kw).loss

    rng, eps = np.random.default_rng(1), 1e-6
    for name, value in params.items():
        index = tuple(rng.integers(0, s) for s in value.shape)
        up, down = (params.map(np.copy) for _ in range(2))
        up[name][index] += eps
        down[name][index] -= eps
        numeric = (loss(params=up) - loss(params=down)) / (2 * eps)
        assert r.grads[name][index] == pytest.approx(numeric, rel=1e-6, abs=1e-8), name
    for key, array, grad in (("x", x, r.dinputs), ("s0", s0, r.ds0)):
        for _ in range(3):
            index = tuple(rng.integers(0, s) for s in array.shape)
            up, down = array.copy(), array.copy()
            up[index] += eps
            down[index] -= eps
            numeric = (loss(**{key: up}) - loss(**{key: down})) / (2 * eps)
            assert grad[index] == pytest.approx(numeric, rel=1e-6, abs=1e-8), key


@pytest.mark.parametrize("truncate", [0, 1, 3, 4, None])
def test_truncation_per_layer(truncate, backend):
    """τ applies in every cell, each layer's ∂L/∂H a loss term per step: the backend against the
    per-term reference (tests/helpers.py, each term walked back through at most τ factors), τ
    changes the gradients of the lower layer too, and τ = T − 1 (4) is exact BPTT by the
    reference's own count, not only by `bptt`'s shortcut."""
    params, x, y, lengths, s0 = small_problem()
    kw = dict(lengths=lengths, s0=s0, dropout=0.2, dropout_seed=1)
    got = gpurnn.bptt(params, x, y, truncate=truncate, backend=backend, **kw)
    masks = dropout_masks(params, len(x), x.shape[1], 0.2, 1)
    loss, grads, ds0 = reference_stack_bptt(params, x, y, lengths, s0, "tanh", truncate, masks)
    assert got.loss == pytest.approx(loss, rel=1e-12)
    for name, grad in got.grads.items():
        np.testing.assert_allclose(grad, grads[name], rtol=1e-9, atol=1e-12, err_msg=name)
    np.testing.assert_allclose(got.ds0, ds0, rtol=1e-9, atol=1e-12)
    exact = reference_stack_bptt(params, x, y, lengths, s0, "tanh", None, masks)[1]
    assert (truncate is None or truncate >= len(x) - 1) == np.allclose(grads["layers.0.fw.W"],
                                                                       exact["layers.0.fw.W"], rtol=1e-12)


def test_dropout_masks_are_inverted_dropout():
    """Between layers each unit is dropped with probability p and the rest scaled by 1/(1 − p), so
    training-mode inputs average to eval-mode ones: the masks' values, drop rate and mean (within
    5 standard deviations of 48,000 draws per mask)."""
    params = gpurnn.init_params(3, 20, 2, layers=3, bidirectional=True, seed=0, dtype="float64")
    p = 0.3
    masks = dropout_masks(params, 40, 30, p, seed=5)
    assert masks[0] is None and len(masks) == 3
    for m in masks[1:]:
        assert m.shape == (40, 30, 40) and set(np.unique(m)) == {0.0, 1 / (1 - p)}
        sd = np.sqrt(p * (1 - p) / m.size)
        assert abs(np.mean(m == 0) - p) < 5 * sd
        assert abs(m.mean() - 1) < 5 * sd / (1 - p)


def test_padding_is_never_read_and_dropout_is_seeded():
    params, x, y, lengths, s0 = small_problem()
    kw = dict(lengths=lengths, s0=s0, backend="cpu")
    a = gpurnn.bptt(params, x, y, dropout=0.4, dropout_seed=3, **kw)
    x2 = x.copy()
    x2[2:, 1] = 1e3                                       # past sequence 1's length (2)
    x2[:, 2] = -1e3                                       # sequence 2 has length 0
    b = gpurnn.bptt(params, x2, y, dropout=0.4, dropout_seed=3, **kw)
    assert a.loss == b.loss
    for g, h in zip(a.grads, b.grads):
        np.testing.assert_array_equal(g, h)
    np.testing.assert_array_equal(a.s_last[:, 2], s0[:, 2])           # length 0 keeps s0 in every cell
    other = gpurnn.bptt(params, x, y, dropout=0.4, dropout_seed=4, **kw)
    none = gpurnn.bptt(params, x, y, **kw)
    assert len({a.loss, other.loss, none.loss}) == 3
    single = gpurnn.init_params(3, 3, 2, seed=0, dtype="float64")  # one layer: nothing between layers
    assert gpurnn.bptt(single, x, y, dropout=0.9, lengths=lengths).loss == gpurnn.bptt(single, x, y,
                                                                                        lengths=lengths).loss
    with pytest.raises(ValueError, match="dropout must be a number in"):
        gpurnn.bptt(params, x, y, dropout=1.0, **kw)


def test_the_parameter_tree():
    params = gpurnn.init_params(4, 3, 2, layers=2, bidirectional=True, seed=0, dtype="float64")
    assert params.names()[:4] == ["layers.0.fw.U", "layers.0.bw.U", "layers.1.fw.U", "layers.1.bw.U"]
    assert "head.V" in params.names() and params.layers == 2 and params.bidirectional and params.n_cells == 4
    assert params.cell(1, "bw").U.shape == (6, 3) and params.V.shape == (6, 2)
    assert params.size == sum(a.size for a in params) == 2 * (4 * 3 + 9 + 3) + 2 * (6 * 3 + 9 + 3) + 6 * 2 + 2
    flat = params.flatten()
    back = params.unflatten(flat)
    for a, b in zip(params, back):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(params.map(np.add, params).flatten(), 2 * flat)
    with pytest.raises(AttributeError, match="cell"):
        params.W                                           # noqa: B018  (a stack has several)
    with pytest.raises(ValueError, match="missing"):
        gpurnn.Params.from_items((k, v) for k, v in params.items() if k != "layers.1.bw.W")
    single = gpurnn.init_params(4, 3, 2, seed=0)
    assert single.names() == ["U", "W", "V", "b", "c"] and single.layers == 1 and not single.bidirectional
    tokens = np.zeros((2, 1), np.int64)
    wrong = gpurnn.Params.from_items((k, np.zeros((5, 3)) if k == "layers.1.fw.U" else v) for k, v in params.items())
    with pytest.raises(ValueError, match=r"params.layers.1.fw.U must have shape \(6, 3\)"):
        gpurnn.forward(wrong, tokens)
    with pytest.raises(ValueError, match=r"s0 must be an array of shape \(layers·directions, B, d\) = \(4, 1, 3\)"):
        gpurnn.forward(params, tokens, s0=np.zeros((1, 3)))


def test_checkpoint_and_torch_state_dict_round_trip(tmp_path):
    params, x, *_ = small_problem(layers=3)
    path = save_checkpoint(tmp_path / "stack.safetensors", params, arrays={"carry": np.zeros(2)})
    loaded = load_checkpoint(path)
    assert loaded.params.names() == params.names() and set(loaded.arrays) == {"carry"}
    state = to_torch_state_dict(loaded.params, tensors=False)
    assert state["rnn.weight_ih_l2_reverse"].shape == (3, 6) and state["linear.weight"].shape == (2, 6)
    back = from_torch_state_dict(state)
    np.testing.assert_array_equal(back.flatten(), params.flatten())


def test_torch_module_gives_the_same_logits():
    torch = pytest.importorskip("torch", reason="the [torch] extra is not installed")
    params, x, _, lengths, s0 = small_problem(layers=2, B=2)
    rnn = torch.nn.RNN(3, 3, num_layers=2, bidirectional=True, dtype=torch.float64)
    linear = torch.nn.Linear(6, 2, dtype=torch.float64)
    state = to_torch_state_dict(params)
    rnn.load_state_dict({k[len("rnn."):]: v for k, v in state.items() if k.startswith("rnn.")})
    linear.load_state_dict({k[len("linear."):]: v for k, v in state.items() if k.startswith("linear.")})
    with torch.no_grad():
        H, h_n = rnn(torch.tensor(x), torch.tensor(s0))
        logits = linear(H).numpy()
    out = gpurnn.forward(params, x, s0=s0, backend="cpu")
    np.testing.assert_allclose(out.logits, logits, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(out.s_last, h_n.numpy(), rtol=1e-12, atol=1e-14)


def test_reversal_within_lengths():
    be = get_backend("cpu")
    X = np.arange(4 * 3).reshape(4, 3)
    lengths = np.array([4, 2, 0])
    R = reverse(be, X, lengths)
    np.testing.assert_array_equal(R[:, 0], X[::-1, 0])
    np.testing.assert_array_equal(R[:, 1], [X[1, 1], X[0, 1], X[2, 1], X[3, 1]])
    np.testing.assert_array_equal(R[:, 2], X[:, 2])
    np.testing.assert_array_equal(reverse(be, R, lengths), X)
    Y = np.arange(4 * 3 * 6).reshape(4, 3, 6)
    full = reverse(be, Y, np.array([4, 4, 4]), slice(3, 6))          # every sequence full
    np.testing.assert_array_equal(full, Y[::-1, :, 3:])
    np.testing.assert_array_equal(reverse(be, Y, np.array([4, 2, 0]), slice(3, 6))[:, 1],
                                  Y[[1, 0, 2, 3], 1, 3:])


def test_final_logits_are_what_output_last_reads():
    from gpurnn.bptt import final_logits

    params, x, y, lengths, s0 = small_problem()
    out = gpurnn.forward(params, x, lengths=lengths, s0=s0)
    z = final_logits(params, out.s_last)
    np.testing.assert_array_equal(gpurnn.output_logits(params, x, lengths=lengths, s0=s0, output="last")[0], z)
    r = gpurnn.bptt(params, x, y[0], lengths=lengths, s0=s0, output="last")
    shifted = z - z.max(axis=1, keepdims=True)
    loss = -(shifted[np.arange(3), y[0]] - np.log(np.exp(shifted).sum(axis=1))).sum()
    assert r.loss == pytest.approx(loss, rel=1e-12)
    one = gpurnn.init_params(3, 3, 2, seed=0, dtype="float64")             # one direction: the last step's logits
    single = gpurnn.forward(one, x, lengths=lengths)
    np.testing.assert_allclose(final_logits(one, single.s_last)[:2],
                               single.logits[lengths[:2] - 1, np.arange(2)], rtol=1e-12)


def test_the_trainer_runs_stacks_on_the_backend(backend, tmp_path):
    """Streaming BPTT through a 2-layer stack with dropout (carried states (cells,B,d)), resumed from
    its checkpoint as if never stopped, and a bidirectional classifier evaluated: the backend's
    numbers are the CPU's."""
    from gpurnn.batches import SentenceBatches, TokenStreams
    from gpurnn.train import TrainConfig, Trainer

    ids = np.random.default_rng(0).integers(0, 5, 200)
    rng = np.random.default_rng(1)
    xs = [rng.integers(0, 5, rng.integers(1, 6)) for _ in range(9)]
    ys = [int(2 in x) for x in xs]
    runs = {}
    for name in dict.fromkeys(["cpu", backend]):
        config = TrainConfig(backend=name, optimizer="sgd", lr=0.1, dropout=0.3, seed=4)
        trainer = Trainer(gpurnn.init_params(5, 4, 5, layers=2, seed=0, dtype="float64"), config,
                          out_dir=tmp_path / name)
        trainer.fit(TokenStreams(ids, 2, 6), steps=2, progress=False)
        trainer.save()
        resumed = Trainer.load(tmp_path / name / "checkpoint.safetensors")
        assert resumed.carry.shape == (2, 2, 4)
        resumed.fit(TokenStreams(ids, 2, 6), steps=3, progress=False)
        if name == "cpu":              # resumed = uninterrupted: the same carried states, the same masks
            whole = Trainer(gpurnn.init_params(5, 4, 5, layers=2, seed=0, dtype="float64"), config)
            whole.fit(TokenStreams(ids, 2, 6), steps=3, progress=False)
            np.testing.assert_array_equal(whole.host_params().flatten(), resumed.host_params().flatten())
        classifier = Trainer(gpurnn.init_params(5, 4, 2, bidirectional=True, seed=1, dtype="float64"),
                             TrainConfig(backend=name, output="last"))
        runs[name] = (resumed.host_params(), classifier.evaluate(SentenceBatches(xs, ys, 4, shuffle=False)).loss)
    np.testing.assert_allclose(runs[backend][0].flatten(), runs["cpu"][0].flatten(), rtol=1e-10, atol=1e-12)
    assert runs[backend][1] == pytest.approx(runs["cpu"][1], rel=1e-10)
    assert runs["cpu"][0].names()[0] == "layers.0.fw.U"


def test_the_diagnostics_refuse_a_stack():
    from gpurnn import diagnostics

    params, x, y, *_ = small_problem()
    with pytest.raises(ValueError, match="one layer of one direction"):
        diagnostics.gradient_profile(params, x, y)


@pytest.mark.parametrize("output", ["mean", "max"])
def test_pooled_outputs_of_a_bidirectional_stack(output, backend):
    """The pool reads the top layer's states, both directions: bptt's loss is the cross-entropy of
    the pooled logits, and its gradients pass central differences (CPU) / match the CPU's."""
    params, x, y, lengths, s0 = small_problem()
    lengths = np.array([5, 2, 1])
    kw = dict(lengths=lengths, s0=s0, output=output)
    r = gpurnn.bptt(params, x, y[0], backend=backend, **kw)
    H = gpurnn.forward(params, x, lengths=lengths, s0=s0).states
    real = np.arange(5)[:, None, None] < lengths[None, :, None]
    pooled = (np.where(real, H, 0).sum(0) / lengths[:, None] if output == "mean"
              else np.where(real, H, -np.inf).max(0))
    z = pooled @ params.V + params.c
    assert r.loss == pytest.approx(-(z[np.arange(3), y[0]] - np.log(np.exp(z).sum(1))).sum(), rel=1e-12)
    cpu = gpurnn.bptt(params, x, y[0], backend="cpu", **kw)
    np.testing.assert_allclose(r.grads.flatten(), cpu.grads.flatten(), rtol=1e-10, atol=1e-13)
    name, index, eps = "layers.0.bw.W", (1, 2), 1e-6
    up, down = params.map(np.copy), params.map(np.copy)
    up[name][index] += eps
    down[name][index] -= eps
    numeric = gpurnn.bptt(up, x, y[0], backend="cpu", **kw).loss - gpurnn.bptt(down, x, y[0], backend="cpu", **kw).loss
    assert cpu.grads[name][index] == pytest.approx(numeric / (2 * eps), rel=1e-6)
