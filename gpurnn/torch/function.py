"""One layer of the recurrence, both its directions, as a `torch.autograd.Function`.

Forward and backward run `gpurnn.recurrence`'s layer functions, as `gpurnn.stack` does, on the
tensors' own memory: CPU tensors cross as NumPy views (`Tensor.numpy()`, `torch.from_numpy`), CUDA
tensors as CuPy arrays through DLPack and stay on their device. gpurnn's kernels and CuPy's
products run on CuPy's current stream (the default one); DLPack's exchange makes each consumer
wait for the producer (`__dlpack__(stream=...)`): gpurnn's stream for torch's current stream's
work on the way in, torch's current stream for gpurnn's on the way out, so a module called
under `torch.cuda.stream(s)` is ordered with `s`. (Not yet run on a GPU: the task that wrote
this had none; the CPU and the CUDA simulator paths are tested.) Weights follow
gpurnn's row layout: per direction U (n,d) = weight_ihᵀ, W (d,d) = weight_hhᵀ, b (d,) = bias_ih + bias_hh
(views and sums made in torch by the caller, so autograd routes their gradients).
"""
from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from .. import recurrence
from ..arrays import on_host
from ..backends import get_backend
from ..cell import Cell
from ..validation import check_recurrence


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


class Layer(torch.autograd.Function):
    """One layer of D = 1 or 2 directions (fw, then bw), as `gpurnn.stack` runs it: forward
    `recurrence.layer_states`, backward `recurrence.layer_backprop`, so the backend runs the
    layer's cells together (`Backend.layer_forward` / `layer_backward`: the CPU's on two threads,
    CUDA's in one launch where they fit) and the bw cell reads each sequence from its last step.

    (x (T,B,n), s0 (D,B,d) or None, lengths (B,) int64 NumPy or None, activation, truncate,
    backend, U_fw, W_fw, b_fw[, U_bw, W_bw, b_bw]) -> (H (T,B,D·d): each direction's state
    after reading position t in its columns, h_n (D,B,d): each direction's final state).
    The gradient of H must be 0 past each length (a PackedSequence's gives that). Its backward
    is not differentiable again (no double backward)."""

    @staticmethod
    def forward(ctx, x, s0, lengths, activation, truncate, backend, *weights):
        ctx.set_materialize_grads(False)
        arrays = [to_array(w) for w in weights]
        problem = check_recurrence(to_array(x), *arrays[:3], lengths=lengths, activation=activation,
                                   truncate=truncate)
        run = recurrence.Placement(get_backend(backend_name(backend, x.device)), problem, on_host=False)
        cells = _cells(run.be, arrays)
        s0s = [run.s0] * len(cells) if s0 is None else [run.be.asarray(to_array(s), problem.dtype) for s in s0]
        H, Ss = recurrence.layer_states(run.be, run.inputs, cells, s0s, run.lengths, problem.activation)
        Ss = [to_tensor(S, x.device) for S in Ss]
        ctx.save_for_backward(x, *weights, *Ss)
        ctx.config = (run.be, run.lengths, problem.activation, problem.truncate, len(cells))
        return to_tensor(H, x.device), torch.stack([S[-1] for S in Ss])

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_H, grad_h_n):
        be, lengths, activation, truncate, D = ctx.config
        if grad_H is None and grad_h_n is None:
            return (None,) * (6 + 3 * D)
        x, *saved = ctx.saved_tensors
        weights, Ss = saved[:3 * D], saved[3 * D:]
        G = None if grad_H is None else be.asarray(to_array(grad_H))
        g_last = None if grad_h_n is None else be.asarray(to_array(grad_h_n.transpose(0, 1).reshape(x.shape[1], -1)))
        grads = recurrence.layer_backprop(be, be.asarray(to_array(x)), [be.asarray(to_array(S)) for S in Ss],
                                          _cells(be, [to_array(w) for w in weights]), G, g_last, lengths, activation,
                                          truncate, input_grad=ctx.needs_input_grad[0])
        ds0 = torch.stack([to_tensor(g, x.device) for g in grads.ds0]) if ctx.needs_input_grad[1] else None
        dweights = [to_tensor(g, x.device) if ctx.needs_input_grad[6 + i] else None
                    for i, g in enumerate(g for cell in grads.cells for g in cell)]
        dx = None if grads.dX is None else to_tensor(grads.dX, x.device)
        return (dx, ds0, None, None, None, None, *dweights)


def _cells(be, arrays):
    """The backend's `cell.Cell`s of the arrays U, W, b of each cell in turn."""
    return [Cell(*(be.asarray(a) for a in arrays[i:i + 3])) for i in range(0, len(arrays), 3)]
