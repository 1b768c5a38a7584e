"""A bag of feature ids per step: token ids (T,B,F), x_t U = Σ_f U[ids[t,b,f]], on every backend.

- F = 1 gives bit for bit what ids (T,B) give;
- float64 gradients against central finite differences of the plain per-step reference
  (tests/helpers.py reads ids (T,B,F) as each id's count among the step's F), with ids
  repeated within a step and garbage past each length;
- a bidirectional stack against torch autograd: nn.EmbeddingBag(mode="sum") of one-hot
  rows (the multi-hot counts) into nn.RNN on packed sequences and nn.Linear;
- bad shapes and ranges name the argument.
"""
import dataclasses

import numpy as np
import pytest
from conftest import SIMULATOR
from helpers import FIELDS, finite_difference, make_case, reference_loss, relative_error

import gpurnn

SIZES = dict(T=4, B=3, n=6, d=5, k=4) if SIMULATOR else dict(T=6, B=4, n=7, d=5, k=4)
F = 3


def with_fields(case, seed=0):
    """The case with ids (T,B,F): field 0 its ids, then F−1 more (one a repeat of field 0 at some
    steps, so an id can count twice); past each length the ids are out of range (never read)."""
    rng = np.random.default_rng(seed)
    T, B = case.inputs.shape
    n = case.params.n_in
    more = rng.integers(0, n, (T, B, F - 1))
    more[..., 0] = np.where(rng.random((T, B)) < 0.3, case.inputs, more[..., 0])
    ids = np.concatenate([case.inputs[..., None], more], axis=2)
    if case.lengths is not None:
        ids[np.arange(T)[:, None] >= case.lengths[None, :]] = n + 3
    return dataclasses.replace(case, inputs=ids)


def run(case, backend, inputs=None):
    return gpurnn.bptt(case.params, case.inputs if inputs is None else inputs, case.targets, backend=backend,
                       **case.kwargs())


def test_one_field_is_exactly_token_ids(backend):
    case = make_case(3, lengths=True, s0=True, **SIZES)
    a, b = run(case, backend), run(case, backend, inputs=case.inputs[..., None])
    assert a.loss == b.loss
    for x, y in zip([*a.grads, a.ds0, a.s_last], [*b.grads, b.ds0, b.s_last]):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("output,activation", [("all", "tanh"), ("last", "logistic")])
def test_gradients_match_finite_differences(output, activation, backend):
    case = with_fields(make_case(4, output=output, activation=activation, lengths=True, s0=True, **SIZES))
    r = run(case, backend)
    assert r.loss == pytest.approx(reference_loss(case), rel=1e-13)
    objective = (lambda: reference_loss(case, np.longdouble))       # noqa: E731
    errors = {name: relative_error(finite_difference(objective, getattr(case.params, name), 1e-5),
                                   getattr(r.grads, name)) for name in FIELDS}
    errors["s0"] = relative_error(finite_difference(objective, case.s0, 1e-5), r.ds0)
    assert max(errors.values()) < 1e-7, errors


def test_bidirectional_stack_matches_torch_embedding_bag():
    torch = pytest.importorskip("torch", reason="the [torch] extra is not installed")
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    from gpurnn.torch_io import to_torch_state_dict

    T, B, n, d, k = 5, 3, 6, 4, 3
    rng = np.random.default_rng(5)
    params = gpurnn.init_params(n, d, k, bidirectional=True, seed=2, dtype="float64")
    ids, lengths = rng.integers(0, n, (T, B, F)), np.array([5, 3, 1])
    ids[:, 1, 2] = ids[:, 1, 0]                                      # an id counted twice at a step
    targets = rng.integers(0, k, (T, B))
    targets[np.arange(T)[:, None] >= lengths[None, :]] = -1
    r = gpurnn.bptt(params, ids, targets, lengths=lengths, backend="cpu")

    bag = torch.nn.EmbeddingBag(n, n, mode="sum", dtype=torch.float64)
    bag.weight.data = torch.eye(n, dtype=torch.float64)              # multi-hot counts
    rnn = torch.nn.RNN(n, d, bidirectional=True, dtype=torch.float64)
    linear = torch.nn.Linear(2 * d, k, dtype=torch.float64)
    state = to_torch_state_dict(params)
    rnn.load_state_dict({key[4:]: v for key, v in state.items() if key.startswith("rnn.")})
    linear.load_state_dict({key[7:]: v for key, v in state.items() if key.startswith("linear.")})
    x = bag(torch.tensor(ids.reshape(T * B, F))).reshape(T, B, n)
    H, _ = pad_packed_sequence(rnn(pack_padded_sequence(x, torch.tensor(lengths), enforce_sorted=False))[0],
                               total_length=T)
    loss = torch.nn.functional.cross_entropy(linear(H).reshape(T * B, k), torch.tensor(targets.reshape(-1)),
                                             ignore_index=-1, reduction="sum")
    loss.backward()
    assert r.loss == pytest.approx(loss.item(), rel=1e-12)
    torch_grads = {**{f"rnn.{name}": p.grad for name, p in rnn.named_parameters()},
                   **{f"linear.{name}": p.grad for name, p in linear.named_parameters()}}
    ours = to_torch_state_dict(gpurnn.Params.from_items(r.grads.items()), tensors=False)
    for key, g in ours.items():
        if key.startswith("rnn.bias_hh"):        # gpurnn's b is torch's bias_ih + bias_hh: one gradient for both
            continue
        np.testing.assert_allclose(g, torch_grads[key].numpy(), rtol=1e-9, atol=1e-12, err_msg=key)


@pytest.mark.parametrize("ids,message", [
    (np.zeros((4, 2, 0), np.int64), r"shape \(T, B\) or \(T, B, F\) with F >= 1"),
    (np.zeros((4, 2, 2, 1), np.int64), r"shape \(T, B\) or \(T, B, F\)"),
    (np.full((4, 2, 2), 5, np.int64), r"\[0, n\) = \[0, 5\)"),
])
def test_bad_feature_ids_name_the_argument(ids, message):
    params = gpurnn.init_params(5, 3, 2, seed=0, dtype="float64")
    with pytest.raises(ValueError, match=f"inputs.*{message}"):
        gpurnn.forward(params, ids)
