"""One layer and one direction of the recurrence as a `torch.autograd.Function`.

Forward runs `gpurnn.recurrence.forward`, backward `gpurnn.recurrence.backward`, on the tensors'
own memory: CPU tensors cross as NumPy views (`Tensor.numpy()`, `torch.from_numpy`), CUDA
tensors as CuPy arrays through DLPack and stay on their device. gpurnn's kernels and CuPy's
products run on CuPy's current stream (the default one); DLPack's exchange makes each consumer
wait for the producer (`__dlpack__(stream=...)`): gpurnn's stream for torch's current stream's
work on the way in, torch's current stream for gpurnn's on the way out, so a module called
under `torch.cuda.stream(s)` is ordered with `s`. (Not yet run on a GPU: the task that wrote
this had none; the CPU and the CUDA simulator paths are tested.) Weights follow
gpurnn's row layout: U (n,d) = weight_ihᵀ, W (d,d) = weight_hhᵀ, b (d,) = bias_ih + bias_hh
(views and sums made in torch by the caller, so autograd routes their gradients).
"""
from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from .. import recurrence
from ..arrays import on_host


def to_array(tensor):
    """The tensor's memory as a NumPy (CPU) or CuPy (CUDA) array, no copy."""
    tensor = tensor.detach()
    if tensor.device.type == "cpu":
        return tensor.numpy()
    import cupy

    return cupy.from_dlpack(tensor)


def to_tensor(array, device):
    """A torch tensor on `device` over the array's memory (a copy only when the backend's result
    lives elsewhere: the CUDA backend run on CPU tensors, e.g. under the simulator)."""
    tensor = torch.from_numpy(array) if on_host(array) else torch.from_dlpack(array)
    return tensor.to(device)


def backend_name(backend, device):
    """The backend name for tensors on `device`: "auto" follows the device; CUDA tensors need "cuda"."""
    if backend == "auto":
        return "cuda" if device.type == "cuda" else "cpu"
    if backend == "cpu" and device.type != "cpu":
        raise ValueError(f"backend='cpu' runs CPU tensors only, got tensors on {device}; "
                         f"move the module to the CPU or use backend='auto'/'cuda'")
    return backend


class Recurrence(torch.autograd.Function):
    """(x (T,B,n), U, W, b, s0 (B,d) or None, lengths (B,) int64 NumPy or None, activation,
    truncate, backend) -> (states s_1..s_T (T,B,d), each sequence's last state (B,d)).
    Its backward is not differentiable again (no double backward)."""

    @staticmethod
    def forward(ctx, x, U, W, b, s0, lengths, activation, truncate, backend):
        ctx.set_materialize_grads(False)
        backend = backend_name(backend, x.device)
        S = recurrence.forward(to_array(x), to_array(U), to_array(W), to_array(b),
                               s0=None if s0 is None else to_array(s0), lengths=lengths, activation=activation,
                               backend=backend)
        S = to_tensor(S, x.device)
        ctx.save_for_backward(x, U, W, S)
        ctx.config = (lengths, activation, truncate, backend)
        return S[1:], S[-1].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_states, grad_last):
        if grad_states is None and grad_last is None:
            return (None,) * 9
        x, U, W, S = ctx.saved_tensors
        lengths, activation, truncate, backend = ctx.config
        grads = recurrence.backward(
            to_array(x), to_array(U), to_array(W), to_array(S),
            grad_states=None if grad_states is None else to_array(grad_states),
            grad_last=None if grad_last is None else to_array(grad_last),
            lengths=lengths, activation=activation, truncate=truncate, input_grad=ctx.needs_input_grad[0],
            backend=backend)
        wanted = ctx.needs_input_grad
        out = [grads.dX, grads.dU, grads.dW, grads.db, grads.ds0]
        out = [to_tensor(g, x.device) if g is not None and wanted[i] else None for i, g in enumerate(out)]
        return (*out, None, None, None, None)
