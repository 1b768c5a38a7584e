"""`gpurnn.torch.RNN`: `torch.nn.RNN`'s constructor, call, parameters and results, gpurnn's
forward and backward.

    nn.RNN(...)  ->  gpurnn.torch.RNN(...)          the one-line swap

The module is an `nn.RNNBase`, as nn.RNN is: its constructor's checks and errors, parameter
names, shapes, order and initialisation (uniform ±1/√hidden, so `load_state_dict` works both
ways and the same seed draws the same weights), `_flat_weights`, `all_weights`, pickling; the
forward's checks are nn.RNN's own (`check_input`, `check_hidden_size`). Each layer is one
`function.layer` call (the operator `gpurnn::layer` under autograd): gpurnn runs its
directions together, as `gpurnn.stack` does (the reverse direction reads each sequence from
its last step, its h_n is its state after the sequence's first step; the directions' states
side by side); torch stacks the layers, with dropout between them in training only. gpurnn's own options: `nonlinearity="logistic"`,
`truncate=τ` (at most τ Jacobian factors per loss term, each output gradient at step t
counting as a loss term at step t, as `gpurnn.bptt`; None is exact) and `backend` ("auto"
follows the tensors' device).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from ..backends import BACKENDS
from .function import layer

NONLINEARITIES = ("tanh", "relu", "logistic", "sigmoid")


class RNN(nn.RNNBase):
    """Elman RNN layers as `torch.nn.RNN` (see its documentation for every argument and the
    shapes of `forward`), run by gpurnn; plus `nonlinearity="logistic"`, `truncate` and
    `backend` (module docstring). bfloat16/float16 modules and autocast run in float32 and
    return the low-precision dtype, as nn.RNN's results on the CPU have it."""

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, device=None, dtype=None, *, truncate=None, backend="auto",
                 **unexpected):
        if "proj_size" in unexpected:
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        if unexpected:
            raise TypeError(f"RNN.__init__() got an unexpected keyword argument {next(iter(unexpected))!r}")
        if nonlinearity not in NONLINEARITIES:
            choices = ", ".join(map(repr, NONLINEARITIES))
            raise ValueError(f"Unknown nonlinearity {nonlinearity!r}. Select from {choices}.")
        if truncate is not None and (isinstance(truncate, bool) or not isinstance(truncate, int) or truncate < 0):
            raise ValueError(f"truncate must be None or an int >= 0, got {truncate!r}")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.nonlinearity, self.truncate, self.backend = nonlinearity, truncate, backend
        super().__init__("RNN_RELU" if nonlinearity == "relu" else "RNN_TANH", input_size, hidden_size, num_layers,
                         bias, batch_first, dropout, bidirectional, device=device, dtype=dtype)

    def extra_repr(self):
        text = super().extra_repr()
        for name, default in (("nonlinearity", "tanh"), ("truncate", None), ("backend", "auto")):
            if getattr(self, name) != default:
                text += f", {name}={getattr(self, name)!r}"
        return text

    def flatten_parameters(self):
        """nn.RNN's cuDNN weight packing has no counterpart here: nothing to do."""

    def forward(self, input, hx=None):
        """(output, h_n) as nn.RNN: input (T,B,n) ((B,T,n) batch_first, (T,n) unbatched) or a
        PackedSequence; hx, h_n (num_layers·directions, B, hidden_size)."""
        if not torch.compiler.is_compiling():       # (export and compile trace with other parameter objects)
            self._update_flat_weights()
        packed = isinstance(input, PackedSequence)
        if packed:
            data, batch_sizes, order, unorder = input
            self._check(data, hx, batch_sizes)
            x, lengths = pad_packed_sequence(PackedSequence(data, batch_sizes))
            hx = None if hx is None else self.permute_hidden(hx, order)
        else:
            if input.dim() not in (2, 3):
                raise ValueError(f"RNN: Expected input to be 2D or 3D, got {input.dim()}D tensor instead")
            batched = input.dim() == 3
            if hx is not None and hx.dim() != input.dim():
                raise RuntimeError(f"For {'batched 3' if batched else 'unbatched 2'}-D input, hx should also be "
                                   f"{input.dim()}-D but got {hx.dim()}-D tensor")
            x = input if batched else input.unsqueeze(1)
            x = x.transpose(0, 1) if batched and self.batch_first else x
            hx = hx if hx is None or batched else hx.unsqueeze(1)
            self._check(x, hx, None)
            lengths = None
        output, h_n = self._layers(x, hx, lengths)
        if packed:
            return PackedSequence(pack_padded_sequence(output, lengths).data, batch_sizes, order, unorder), \
                self.permute_hidden(h_n, unorder)
        if not batched:
            return output.squeeze(1), h_n.squeeze(1)
        return (output.transpose(0, 1) if self.batch_first else output), h_n

    def _check(self, x, hx, batch_sizes):
        """nn.RNN's checks of time-major x (T,B,n) (a packed sequence's data and batch sizes) and hx."""
        self.check_input(x, batch_sizes)
        if batch_sizes is None and x.shape[0] == 0:
            raise RuntimeError("Expected sequence length to be larger than 0 in RNN")
        if hx is not None:
            expected = self.get_expected_hidden_size(x.transpose(0, 1) if self.batch_first else x, batch_sizes)
            self.check_hidden_size(hx, expected)
            if hx.dtype != x.dtype or hx.device != x.device:
                raise RuntimeError(f"hx must have the input's dtype {x.dtype} and device {x.device}, "
                                   f"got {hx.dtype} on {hx.device}")

    def _layers(self, x, hx, lengths):
        """Output (T,B,directions·hidden) and h_n of the layer stack on time-major x (T,B,n), in
        the input's dtype (the autocast dtype under autocast); computed in float32 for 16-bit dtypes."""
        result = torch.get_autocast_dtype(x.device.type) if torch.is_autocast_enabled(x.device.type) else x.dtype
        compute = torch.float32 if result in (torch.bfloat16, torch.float16) else result
        x = x.to(compute).contiguous()
        hx = None if hx is None else hx.to(compute)
        directions = 2 if self.bidirectional else 1
        last_states = []
        for index in range(self.num_layers):
            suffixes = ("", "_reverse")[:directions]
            w_ih, w_hh = ([getattr(self, f"{name}_l{index}{suffix}") for suffix in suffixes]
                          for name in ("weight_ih", "weight_hh"))
            if self.bias:
                b = [getattr(self, f"bias_ih_l{index}{suffix}") + getattr(self, f"bias_hh_l{index}{suffix}")
                     for suffix in suffixes]
            else:
                b = [torch.zeros(self.hidden_size, dtype=compute, device=x.device)] * directions
            w_ih, w_hh, b = (_stacked(ws, compute) for ws in (w_ih, w_hh, b))
            h0 = None if hx is None else hx[index * directions:(index + 1) * directions]
            x, last, _ = layer(x, h0, lengths, w_ih, w_hh, b, self.nonlinearity, self.truncate, self.backend)
            last_states.append(last)
            if self.dropout > 0 and self.training and index < self.num_layers - 1:
                x = nn.functional.dropout(x, self.dropout, training=True)
        return x.to(result), torch.cat(last_states).to(result)


def _stacked(tensors, dtype):
    """The directions' tensors stacked (D, ...) in `dtype` (one direction: a view, no copy)."""
    return (tensors[0].unsqueeze(0) if len(tensors) == 1 else torch.stack(tensors)).to(dtype)
