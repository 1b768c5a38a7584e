"""One layer of the recurrence, both its directions, as PyTorch operators: `gpurnn::layer` and
its backward `gpurnn::layer_backward` (`torch.library.custom_op`), each with a fake-tensor rule
(torch.compile, torch.export) and a vmap rule (torch.func); `Layer` and `LayerBackward`, the
autograd.Functions that run them, carry the derivatives (`layer` picks `Layer`, or the operator
with `Layer`'s autograd rule under torch.compile).

Forward and backward run `gpurnn.recurrence`'s layer functions, as `gpurnn.stack` does, on the
tensors' own memory: CPU tensors cross as NumPy views (`Tensor.numpy()`, `torch.from_numpy`), CUDA
tensors as CuPy arrays and stay on their device. gpurnn's kernels and CuPy's products run on
CuPy's current stream (the default one); DLPack's exchange makes CuPy's stream wait for torch's
current stream on the way in, and torch's current stream waits for CuPy's on the way out, so a
module called under `torch.cuda.stream(s)` is ordered with `s`; each memory is kept alive for
the streams that read it (`cuda_bridge.py`). (Not yet run on a GPU: the tasks that wrote this
had none; the CPU and the CUDA simulator paths are tested, the bridge with stand-ins.)

Weights, the directions (fw, then bw) stacked along a first axis D: w_ih (D,d,n), w_hh (D,d,d) as
torch holds them (gpurnn's U = w_ih[j]ᵀ, W = w_hh[j]ᵀ are views) and b (D,d) = bias_ih + bias_hh
(made in torch by the caller, so autograd routes its gradient to both). Gradients come back
contiguous, in the weights' own layout.

Beyond gpurnn's first derivative: `LayerBackward`'s own backward (second order) and both
Functions' forward-mode derivatives are the exact ones of the torch reference (`reference.py`),
so gradient penalties, `hvp`, `hessian`, `jvp` and `jacfwd` are exact; truncated BPTT
(τ < T − 1) is not the derivative of the forward, and its second derivative is refused.
"""
from __future__ import annotations

import inspect
from typing import Optional

import numpy as np
import torch
from torch import Tensor
from torch.utils import _python_dispatch

from .. import recurrence
from ..arrays import array_module, on_host
from ..backends import get_backend
from ..cell import Cell, activation_code
from ..validation import Problem, _effective_truncate
from . import cuda_bridge, reference


def to_array(tensor):
    """The tensor's memory as a NumPy (CPU) or CuPy (CUDA) array, no copy."""
    tensor = tensor.detach()
    if tensor.device.type == "cpu":
        return tensor.numpy()
    return cuda_bridge.to_cupy(tensor)


def to_tensor(array, device):
    """A torch tensor on `device` over the array's memory (a copy only when the backend's result
    lives elsewhere: the CUDA backend run on CPU tensors, under the simulator)."""
    if on_host(array):
        return torch.from_numpy(array).to(device)
    if array_module(array) is not np:
        return cuda_bridge.to_torch(array).to(device)
    return torch.from_dlpack(array).to(device)      # the simulator's device arrays


def backend_name(backend, device):
    """The backend name for tensors on `device`: "auto" follows the device; CUDA tensors need "cuda"."""
    if backend == "auto":
        return "cuda" if device.type == "cuda" else "cpu"
    if backend == "cpu" and device.type != "cpu":
        raise ValueError(f"backend='cpu' runs CPU tensors only, got tensors on {device}; "
                         f"move the module to the CPU or use backend='auto'/'cuda'")
    return backend


def _run(x, lengths, w_ih, w_hh, b, activation, truncate, backend):
    """The backend, its `Placement` of x (T,B,n) and lengths, and its cells, for one call. The
    module checked shapes and dtypes; values are not checked (a NaN passes through, as in nn.RNN)."""
    T, B, n = x.shape
    d = w_hh.shape[1]
    lengths = np.full(B, T, np.int64) if lengths is None else lengths.numpy()
    inputs = to_array(x)
    problem = Problem(T, B, n, d, 0, np.dtype(inputs.dtype), False, inputs, lengths, None,
                      activation_code(activation), truncate=_effective_truncate(truncate, T))
    run = recurrence.Placement(get_backend(backend_name(backend, x.device)), problem, on_host=False)
    return run, _cells(run.be, w_ih, w_hh, b)


def _cells(be, w_ih, w_hh, b):
    """The backend's `cell.Cell` (U (n,d), W (d,d), b (d,)) of each direction j: w_ih[j]ᵀ, w_hh[j]ᵀ, b[j]."""
    U, W, b = to_array(w_ih), to_array(w_hh), to_array(b)
    return [Cell(be.asarray(U[j].T), be.asarray(W[j].T), be.asarray(b[j])) for j in range(len(W))]


def _layer(x: Tensor, h0: Optional[Tensor], lengths: Optional[Tensor], w_ih: Tensor, w_hh: Tensor, b: Tensor,
             activation: str, truncate: Optional[int], backend: str) -> tuple[Tensor, Tensor, Tensor]:
    """(H (T,B,D·d): each direction's state after reading position t in its columns, 0 past each
    length; h_n (D,B,d): each direction's final state; S (D,T+1,B,d): each direction's states in
    its reading order, S[j,0] = h0[j], for the backward) of x (T,B,n), h0 (D,B,d) or None,
    lengths (B,) int64 CPU or None, w_ih (D,d,n), w_hh (D,d,d), b (D,d); `truncate` acts in the
    backward only."""
    T, B, _ = x.shape
    D, d = w_hh.shape[:2]
    if B == 0:
        return x.new_zeros(T, 0, D * d), x.new_zeros(D, 0, d), x.new_zeros(D, T + 1, 0, d)
    with cuda_bridge.allocations(x.device):
        run, cells = _run(x, lengths, w_ih, w_hh, b, activation, None, backend)
        be = run.be
        s0s = [run.s0] * D if h0 is None else [be.asarray(to_array(s), run.problem.dtype) for s in h0]
        H, Ss = recurrence.layer_states(be, run.inputs, cells, s0s, run.lengths, run.problem.activation)
        S = torch.stack([to_tensor(S, x.device) for S in Ss])
        return to_tensor(H, x.device), S[:, -1].clone(), S


layer_op = torch.library.custom_op("gpurnn::layer", _layer, mutates_args=())


@layer_op.register_fake
def _(x, h0, lengths, w_ih, w_hh, b, activation, truncate, backend):
    T, B, _ = x.shape
    D, d = w_hh.shape[:2]
    return x.new_empty(T, B, D * d), x.new_empty(D, B, d), x.new_empty(D, T + 1, B, d)


def _layer_backward(grad_H: Optional[Tensor], grad_h_n: Optional[Tensor], x: Tensor, S: Tensor,
                      lengths: Optional[Tensor], w_ih: Tensor, w_hh: Tensor, b: Tensor, activation: str,
                      truncate: Optional[int], backend: str, input_grad: bool
                      ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """(dx (T,B,n), or (0,) when not `input_grad`; dh0 (D,B,d); dw_ih (D,d,n), dw_hh (D,d,d),
    db (D,d), contiguous) from grad_H (T,B,D·d) (0 past each length, or None) and grad_h_n
    (D,B,d) (or None); S from `layer_op`."""
    T, B, n = x.shape
    D, d = w_hh.shape[:2]
    if B == 0:
        return (torch.zeros_like(x) if input_grad else x.new_zeros(0)), x.new_zeros(D, 0, d), \
            torch.zeros_like(w_ih), torch.zeros_like(w_hh), torch.zeros_like(b)
    with cuda_bridge.allocations(x.device):
        run, cells = _run(x, lengths, w_ih, w_hh, b, activation, truncate, backend)
        be, problem = run.be, run.problem
        G = None if grad_H is None else be.asarray(to_array(grad_H.contiguous()))
        g_last = None if grad_h_n is None else be.asarray(to_array(grad_h_n.transpose(0, 1).reshape(B, D * d)))
        grads = recurrence.layer_backprop(be, run.inputs, [be.asarray(to_array(S_j)) for S_j in S], cells, G, g_last,
                                          run.lengths, problem.activation, problem.truncate, input_grad=input_grad)
        dU, dW, db = (torch.stack([to_tensor(g, x.device) for g in field]) for field in zip(*grads.cells))
        dx = to_tensor(grads.dX, x.device) if input_grad else x.new_zeros(0)
        dh0 = torch.stack([to_tensor(g, x.device) for g in grads.ds0])
        return dx, dh0, dU.transpose(1, 2).contiguous(), dW.transpose(1, 2).contiguous(), db


layer_backward_op = torch.library.custom_op("gpurnn::layer_backward", _layer_backward, mutates_args=())


@layer_backward_op.register_fake
def _(grad_H, grad_h_n, x, S, lengths, w_ih, w_hh, b, activation, truncate, backend, input_grad):
    D, d = w_hh.shape[:2]
    dx = x.new_empty(x.shape) if input_grad else x.new_empty(0)
    return dx, x.new_empty(D, x.shape[1], d), torch.empty_like(w_ih), torch.empty_like(w_hh), torch.empty_like(b)


def _vmap_by_loop(op):
    """A vmap rule for `op` (torch.func): one call per batch entry, the results stacked along dim 0."""

    def rule(info, in_dims, *args):
        def entry(i):
            return [a if dim is None else a.select(dim, i) for a, dim in zip(args, in_dims)]

        results = [op(*entry(i)) for i in range(info.batch_size)]
        return tuple(torch.stack(parts) for parts in zip(*results)), (0,) * len(results[0])

    torch.library.register_vmap(op, rule)


_vmap_by_loop(layer_op)
_vmap_by_loop(layer_backward_op)


def _direct(*tensors):
    """Whether an operator's body may run as a plain call (the dispatcher's custom-op path costs
    about as much as a small layer): eager tensors, no torch.func transform or autograd vmap, no
    tracing and no Python dispatch mode, all of which must see the operator."""
    return (not torch._C._are_functorch_transforms_active() and _python_dispatch._get_current_dispatch_mode() is None
            and all(t is None or type(t) is Tensor and not torch._C._functorch.is_legacy_batchedtensor(t)
                    for t in tensors))


def layer(x, h0, lengths, w_ih, w_hh, b, activation, truncate, backend):
    """(H, h_n, S) of `layer_op` under autograd: `Layer` eagerly (the torch.func transforms need an
    autograd.Function), the operator with `Layer`'s autograd rule under torch.compile (dynamo
    instantiates an autograd.Function, which PyTorch deprecates with a warning)."""
    if torch.compiler.is_compiling():
        return torch.ops.gpurnn.layer(x, h0, lengths, w_ih, w_hh, b, activation, truncate, backend)
    return Layer.apply(x, h0, lengths, w_ih, w_hh, b, activation, truncate, backend)


class Layer(torch.autograd.Function):
    """`layer_op` under autograd: (x, h0, lengths, w_ih, w_hh, b, activation, truncate, backend)
    -> (H, h_n, S); its backward is `LayerBackward`, its forward-mode derivative the torch
    reference's. An `autograd.Function` with `setup_context` and a generated vmap rule, so the
    torch.func transforms (grad, vjp, jacrev, jvp, jacfwd, hessian, vmap) take it."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, h0, lengths, w_ih, w_hh, b, activation, truncate, backend):
        run = _layer if _direct(x, h0, w_ih, w_hh, b) else torch.ops.gpurnn.layer
        return run(x, h0, lengths, w_ih, w_hh, b, activation, truncate, backend)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, h0, lengths, w_ih, w_hh, b, activation, truncate, backend = inputs
        ctx.mark_non_differentiable(output[2])
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(x, h0, lengths, w_ih, w_hh, b, output[2])
        ctx.save_for_forward(x, h0, lengths, w_ih, w_hh, b, output[2])
        ctx.options = (activation, truncate, backend)

    @staticmethod
    def backward(ctx, grad_H, grad_h_n, _grad_S):
        if grad_H is None and grad_h_n is None:
            return (None,) * 9
        x, h0, lengths, w_ih, w_hh, b, S = ctx.saved_tensors
        dx, dh0, dw_ih, dw_hh, db = LayerBackward.apply(grad_H, grad_h_n, x, h0, S, lengths, w_ih, w_hh, b,
                                                        *ctx.options, ctx.needs_input_grad[0])
        needs = ctx.needs_input_grad
        return (dx if needs[0] else None, dh0 if needs[1] else None, None, dw_ih if needs[3] else None,
                dw_hh if needs[4] else None, db if needs[5] else None, None, None, None)

    @staticmethod
    def jvp(ctx, x_t, h0_t, _lengths_t, w_ih_t, w_hh_t, b_t, *_options_t):
        x, h0, lengths, w_ih, w_hh, b, S = ctx.saved_tensors
        h0 = S[:, 0] if h0 is None else h0
        primals = (x, h0, w_ih, w_hh, b)
        tangents = _tangents(primals, (x_t, h0_t, w_ih_t, w_hh_t, b_t))
        _, (H_t, h_n_t) = torch.func.jvp(lambda *p: reference.layer(*p[:2], lengths, *p[2:], ctx.options[0]),
                                         primals, tangents)
        return H_t, h_n_t, None


class LayerBackward(torch.autograd.Function):
    """`layer_backward_op` under autograd, whose own derivatives (second order) are exact: those
    of the torch reference's vector-Jacobian product (`reference.py`). h0 is not read (S[:,0]
    holds it): it is an argument so that the second derivative reaches it."""

    generate_vmap_rule = True

    @staticmethod
    def forward(grad_H, grad_h_n, x, h0, S, lengths, w_ih, w_hh, b, activation, truncate, backend, input_grad):
        run = _layer_backward if _direct(grad_H, grad_h_n, x, S, w_ih, w_hh, b) else torch.ops.gpurnn.layer_backward
        return run(grad_H, grad_h_n, x, S, lengths, w_ih, w_hh, b, activation, truncate, backend, input_grad)

    @staticmethod
    def setup_context(ctx, inputs, output):
        grad_H, grad_h_n, x, h0, S, lengths, w_ih, w_hh, b, activation, truncate, backend, input_grad = inputs
        ctx.set_materialize_grads(False)
        saved = (grad_H, grad_h_n, x, S[:, 0] if h0 is None else h0, lengths, w_ih, w_hh, b)
        ctx.save_for_backward(*saved)
        ctx.save_for_forward(*saved)
        ctx.options = (activation, truncate, input_grad, grad_H is None, grad_h_n is None, h0 is None)

    @staticmethod
    def backward(ctx, g_dx, *cotangents):
        primals, lengths = _second_order(ctx)
        cotangents = _tangents(primals[:5], (g_dx if ctx.options[2] else None, *cotangents))
        g_x, g_h0, g_w_ih, g_w_hh, g_b, g_grad_H, g_grad_h_n = reference.layer_vjp_vjp(
            *primals, lengths, ctx.options[0], cotangents)
        no_grad_H, no_grad_h_n, no_h0 = ctx.options[3:]
        return (None if no_grad_H else g_grad_H, None if no_grad_h_n else g_grad_h_n, g_x, None if no_h0 else g_h0,
                None, None, g_w_ih, g_w_hh, g_b, None, None, None, None)

    @staticmethod
    def jvp(ctx, grad_H_t, grad_h_n_t, x_t, h0_t, _S_t, _lengths_t, w_ih_t, w_hh_t, b_t, *_options_t):
        primals, lengths = _second_order(ctx)
        tangents = _tangents(primals, (x_t, h0_t, w_ih_t, w_hh_t, b_t, grad_H_t, grad_h_n_t))
        _, result_t = torch.func.jvp(lambda *p: reference.layer_vjp(*p, lengths, ctx.options[0]), primals, tangents)
        return result_t if ctx.options[2] else (primals[0].new_zeros(0), *result_t[1:])


def _second_order(ctx):
    """`LayerBackward`'s primals (x, h0, w_ih, w_hh, b, grad_H, grad_h_n), zeros for a None
    output gradient, and lengths; refused for truncated BPTT, which is not a derivative."""
    grad_H, grad_h_n, x, h0, lengths, w_ih, w_hh, b = ctx.saved_tensors
    truncate, T = ctx.options[1], x.shape[0]
    if _effective_truncate(truncate, T) is not None:
        raise RuntimeError(f"gpurnn.torch.RNN: second-order gradients of truncated BPTT (truncate={truncate} "
                           f"< T - 1 = {T - 1}) are not defined; take them with truncate=None")
    D, d = w_hh.shape[:2]
    grad_H = x.new_zeros(T, x.shape[1], D * d) if grad_H is None else grad_H
    grad_h_n = torch.zeros_like(h0) if grad_h_n is None else grad_h_n
    return (x, h0, w_ih, w_hh, b, grad_H, grad_h_n), lengths


def _tangents(like, given):
    """The given tangents (or cotangents), zeros of `like`'s shapes for those that are None."""
    return tuple(torch.zeros_like(p) if g is None else g for p, g in zip(like, given))


layer_op.register_autograd(Layer.backward, setup_context=Layer.setup_context)
for _function in (Layer, LayerBackward):      # Function.apply binds its arguments by signature on every call
    _function.forward.__signature__ = inspect.signature(_function.forward)
