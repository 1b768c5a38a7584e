"""gpurnn.torch.RNN against torch.nn.RNN: outputs, h_n and every gradient in float64, on both
backends (tiny sizes: the CUDA backend runs under the simulator), gradcheck, truncation against
gpurnn.bptt and against the per-term reference (a loss on h_n included), the packed h_n's order,
nn.RNN's parameters and errors; and `import gpurnn` without torch."""
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="gpurnn.torch needs the [torch] extra (part of [test])")
from torch import nn  # noqa: E402
from torch.nn.utils.rnn import pack_padded_sequence  # noqa: E402

from helpers import reference_stack_bptt  # noqa: E402

import gpurnn  # noqa: E402
import gpurnn.torch as gt  # noqa: E402
from gpurnn.backends import get_backend  # noqa: E402
from gpurnn.torch_io import from_torch_state_dict  # noqa: E402

F64 = torch.float64
T, B, N, H = 5, 3, 3, 4
LENGTHS = torch.tensor([3, 5, 2])

# (num_layers, bidirectional, packed, batch_first, hx given, nonlinearity): every option, both ways
CASES = [
    (1, False, False, False, False, "tanh"),
    (1, True, True, False, True, "relu"),
    (2, True, True, True, True, "tanh"),
    (3, False, True, False, False, "relu"),
    (3, True, False, True, True, "tanh"),
]


def _pair(num_layers=1, bidirectional=False, batch_first=False, nonlinearity="tanh", backend="cpu", **options):
    """An nn.RNN and a gpurnn.torch.RNN with its weights."""
    reference = nn.RNN(N, H, num_layers, nonlinearity=nonlinearity, batch_first=batch_first,
                       bidirectional=bidirectional, dtype=F64)
    ours = gt.RNN(N, H, num_layers, nonlinearity=nonlinearity, batch_first=batch_first,
                  bidirectional=bidirectional, dtype=F64, backend=backend, **options)
    ours.load_state_dict(reference.state_dict())
    return reference, ours


def _run(module, x, h0, packed, batch_first):
    """Output, h_n and the gradients of a loss that weighs every output and h_n differently."""
    x = x.clone().requires_grad_()
    h0 = None if h0 is None else h0.clone().requires_grad_()
    given = pack_padded_sequence(x, LENGTHS, batch_first=batch_first, enforce_sorted=False) if packed else x
    output, h_n = module(given, h0)
    data = output.data if packed else output
    weights = torch.arange(data.numel(), dtype=F64).reshape(data.shape).sin()
    ((data * weights).sum() + (h_n ** 3).sum()).backward()
    grads = [x.grad] + ([] if h0 is None else [h0.grad]) + [p.grad for p in module.parameters()]
    return [data.detach(), h_n.detach()] + grads


@pytest.mark.parametrize("num_layers,bidirectional,packed,batch_first,hx,nonlinearity", CASES)
def test_equals_nn_rnn(backend, num_layers, bidirectional, packed, batch_first, hx, nonlinearity):
    torch.manual_seed(num_layers)
    reference, ours = _pair(num_layers, bidirectional, batch_first, nonlinearity, backend)
    x = torch.randn((B, T, N) if batch_first else (T, B, N), dtype=F64)
    h0 = torch.randn(num_layers * (2 if bidirectional else 1), B, H, dtype=F64) if hx else None
    expected, got = _run(reference, x, h0, packed, batch_first), _run(ours, x, h0, packed, batch_first)
    assert len(got) == len(expected) == 2 + 1 + hx + 4 * num_layers * (2 if bidirectional else 1)
    for name, a, b in zip(["output", "h_n", "x"] + ["h0"] * hx + [n for n, _ in ours.named_parameters()],
                          got, expected):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10, msg=name)


def test_gradcheck_logistic_bidirectional_packed():
    """nn.RNN has no logistic: finite differences are the reference (tiny sizes)."""
    torch.manual_seed(0)
    module = gt.RNN(2, 2, 2, nonlinearity="logistic", bidirectional=True, dtype=F64, backend="cpu")
    names = [name for name, _ in module.named_parameters()]
    lengths = torch.tensor([3, 1])

    def run(x, h0, *params):
        packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
        output, h_n = torch.func.functional_call(module, dict(zip(names, params)), (packed, h0))
        return output.data, h_n

    x = torch.randn(3, 2, 2, dtype=F64, requires_grad=True)
    h0 = torch.randn(4, 2, 2, dtype=F64, requires_grad=True)
    params = [p.detach().clone().requires_grad_() for p in module.parameters()]
    assert torch.autograd.gradcheck(run, (x, h0, *params), eps=1e-6, atol=1e-8)


@pytest.mark.parametrize("num_layers,bidirectional,packed", [(1, False, False), (1, False, True), (2, True, True)])
def test_truncation_equals_gpurnn_bptt(backend, num_layers, bidirectional, packed):
    """A model + linear head with truncate=τ gets gpurnn.bptt's τ-truncated gradients, in every
    layer and direction."""
    torch.manual_seed(3)
    tau, k, D = 1, 3, 2 if bidirectional else 1
    rnn = gt.RNN(N, H, num_layers, bidirectional=bidirectional, truncate=tau, dtype=F64, backend=backend)
    head = nn.Linear(D * H, k, dtype=F64)
    x = torch.randn(T, B, N, dtype=F64)
    h0 = torch.randn(num_layers * D, B, H, dtype=F64, requires_grad=True)
    targets = torch.randint(0, k, (T, B))
    if packed:
        output, _ = rnn(pack_padded_sequence(x, LENGTHS, enforce_sorted=False), h0)
        flat_targets = pack_padded_sequence(targets, LENGTHS, enforce_sorted=False).data
        loss = nn.functional.cross_entropy(head(output.data), flat_targets, reduction="sum")
    else:
        output, _ = rnn(x, h0)
        loss = nn.functional.cross_entropy(head(output).reshape(-1, k), targets.reshape(-1), reduction="sum")
    loss.backward()

    def as_s0(h):
        """gpurnn's s0 (and ds0) of torch's h0: (B,d) for one cell, (cells,B,d) for more."""
        h = h.detach().numpy()
        return h[0] if len(h) == 1 else h

    params = from_torch_state_dict(_state(rnn, head, lambda p: p.detach()))
    kwargs = dict(lengths=LENGTHS.numpy() if packed else None, s0=as_s0(h0), backend="cpu")
    result = gpurnn.bptt(params, x.numpy(), targets.numpy(), truncate=tau, **kwargs)
    exact = gpurnn.bptt(params, x.numpy(), targets.numpy(), **kwargs)
    np.testing.assert_allclose(loss.item(), result.loss, rtol=1e-12)
    for name, p in rnn.named_parameters():          # b = bias_ih + bias_hh: each gets ∂L/∂b
        if name.startswith("bias_hh"):
            np.testing.assert_array_equal(p.grad.numpy(), getattr(rnn, name.replace("hh", "ih")).grad.numpy())
    got = dict(from_torch_state_dict({key: torch.zeros_like(value) if ".bias_hh" in key else value
                                      for key, value in _state(rnn, head, lambda p: p.grad).items()}).items(),
               s0=as_s0(h0.grad))
    expected = dict(result.grads.items(), s0=result.ds0)
    assert got.keys() == expected.keys()
    for name, value in got.items():
        np.testing.assert_allclose(value, expected[name], rtol=1e-10, atol=1e-12, err_msg=name)
    assert not all(np.allclose(a, b) for (_, a), (_, b) in zip(result.grads.items(), exact.grads.items()))  # τ acted


@pytest.mark.parametrize("num_layers,bidirectional,packed", [(1, False, False), (1, False, True), (2, True, True)])
@pytest.mark.parametrize("tau", [0, 1])
def test_truncation_with_a_loss_on_h_n_matches_the_per_term_reference(backend, num_layers, bidirectional, packed, tau):
    """truncate=τ with a loss on every output and on h_n (each cell's last step then gets a step
    gradient and a final-state gradient at once): torch's gradients against the per-term
    reference of tests/helpers.py, every term walked back through at most τ factors in every
    layer and direction."""
    torch.manual_seed(5)
    k, D = 3, 2 if bidirectional else 1
    rnn = gt.RNN(N, H, num_layers, bidirectional=bidirectional, truncate=tau, dtype=F64, backend=backend)
    head = nn.Linear(D * H, k, dtype=F64)
    x = torch.randn(T, B, N, dtype=F64)
    h0 = torch.randn(num_layers * D, B, H, dtype=F64, requires_grad=True)
    h_n_weights = torch.randn(num_layers * D, B, H, dtype=F64)
    targets = torch.randint(0, k, (T, B))
    lengths = LENGTHS if packed else torch.full((B,), T)
    if packed:
        output, h_n = rnn(pack_padded_sequence(x, lengths, enforce_sorted=False), h0)
        outputs, flat_targets = output.data, pack_padded_sequence(targets, lengths, enforce_sorted=False).data
    else:
        output, h_n = rnn(x, h0)
        outputs, flat_targets = output.reshape(-1, D * H), targets.reshape(-1)
    loss = nn.functional.cross_entropy(head(outputs), flat_targets, reduction="sum") + (h_n_weights * h_n).sum()
    loss.backward()
    params = from_torch_state_dict(_state(rnn, head, lambda p: p.detach()))
    want_loss, want, want_ds0 = reference_stack_bptt(params, x.numpy(), targets.numpy(), lengths.numpy(),
                                                     h0.detach().numpy(), "tanh", tau,
                                                     h_n_grad=h_n_weights.numpy())
    assert loss.item() == pytest.approx(want_loss + (h_n_weights * h_n).sum().item(), rel=1e-12)
    got = from_torch_state_dict({key: torch.zeros_like(value) if ".bias_hh" in key else value
                                 for key, value in _state(rnn, head, lambda p: p.grad).items()})
    for name, value in got.items():
        np.testing.assert_allclose(value, want[name], rtol=1e-10, atol=1e-12, err_msg=name)
    np.testing.assert_allclose(h0.grad.numpy(), want_ds0, rtol=1e-10, atol=1e-12)


def _state(rnn, head, value):
    """The state dict of rnn + head (value(p) of each parameter p) under torch_io's prefixes."""
    return {**{f"rnn.{n}": value(p) for n, p in rnn.named_parameters()},
            **{f"linear.{n}": value(p) for n, p in head.named_parameters()}}


def test_packed_h_n_is_in_the_callers_batch_order(backend):
    """A PackedSequence's h_n comes back in the caller's order: lengths whose sort permutation
    (1, 2, 0) is not its own inverse, so restoring with the sort permutation instead of its
    inverse shows; h_n, outputs and gradients against nn.RNN."""
    torch.manual_seed(2)
    lengths = torch.tensor([3, 5, 4])
    order = torch.sort(lengths, descending=True).indices
    assert not torch.equal(order[order], torch.arange(3))
    reference, ours = _pair(2, True, backend=backend)
    x, h0 = torch.randn(T, 3, N, dtype=F64), torch.randn(4, 3, H, dtype=F64)
    results = []
    for module in (reference, ours):
        xg, hg = x.clone().requires_grad_(), h0.clone().requires_grad_()
        output, h_n = module(pack_padded_sequence(xg, lengths, enforce_sorted=False), hg)
        (output.data.sin().sum() + (h_n * torch.arange(1.0, 4.0, dtype=F64)[:, None]).sum()).backward()
        results.append([h_n.detach(), output.data.detach(), xg.grad, hg.grad])
    for name, a, b in zip(["h_n", "output", "x.grad", "h0.grad"], *results):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-10, msg=name)


def test_a_layers_directions_reach_the_backend_together(backend, monkeypatch):
    """Each layer is one `Backend.layer_forward` and one `layer_backward` call of both its cells,
    as in gpurnn.stack (the CPU runs them on two threads, CUDA in one launch)."""
    be, calls = get_backend(backend), []
    for name, ws in (("layer_forward", 1), ("layer_backward", 3)):       # the position of Ws

        def spy(*args, _run=getattr(be, name), _name=name, _ws=ws):
            calls.append((_name, len(args[_ws])))
            return _run(*args)

        monkeypatch.setattr(be, name, spy)
    _, ours = _pair(2, True, backend=backend)
    _run(ours, torch.randn(T, B, N, dtype=F64), None, True, False)
    assert calls == [("layer_forward", 2)] * 2 + [("layer_backward", 2)] * 2


def test_same_parameters_and_initialisation_as_nn_rnn():
    torch.manual_seed(7)
    reference = nn.RNN(N, H, 2, bidirectional=True, bias=False)
    torch.manual_seed(7)
    ours = gt.RNN(N, H, 2, bidirectional=True, bias=False)
    assert [(n, p.shape) for n, p in ours.named_parameters()] == [(n, p.shape) for n, p in reference.named_parameters()]
    for (name, a), b in zip(ours.state_dict().items(), reference.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    reference.load_state_dict(ours.state_dict())     # and back
    assert [[p.shape for p in w] for w in ours.all_weights] == [[p.shape for p in w] for w in reference.all_weights]
    ours.flatten_parameters()                         # what code written for cuDNN calls: nothing to do


def test_float32_unbatched_and_dropout_like_nn_rnn():
    torch.manual_seed(0)
    reference = nn.RNN(N, H, 3, dropout=0.5)
    ours = gt.RNN(N, H, 3, dropout=0.5)
    ours.load_state_dict(reference.state_dict())
    x = torch.randn(T, N)
    for module in (reference, ours):          # eval first: no dropout
        module.eval()
    expected, got = reference(x), ours(x)
    assert got[0].shape == (T, H) and got[1].shape == (3, H) and got[0].dtype == torch.float32
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    for module in (reference, ours):
        module.train()
    torch.manual_seed(1)
    expected = reference(x)[0]
    torch.manual_seed(1)
    got = ours(x)[0]
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)     # the same masks, between layers
    assert not torch.allclose(got, ours.eval()(x)[0])


@pytest.mark.parametrize("make,message", [
    (lambda: gt.RNN(3, 4, nonlinearity="gelu"), "Unknown nonlinearity 'gelu'. Select from 'tanh', 'relu', 'logistic'"),
    (lambda: gt.RNN(3, 4, truncate=-1), "truncate must be None or an int >= 0"),
    (lambda: gt.RNN(3, 4, backend="tpu"), "backend must be one of"),
])
def test_bad_gpurnn_options_are_named(make, message):
    """gpurnn's own options; nn.RNN's errors are test_torch_parity's."""
    with pytest.raises(ValueError, match=message):
        make()


def test_dropout_on_one_layer_warns_as_nn_rnn():
    with pytest.warns(UserWarning, match="non-zero dropout expects num_layers greater than 1"):
        gt.RNN(3, 4, dropout=0.2)


def test_import_gpurnn_does_not_import_torch():
    code = "import sys, gpurnn, gpurnn.recurrence, gpurnn.diagnostics; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason="needs a CUDA build of torch (the [torch] pin is a CPU build)")
def test_cuda_tensors_stay_on_the_device_on_a_side_stream():
    reference, ours = _pair(2, True, backend="auto")
    reference, ours = reference.cuda(), ours.cuda()
    x = torch.randn(T, B, N, dtype=F64, device="cuda")
    h0 = torch.randn(4, B, H, dtype=F64, device="cuda")
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        expected, got = _run(reference, x, h0, True, False), _run(ours, x, h0, True, False)
    torch.cuda.synchronize()
    for a, b in zip(got, expected):
        assert a.device.type == "cuda"
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
