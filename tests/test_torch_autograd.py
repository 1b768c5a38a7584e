"""gpurnn.torch.RNN beyond first-order eager autograd, against nn.RNN in float64: second order
(gradgradcheck, hvp, hessian, a gradient penalty), batched gradients (gradcheck's batched check,
jacobian(vectorize=True), is_grads_batched), the torch.func transforms, torch.compile and
torch.export. Tiny sizes: the second derivative runs the torch reference."""
import pytest

torch = pytest.importorskip("torch", reason="gpurnn.torch needs the [torch] extra (part of [test])")
from torch import nn  # noqa: E402
from torch.nn.utils.rnn import pack_padded_sequence  # noqa: E402

import gpurnn.torch as gt  # noqa: E402

F64 = torch.float64


def _pair(nonlinearity="tanh", **options):
    """An nn.RNN (2 layers, bidirectional; tanh in place of logistic, which it lacks) and a
    gpurnn.torch.RNN with its weights."""
    torch.manual_seed(0)
    ours = gt.RNN(2, 3, 2, nonlinearity=nonlinearity, bidirectional=True, dtype=F64, backend="cpu", **options)
    reference = nn.RNN(2, 3, 2, nonlinearity=nonlinearity if nonlinearity != "logistic" else "tanh",
                       bidirectional=True, dtype=F64)
    reference.load_state_dict(ours.state_dict())
    return reference, ours


def _inputs():
    torch.manual_seed(1)
    x = torch.randn(4, 2, 2, dtype=F64, requires_grad=True)
    h0 = torch.randn(4, 2, 3, dtype=F64, requires_grad=True)
    return x, h0


def _loss_of(module, packed=False):
    """(x, h0, *parameters) -> a scalar mixing every output and h_n nonlinearly."""
    names = [name for name, _ in module.named_parameters()]

    def loss(x, h0, *params):
        given = pack_padded_sequence(x, torch.tensor([4, 2]), enforce_sorted=False) if packed else x
        output, h_n = torch.func.functional_call(module, dict(zip(names, params)), (given, h0))
        output = output.data if packed else output
        return output.sin().sum() + (h_n ** 2).sum()

    return loss


def _params(module):
    return [p.detach().clone().requires_grad_() for p in module.parameters()]


@pytest.mark.parametrize("nonlinearity,packed", [("tanh", False), ("relu", True)])
def test_gradgradcheck(nonlinearity, packed):
    _, ours = _pair(nonlinearity)
    assert torch.autograd.gradgradcheck(_loss_of(ours, packed), (*_inputs(), *_params(ours)), fast_mode=packed)


def test_logistic_gradgradcheck_by_finite_differences():
    """nn.RNN has no logistic: finite differences of the gradient are the reference."""
    _, ours = _pair("logistic")
    assert torch.autograd.gradgradcheck(_loss_of(ours), (*_inputs(), *_params(ours)))


@pytest.mark.parametrize("packed", [False, True])
def test_hvp_and_hessian_equal_nn_rnns(packed):
    """The silent-zero failure of a once-differentiable backward: hvp must equal nn.RNN's."""
    reference, ours = _pair()
    args = (*_inputs(), *_params(ours))
    torch.manual_seed(2)
    v = tuple(torch.randn_like(a) for a in args)
    expected = torch.autograd.functional.hvp(_loss_of(reference, packed), args, v)[1]
    got = torch.autograd.functional.hvp(_loss_of(ours, packed), args, v)[1]
    assert all(g.abs().max() > 0 for g in got[:3])
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    x = args[0]
    torch.testing.assert_close(torch.autograd.functional.hessian(lambda x: _loss_of(ours)(x, *args[1:]), x),
                               torch.autograd.functional.hessian(lambda x: _loss_of(reference)(x, *args[1:]), x),
                               rtol=1e-10, atol=1e-12)


def test_hvp_in_the_parameters_alone_equals_nn_rnns():
    """Curvature of the weights with the input fixed (the first layer's input gradient not asked)."""
    results = []
    for module in _pair():
        x, h0 = (t.detach() for t in _inputs())
        params = _params(module)
        torch.manual_seed(3)
        v = tuple(torch.randn_like(p) for p in params)
        results.append(torch.autograd.functional.hvp(lambda *p: _loss_of(module)(x, h0, *p), tuple(params), v)[1])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


# torch's forward-mode decompositions (torch/_decomp/decompositions_for_jvp.py) script their rules on import
@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_forward_mode_jacfwd_and_func_hessian_equal_nn_rnns():
    reference, ours = _pair()
    x, h0 = (t.detach() for t in _inputs())
    for transform in (torch.func.jacfwd(lambda x, m: m(x, h0)[0]),
                      torch.func.hessian(lambda x, m: m(x, h0)[0].sin().sum())):
        torch.testing.assert_close(transform(x, ours), transform(x, reference), rtol=1e-10, atol=1e-12)


def test_gradient_penalty_equals_nn_rnns():
    """(∂L/∂x)² then .backward(): what once raised 'differentiate twice ... once_differentiable'."""
    grads = []
    for module in _pair():
        x, h0 = _inputs()
        (dx,) = torch.autograd.grad(module(x, h0)[0].tanh().sum(), x, create_graph=True)
        dx.pow(2).sum().backward()
        grads.append([x.grad, h0.grad] + [p.grad for p in module.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_second_order_of_truncated_bptt_is_refused():
    _, ours = _pair(truncate=1)
    x, h0 = _inputs()
    (dx,) = torch.autograd.grad(ours(x, h0)[0].sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match=r"second-order gradients of truncated BPTT \(truncate=1 < T - 1 = 3\)"):
        dx.pow(2).sum().backward()


def test_batched_gradients():
    """gradcheck's batched-gradient check, jacobian(vectorize=True) and is_grads_batched: the
    backward under PyTorch's vmap."""
    reference, ours = _pair()
    args = (*_inputs(), *_params(ours))
    assert torch.autograd.gradcheck(_loss_of(ours), args, check_batched_grad=True)
    x = args[0]
    torch.testing.assert_close(torch.autograd.functional.jacobian(lambda x: ours(x)[0], x, vectorize=True),
                               torch.autograd.functional.jacobian(lambda x: reference(x)[0], x, vectorize=True),
                               rtol=1e-10, atol=1e-12)
    got, expected = [torch.autograd.grad(m(x)[1], x, torch.eye(24, dtype=F64).reshape(24, 4, 2, 3),
                                         is_grads_batched=True)[0] for m in (ours, reference)]
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


def test_torch_func_transforms():
    reference, ours = _pair()
    x, _ = _inputs()
    for transform in (torch.func.grad(lambda x, m: m(x)[0].sin().sum()),
                      torch.func.jacrev(lambda x, m: m(x)[1])):
        torch.testing.assert_close(transform(x, ours), transform(x, reference), rtol=1e-10, atol=1e-12)
    xs = torch.randn(3, 4, 2, 2, dtype=F64)          # nn.RNN has no vmap rule: a loop is its reference
    torch.testing.assert_close(torch.func.vmap(lambda x: ours(x)[0])(xs),
                               torch.stack([reference(x)[0] for x in xs]), rtol=1e-10, atol=1e-12)


def test_torch_compile_fullgraph_on_a_fresh_module():
    torch._dynamo.reset()
    reference, ours = _pair()
    x, h0 = _inputs()
    compiled = torch.compile(ours, fullgraph=True, backend="aot_eager")
    for module in (reference, compiled):
        output, h_n = module(x, h0)
        (output.sin().sum() + h_n.sum()).backward()
    torch.testing.assert_close(compiled(x, h0), reference(x, h0), rtol=1e-10, atol=1e-12)
    for (name, a), b in zip(ours.named_parameters(), reference.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-10, atol=1e-12, msg=name)


def test_torch_export_runs_the_registered_operator():
    reference, ours = _pair()
    x, h0 = (t.detach() for t in _inputs())
    program = torch.export.export(ours, (x, h0))
    assert "gpurnn.layer" in str(program.graph)
    torch.testing.assert_close(program.module()(x, h0), reference(x, h0), rtol=1e-10, atol=1e-12)
