"""PyTorch's own tests of nn.RNN, each run on nn.RNN (the control) and on gpurnn.torch.RNN.

Ported as data and plain code (no torch.testing._internal import at test time) from PyTorch's
test/test_modules.py (TestModule: forward with the reference of unbatched input, factory
kwargs, repr, pickle, non-contiguous tensors, gradcheck, gradgradcheck, memory format, device
context, errors) with nn.RNN's ModuleInfo samples and error inputs
(torch/testing/_internal/common_modules.py: module_inputs_torch_nn_RNN_GRU,
module_error_inputs_torch_nn_RNN_GRU), and from test/test_nn.py's RNN tests (input of batch
size 0, nonlinearity, dropout between layers, argument checks, initial hidden state, retained
graphs, weight norm). The gradient checks run every sample in fast mode and a few in full, to
stay small on two cores. CUDA-only cases are marked `cuda`.
"""
import io
import itertools
import re

import pytest

torch = pytest.importorskip("torch", reason="gpurnn.torch needs the [torch] extra (part of [test])")
from torch import nn  # noqa: E402

import gpurnn.torch as gt  # noqa: E402

def needs_cuda(test):
    """Marked `cuda`: runs where torch sees a GPU (the [test] pin is a CPU build)."""
    return pytest.mark.cuda(pytest.mark.skipif(not torch.cuda.is_available(),
                                               reason="needs a CUDA build of torch and a GPU")(test))


@pytest.fixture(params=[nn.RNN, gt.RNN], ids=["nn.RNN", "gpurnn"])
def RNN(request):
    """The class under test: nn.RNN, the control, or gpurnn.torch.RNN."""
    return request.param


# module_inputs_torch_nn_RNN_GRU(is_rnn=True): unbatched input (3, 2), with and without hx
SAMPLES = []
for nonlinearity, bias, batch_first, bidirectional in itertools.product(("relu", "tanh"), (False, True),
                                                                       (False, True), (False, True)):
    common = dict(num_layers=2, batch_first=batch_first, bias=bias, bidirectional=bidirectional,
                  nonlinearity=nonlinearity)
    SAMPLES.append((dict(input_size=2, hidden_size=2, **common), False))
    SAMPLES.append((dict(input_size=2, hidden_size=3, **common), True))
SAMPLE_IDS = [f"{c['nonlinearity']}-bias{c['bias']:d}-bf{c['batch_first']:d}-bi{c['bidirectional']:d}-hx{hx:d}"
              for c, hx in SAMPLES]
FEW = [0, 7, 13, 30]         # the samples the full (slow-mode) gradient checks run


def _forward_args(config, with_hx, dtype, requires_grad=False, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(3, 2, generator=generator, dtype=dtype) * 18 - 9         # make_tensor's range [-9, 9]
    args = [x]
    if with_hx:
        args.append(torch.rand(4 if config["bidirectional"] else 2, 3, generator=generator, dtype=dtype) * 18 - 9)
    return [a.requires_grad_(requires_grad) for a in args]


def _module(RNN, config, dtype, training=False):
    torch.manual_seed(0)
    return RNN(**config).to(dtype).train(training)


def _no_batch_dim_reference(m, x, hx=None):
    """common_modules.no_batch_dim_reference_rnn_gru: the same input as a batch of one."""
    batch_dim = 0 if m.batch_first else 1
    output, h_n = m(x.unsqueeze(batch_dim), None if hx is None else hx.unsqueeze(1))
    return output.squeeze(batch_dim), h_n.squeeze(1)


# ---- test_modules.py: TestModule ----

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("training", [True, False])
def test_forward(RNN, dtype, training):
    for config, with_hx in SAMPLES:
        m = _module(RNN, config, dtype, training)
        args = _forward_args(config, with_hx, dtype)
        torch.testing.assert_close(m(*args), _no_batch_dim_reference(m, *args))
        {torch.float32: m.float, torch.float64: m.double}[dtype]()
        m(*args)
        assert all(p.dtype == dtype and p.device.type == "cpu" for p in m.parameters())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_factory_kwargs(RNN, dtype):
    for config, _ in SAMPLES:
        m = RNN(**config, device="cpu", dtype=dtype)
        assert all(p.dtype == dtype and p.device == torch.device("cpu") for p in m.parameters())


def test_repr_and_pickle(RNN):
    for config, with_hx in SAMPLES[:4]:
        m = _module(RNN, config, torch.float64)
        assert repr(m).startswith("RNN(2, ") and str(m) == repr(m)
        args = _forward_args(config, with_hx, torch.float64)
        buffer = io.BytesIO()
        torch.save(m, buffer)
        buffer.seek(0)
        copy = torch.load(buffer, weights_only=False)
        torch.testing.assert_close(copy(*args), m(*args))


def _backward(outputs, grads):
    for output, grad in zip(outputs, grads):
        output.backward(grad, retain_graph=True)


def test_non_contiguous_tensors(RNN):
    dtype = torch.float64
    for config, with_hx in SAMPLES:
        m = _module(RNN, config, dtype, training=True)
        args = _forward_args(config, with_hx, dtype, requires_grad=True)
        expected = m(*args)
        grad_outputs = [o.detach().clone().normal_() for o in expected]
        _backward(expected, grad_outputs)
        expected_grads = [a.grad.clone() for a in args] + [p.grad.clone() for p in m.parameters()]

        def non_contiguous(t):
            out = torch.repeat_interleave(t.detach(), 2, dim=-1)[..., ::2]
            return out.requires_grad_(t.requires_grad)

        for inputs, g_out in itertools.product([args, [non_contiguous(a) for a in args]],
                                               [grad_outputs, [non_contiguous(g) for g in grad_outputs]]):
            m.zero_grad()
            for a in inputs:
                a.grad = None
            outputs = m(*inputs)
            _backward(outputs, g_out)
            torch.testing.assert_close(outputs, expected)
            torch.testing.assert_close([a.grad for a in inputs] + [p.grad for p in m.parameters()], expected_grads,
                                       atol=1e-4, rtol=0)


def _gradient_check(RNN, config, with_hx, check, fast_mode):
    """TestModule._test_gradients_helper: the total derivative, then each parameter's alone."""
    m = _module(RNN, config, torch.float64, training=True)
    args = _forward_args(config, with_hx, torch.float64, requires_grad=True)
    params = tuple(m.parameters())

    def run(*flat):
        for p, value in zip(params, flat[len(args):]):
            assert p is value
        return tuple(m(*flat[:len(args)]))

    assert check(run, (*args, *params), fast_mode=fast_mode)
    if not fast_mode:
        for p in params:
            p.requires_grad_(False)
        for p in params:
            p.requires_grad_(True)
            assert check(run, (*args, *params), fast_mode=fast_mode)
            p.requires_grad_(False)


@pytest.mark.parametrize("index", range(len(SAMPLES)), ids=SAMPLE_IDS)
def test_grad_fast(RNN, index):
    _gradient_check(RNN, *SAMPLES[index], torch.autograd.gradcheck, fast_mode=True)


@pytest.mark.parametrize("index", FEW, ids=[SAMPLE_IDS[i] for i in FEW])
@pytest.mark.parametrize("check", [torch.autograd.gradcheck, torch.autograd.gradgradcheck],
                         ids=["grad", "gradgrad"])
def test_grad_and_gradgrad(RNN, index, check):
    _gradient_check(RNN, *SAMPLES[index], check, fast_mode=check is torch.autograd.gradgradcheck)


def test_memory_format(RNN):
    """Outputs and every gradient contiguous (weight gradients were transposed views once)."""
    for config, with_hx in SAMPLES:
        m = _module(RNN, config, torch.float32, training=True)
        args = _forward_args(config, with_hx, torch.float32, requires_grad=True)
        outputs = m(*args)
        assert all(o.is_contiguous() for o in outputs)
        grads = torch.autograd.grad(outputs, [*args, *m.parameters()], [torch.rand_like(o) for o in outputs])
        assert all(g.is_contiguous() for g in grads)
        nn.utils.parameters_to_vector(grads[len(args):])


def test_device_ctx_init(RNN):
    for config, _ in SAMPLES:
        on_cpu = RNN(**config)
        with torch.device("meta"):
            on_meta = RNN(**config)
        for a, b in zip(on_meta.parameters(), on_cpu.parameters()):
            assert a.is_meta and (a.shape, a.stride(), a.dtype) == (b.shape, b.stride(), b.dtype)


def test_training_flag_is_read_only_where_it_matters(RNN):
    """test_if_train_and_eval_modes_differ: without `training`, forward works or names it."""
    for config, with_hx in SAMPLES[:4]:
        m = _module(RNN, config, torch.float32)
        delattr(m, "training")
        try:
            m(*_forward_args(config, with_hx, torch.float32))
        except AttributeError as error:
            assert "'training'" in str(error)


# module_error_inputs_torch_nn_RNN_GRU: (constructor args, kwargs, forward input or None, error type, regex)
ERRORS = [
    ((10, 0, 1), {}, None, ValueError, "hidden_size must be greater than zero"),
    ((10, 10, 0), {}, None, ValueError, "num_layers must be greater than zero"),
    ((3, 5), {}, "mismatched dtype", ValueError,
     r"RNN input dtype .* does not match weight dtype .* "
     r"Convert input: input\.to\(.*\), or convert model: model\.to\(.*\)"),
    ((3, 5), {"bias": 0}, None, TypeError, "bias should be of type bool, got: int"),
    ((3, 5), {"bias": 1}, None, TypeError, "bias should be of type bool, got: int"),
    ((3, 5), {"bias": "True"}, None, TypeError, "bias should be of type bool, got: str"),
    ((3, 5), {"batch_first": 0}, None, TypeError, "batch_first should be of type bool, got: int"),
    ((3, 5), {"batch_first": 1}, None, TypeError, "batch_first should be of type bool, got: int"),
    ((3, 5), {"batch_first": "False"}, None, TypeError, "batch_first should be of type bool, got: str"),
    ((3.0, 5), {}, None, TypeError, "input_size should be of type int, got: float"),
    (("10", 5), {}, None, TypeError, "input_size should be of type int, got: str"),
    ((0, 5), {}, None, ValueError, "input_size must be greater than zero"),
    ((-1, 5), {}, None, ValueError, "input_size must be greater than zero"),
    ((3, 5.0), {}, None, TypeError, "hidden_size should be of type int, got: float"),
    # beyond the ModuleInfo: nn.RNN's other errors, same types and words
    ((3, 5), {"proj_size": 2}, None, ValueError, "proj_size argument is only supported for LSTM, not RNN or GRU"),
    ((3, 5), {"nonlinearity": "garbage"}, None, ValueError, "Unknown nonlinearity 'garbage'"),
    ((3, 5, 2), {"dropout": 1.5}, None, ValueError, r"dropout should be a number in range \[0, 1\]"),
    ((3, 5), {}, torch.zeros(0, 2, 3), RuntimeError, "Expected sequence length to be larger than 0 in RNN"),
    ((3, 5), {}, torch.zeros(2, 1, 1, 3), ValueError, "RNN: Expected input to be 2D or 3D, got 4D tensor instead"),
    ((3, 5), {}, (torch.zeros(2, 3), torch.zeros(1, 1, 5)), RuntimeError,
     "For unbatched 2-D input, hx should also be 2-D but got 3-D tensor"),
    ((3, 5), {}, (torch.zeros(2, 1, 3), torch.zeros(1, 5)), RuntimeError,
     "For batched 3-D input, hx should also be 3-D but got 2-D tensor"),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("args,kwargs,forward,error,regex", ERRORS,
                         ids=[f"{e[3].__name__}:{e[4][:40]}" for e in ERRORS])
def test_errors(RNN, dtype, args, kwargs, forward, error, regex):
    if forward is None:
        with pytest.raises(error, match=regex):
            RNN(*args, **kwargs)
        return
    m = RNN(*args, **kwargs, dtype=dtype)
    if isinstance(forward, str):            # the other float dtype, as the ModuleInfo makes it
        forward = (torch.zeros(2, 4, 3, dtype=torch.float64 if dtype == torch.float32 else torch.float32),)
    else:
        forward = tuple(t.to(dtype) for t in (forward if isinstance(forward, tuple) else (forward,)))
    with pytest.raises(error, match=regex):
        m(*forward)


# ---- test_nn.py: the RNN tests ----

def test_RNN_input_size_zero(RNN):
    """A batch of 0 sequences: empty outputs, and backward does not fail."""
    x = torch.zeros(5, 0, 3, requires_grad=True)
    rnn = RNN(input_size=3, hidden_size=4)
    output, h_n = rnn(x)
    assert output.shape == (5, 0, 4) and h_n.shape == (1, 0, 4)
    output.sum().backward()
    assert x.grad.shape == x.shape and all(p.grad.abs().sum() == 0 for p in rnn.parameters())


def test_RNN_nonlinearity(RNN):
    assert RNN(1, 10).nonlinearity == "tanh"
    assert RNN(1, 10, nonlinearity="relu").nonlinearity == "relu"
    assert RNN(2, 3, 1, "relu").nonlinearity == "relu"          # test_RNN_nonlinearity_passed_as_arg
    with pytest.raises(ValueError, match="Unknown nonlinearity"):
        RNN(1, 10, nonlinearity="garbage")


def _check_dropout(RNN, device):
    """test_RNN_dropout: dropout sits between the layers only, scaled by 1/(1-p)."""
    for p, train in itertools.product((0, 0.276, 0.731, 1), (True, False)):
        rnn = RNN(10, 1000, 2, bias=False, dropout=p, nonlinearity="relu").to(device).train(train)
        with torch.no_grad():
            for weight in rnn.parameters():
                weight.fill_(1)
        output, hy = rnn(torch.ones(1, 1, 10, device=device), torch.zeros(2, 1, 1000, device=device))
        assert output.min() == output.max()
        value = output[0, 0, 0].item()
        if p == 0 or not train:
            assert value == 10000
        elif p == 1:
            assert value == 0
        else:
            assert 8000 < value < 12000
            remainder = (value * (1 - p)) % 10
            assert min(remainder, 10 - remainder) < 1e-2
        assert hy[0].min() == hy[0].max() and hy[1].min() == hy[1].max()
        assert hy[0, 0, 0].item() == 10 and hy[1, 0, 0].item() == value


def test_RNN_dropout(RNN):
    _check_dropout(RNN, "cpu")


def test_RNN_dropout_warns_for_one_layer(RNN):
    with pytest.warns(UserWarning, match="non-zero dropout expects num_layers greater than 1"):
        RNN(3, 4, dropout=0.2)


def test_rnn_args_check(RNN):
    """Wrong batch sizes, input sizes and hidden sizes are RuntimeErrors."""
    input_size, hidden_size, num_layers, batch, seq_len, bad = 3, 5, 2, 4, 6, 7
    correct_input, correct_hidden = (seq_len, batch, input_size), (num_layers, batch, hidden_size)

    def update(shape, dim, size):
        return shape[:dim] + (size,) + shape[dim + 1:]

    for input_shape, hidden_shape in [(update(correct_input, 1, bad), correct_hidden),
                                      (correct_input, update(correct_hidden, 1, bad)),
                                      (update(correct_input, 2, bad), correct_hidden),
                                      (correct_input, update(correct_hidden, 2, bad)),
                                      (correct_input, update(correct_hidden, 0, bad))]:
        model = RNN(input_size, hidden_size, num_layers)
        with pytest.raises(RuntimeError):
            model(torch.randn(input_shape), torch.randn(hidden_shape))
    with pytest.raises(RuntimeError, match=re.escape("input.size(-1) must be equal to input_size. Expected 3, got 7")):
        RNN(3, 5)(torch.randn(2, 1, 7))
    with pytest.raises(RuntimeError, match=re.escape("Expected hidden size (1, 1, 5), got [1, 2, 5]")):
        RNN(3, 5)(torch.randn(2, 1, 3), torch.randn(1, 2, 5))


def test_rnn_initial_hidden_state(RNN):
    rnn = RNN(30, 20, 2)
    x = torch.randn(10, 32, 30)
    output1, hidden1 = rnn(x, torch.zeros(2, 32, 20))
    output2, hidden2 = rnn(x)
    torch.testing.assert_close(output1, output2)
    torch.testing.assert_close(hidden1, hidden2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rnn_retain_variables(RNN, dtype):
    rnn = RNN(10, 20, num_layers=2).to(dtype)
    x = torch.randn(5, 6, 10, dtype=dtype, requires_grad=True)
    output = rnn(x)
    output[0].sum().backward(retain_graph=True)
    grads = [x.grad.clone()] + [p.grad.clone() for p in rnn.parameters()]
    for _ in range(4):
        rnn.zero_grad()
        x.grad.zero_()
        output[0].sum().backward(retain_graph=True)
        torch.testing.assert_close([x.grad] + [p.grad for p in rnn.parameters()], grads)


@pytest.mark.filterwarnings("ignore:`torch.nn.utils.weight_norm` is deprecated:FutureWarning")   # the API ported
def test_rnn_weight_norm(RNN):
    """weight_norm on one weight turns it into a plain tensor in _flat_weights, and back; the
    forward reads the reparametrised weight."""
    torch.manual_seed(0)
    m = RNN(4, 4)
    x = torch.randn(3, 2, 4)
    m = nn.utils.weight_norm(m, name="weight_ih_l0")
    assert sum(isinstance(p, nn.Parameter) for p in m._flat_weights) == 3
    m(x)[0].sum().backward()
    assert m.weight_ih_l0_g.grad is not None and m.weight_ih_l0_v.grad is not None
    m = nn.utils.remove_weight_norm(m, name="weight_ih_l0")
    assert sum(isinstance(p, nn.Parameter) for p in m._flat_weights) == 4
    assert "weight_ih_l0" in dict(m.named_parameters()) and "weight_ih_l0_v" not in dict(m.named_parameters())


# ---- nn.RNN's contract beyond its tests: NaN, 16-bit dtypes, autocast ----

def test_nan_in_the_input_passes_through(RNN):
    torch.manual_seed(0)
    x = torch.randn(3, 1, 3)
    x[1, 0, 0] = float("nan")
    output, h_n = RNN(3, 4)(x)
    assert not output[0].isnan().any() and output[1:].isnan().all() and h_n.isnan().all()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_16_bit_modules(RNN, dtype):
    torch.manual_seed(0)
    reference = nn.RNN(3, 4, 2)
    m = RNN(3, 4, 2)
    m.load_state_dict(reference.state_dict())
    x = torch.randn(5, 2, 3, requires_grad=True)
    output, h_n = m.to(dtype)(x.to(dtype))
    assert output.dtype == h_n.dtype == dtype
    output.float().sum().backward()
    assert all(p.grad.dtype == dtype for p in m.parameters()) and x.grad.dtype == torch.float32
    torch.testing.assert_close(output.float(), reference(x)[0], atol=0.05, rtol=0.05)


def test_autocast_on_the_cpu(RNN):
    torch.manual_seed(0)
    m = RNN(3, 4)
    x = torch.randn(5, 2, 3)
    expected = m(x)[0]
    with torch.autocast("cpu"):
        output, h_n = m(x)
    assert output.dtype == h_n.dtype == torch.bfloat16
    torch.testing.assert_close(output.float(), expected, atol=0.05, rtol=0.05)


# ---- CUDA only ----

@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("training", [True, False])
def test_cpu_gpu_parity(RNN, dtype, training):
    for config, with_hx in SAMPLES:
        cpu = _module(RNN, config, dtype, training)
        gpu = _module(RNN, config, dtype, training).cuda()
        args = _forward_args(config, with_hx, dtype, requires_grad=True)
        gpu_args = [a.detach().cuda().requires_grad_() for a in args]
        outputs, gpu_outputs = cpu(*args), gpu(*gpu_args)
        torch.testing.assert_close([o.cpu() for o in gpu_outputs], list(outputs), atol=4e-4, rtol=0)
        grads = [o.detach().clone().normal_() for o in outputs]
        _backward(outputs, grads)
        _backward(gpu_outputs, [g.cuda() for g in grads])
        torch.testing.assert_close([a.grad.cpu() for a in gpu_args] + [p.grad.cpu() for p in gpu.parameters()],
                                   [a.grad for a in args] + [p.grad for p in cpu.parameters()], atol=4e-4, rtol=0)


@needs_cuda
def test_multiple_device_transfer(RNN):
    for config, with_hx in SAMPLES[:4]:
        m = _module(RNN, config, torch.float32)
        args = _forward_args(config, with_hx, torch.float32)
        for device in ("cuda", "cpu", "cuda"):
            m.to(device)
            m(*(a.to(device) for a in args))
            assert all(p.device.type == device for p in m.parameters())


@needs_cuda
def test_RNN_dropout_cuda(RNN):
    _check_dropout(RNN, "cuda")


@needs_cuda
def test_rnn_check_device(RNN):
    """Input, hx and module on different devices: a RuntimeError."""
    m = RNN(3, 5).cuda()
    with pytest.raises(RuntimeError):
        m(torch.randn(2, 1, 3))
    with pytest.raises(RuntimeError):
        m(torch.randn(2, 1, 3, device="cuda"), torch.randn(1, 1, 5))
