"""gpurnn.torch.gradient_flow: the lecture's diagnostics for a model built in PyTorch equal
gpurnn.diagnostics' on the same weights, for gpurnn.torch.RNN and nn.RNN alike."""
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="gpurnn.torch needs the [torch] extra (part of [test])")
from torch import nn  # noqa: E402

import gpurnn.torch as gt  # noqa: E402
from gpurnn.diagnostics import lecture_bound, measure_flow  # noqa: E402
from gpurnn.torch_io import from_torch_state_dict  # noqa: E402

T, B, N, H, K = 6, 3, 3, 5, 4


def _model(seed, bidirectional=False, num_layers=1, cls=gt.RNN):
    torch.manual_seed(seed)
    rnn = cls(N, H, num_layers, bidirectional=bidirectional, batch_first=True, dtype=torch.float64)
    head = nn.Linear(H * (2 if bidirectional else 1), K, dtype=torch.float64)
    x = torch.randn(B, T, N, dtype=torch.float64)
    targets = torch.randint(0, K, (B, T))

    def loss_fn(output):
        return nn.functional.cross_entropy(head(output).reshape(-1, K), targets.reshape(-1), reduction="sum")

    return rnn, head, x, targets, loss_fn


@pytest.mark.parametrize("cls", [gt.RNN, nn.RNN])
def test_flow_equals_gpurnn_diagnostics(cls):
    rnn, head, x, targets, loss_fn = _model(0, cls=cls)
    flow = gt.gradient_flow(rnn, x, loss_fn, sequence=1)
    state = {f"rnn.{n}": p.detach() for n, p in rnn.named_parameters()}
    state.update({f"linear.{n}": p.detach() for n, p in head.named_parameters()})
    params = from_torch_state_dict(state)
    expected = measure_flow(params, x.transpose(0, 1).numpy(), targets.T.numpy(), sequence=1, backend="cpu")
    np.testing.assert_allclose(flow.profile.norms, expected.profile.norms, rtol=1e-10)
    assert np.isnan(flow.profile.norms[0, 1]) and flow.profile.norms[T - 1, 0] > 0     # k ≤ t only
    for name in ("jacobian_geomean", "jacobian_max", "profile_geomean", "bound"):
        np.testing.assert_allclose(getattr(flow, name), getattr(expected, name), rtol=1e-10, err_msg=name)
    np.testing.assert_allclose(flow.bound, lecture_bound(params.W, "tanh", np.arange(T)))
    assert flow.violations == 0 and flow.norm == pytest.approx(np.linalg.norm(params.W, 2))


def test_reverse_direction_of_the_last_layer():
    """The reverse half of a bidirectional last layer measures like a forward layer run on the
    reversed sequences (its weights, the same loss)."""
    rnn, head, x, targets, loss_fn = _model(1, bidirectional=True, num_layers=2)
    flow = gt.gradient_flow(rnn, x, loss_fn, reverse=True)
    with torch.no_grad():
        output = rnn(x)[0]
    forward_half = output[:, :, :H]
    layer_input = gt.RNN(N, H, 1, bidirectional=True, batch_first=True, dtype=torch.float64)
    layer_input.load_state_dict({k: v for k, v in rnn.state_dict().items() if "_l0" in k})
    with torch.no_grad():
        below = layer_input(x)[0]
    single = gt.RNN(2 * H, H, batch_first=True, dtype=torch.float64)
    single.load_state_dict({k.replace("_l1_reverse", "_l0"): v for k, v in rnn.state_dict().items()
                            if k.endswith("_l1_reverse")})
    expected = gt.gradient_flow(single, below.flip(1),
                                lambda out: loss_fn(torch.cat([forward_half, out.flip(1)], dim=2)))
    np.testing.assert_allclose(flow.profile.norms, expected.profile.norms, rtol=1e-10)
    assert flow.violations == 0


def test_bad_arguments_are_named():
    rnn, _, x, _, loss_fn = _model(2)
    with pytest.raises(TypeError, match="module must be a gpurnn.torch.RNN or a torch.nn.RNN"):
        gt.gradient_flow(nn.Linear(2, 2), x, loss_fn)
    with pytest.raises(ValueError, match="reverse=True needs a bidirectional module"):
        gt.gradient_flow(rnn, x, loss_fn, reverse=True)
    with pytest.raises(ValueError, match=r"sequence must be in \[0, B\) = \[0, 3\)"):
        gt.gradient_flow(rnn, x, loss_fn, sequence=3)
