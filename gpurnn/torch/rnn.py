"""`gpurnn.torch.RNN`: `torch.nn.RNN`'s constructor, call, parameters and results, gpurnn's
forward and backward.

    nn.RNN(...)  ->  gpurnn.torch.RNN(...)          the one-line swap

Parameters carry nn.RNN's names, shapes, order and initialisation (uniform ±1/√hidden), so
`load_state_dict` works both ways and the same seed draws the same weights. Each layer is one
`Layer` (function.py): gpurnn runs its directions together, as `gpurnn.stack` does (the
reverse direction reads each sequence from its last step, its h_n is its state after the
sequence's first step; the directions' states side by side); torch stacks the layers, with
dropout between them in training only. gpurnn's own options: `nonlinearity="logistic"`,
`truncate=τ` (at most τ Jacobian factors per loss term, each output gradient at step t
counting as a loss term at step t, as `gpurnn.bptt`; None is exact) and `backend` ("auto"
follows the tensors' device).
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from ..backends import BACKENDS
from .function import Layer

NONLINEARITIES = ("tanh", "relu", "logistic", "sigmoid")


class RNN(nn.Module):
    """Elman RNN layers as `torch.nn.RNN` (see its documentation for every argument and the
    shapes of `forward`), run by gpurnn; plus `truncate` and `backend` (module docstring)."""

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, device=None, dtype=None, *, truncate=None, backend="auto"):
        super().__init__()
        _check_options(input_size, hidden_size, num_layers, nonlinearity, dropout, truncate, backend)
        if dropout > 0 and num_layers == 1:
            warnings.warn("dropout option adds dropout after all but last recurrent layer, so non-zero dropout "
                          f"expects num_layers greater than 1, but got dropout={dropout} and num_layers={num_layers}",
                          UserWarning, stacklevel=2)
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.nonlinearity, self.bias, self.batch_first = nonlinearity, bias, batch_first
        self.dropout, self.bidirectional = float(dropout), bidirectional
        self.truncate, self.backend = truncate, backend
        factory = {"device": device, "dtype": dtype}
        directions = 2 if bidirectional else 1
        for layer in range(num_layers):
            width = input_size if layer == 0 else hidden_size * directions
            for suffix in ("", "_reverse")[:directions]:
                shapes = {"weight_ih": (hidden_size, width), "weight_hh": (hidden_size, hidden_size)}
                if bias:
                    shapes.update(bias_ih=(hidden_size,), bias_hh=(hidden_size,))
                for name, shape in shapes.items():
                    self.register_parameter(f"{name}_l{layer}{suffix}", nn.Parameter(torch.empty(shape, **factory)))
        self.reset_parameters()

    def reset_parameters(self):
        """Every parameter uniform in ±1/√hidden_size, drawn in nn.RNN's order."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            nn.init.uniform_(weight, -bound, bound)

    def extra_repr(self):
        text = f"{self.input_size}, {self.hidden_size}"
        for name, default in (("num_layers", 1), ("nonlinearity", "tanh"), ("bias", True), ("batch_first", False),
                              ("dropout", 0.0), ("bidirectional", False), ("truncate", None), ("backend", "auto")):
            if getattr(self, name) != default:
                text += f", {name}={getattr(self, name)!r}"
        return text

    def forward(self, input, hx=None):
        """(output, h_n) as nn.RNN: input (T,B,n) ((B,T,n) batch_first, (T,n) unbatched) or a
        PackedSequence; hx, h_n (num_layers·directions, B, hidden_size)."""
        packed = isinstance(input, PackedSequence)
        self._check_input(input.data if packed else input)
        if packed:
            x, lengths = pad_packed_sequence(PackedSequence(input.data, input.batch_sizes))
            lengths = lengths.numpy().astype(np.int64)
            order, unorder = input.sorted_indices, input.unsorted_indices
            batched = True
        else:
            batched = input.dim() == 3
            x = input if batched else input.unsqueeze(1)
            x = x.transpose(0, 1) if batched and self.batch_first else x
            lengths, order, unorder = None, None, None
        hx = self._initial_states(hx, x, batched, order)
        output, h_n = self._layers(x, hx, lengths)
        if packed:
            data = pack_padded_sequence(output, torch.from_numpy(lengths)).data
            h_n = h_n if unorder is None else h_n.index_select(1, unorder)
            return PackedSequence(data, input.batch_sizes, order, unorder), h_n
        if not batched:
            return output.squeeze(1), h_n.squeeze(1)
        return (output.transpose(0, 1) if self.batch_first else output), h_n

    def _layers(self, x, hx, lengths):
        """Output (T,B,directions·hidden) and h_n of the layer stack on time-major x (T,B,n)."""
        directions = 2 if self.bidirectional else 1
        last_states = []
        for layer in range(self.num_layers):
            weights = []
            for suffix in ("", "_reverse")[:directions]:
                w_ih, w_hh = getattr(self, f"weight_ih_l{layer}{suffix}"), getattr(self, f"weight_hh_l{layer}{suffix}")
                b = (getattr(self, f"bias_ih_l{layer}{suffix}") + getattr(self, f"bias_hh_l{layer}{suffix}")
                     if self.bias else torch.zeros(self.hidden_size, dtype=x.dtype, device=x.device))
                weights += [w_ih.t(), w_hh.t(), b]
            h0 = None if hx is None else hx[layer * directions:(layer + 1) * directions]
            x, last = Layer.apply(x.contiguous(), h0, lengths, self.nonlinearity, self.truncate, self.backend, *weights)
            last_states.append(last)
            if self.dropout > 0 and self.training and layer < self.num_layers - 1:
                x = nn.functional.dropout(x, self.dropout, training=True)
        return x, torch.cat(last_states)

    def flatten_parameters(self):
        """nn.RNN's cuDNN weight packing has no counterpart here: nothing to do."""

    @property
    def all_weights(self):
        """The parameters per layer and direction, as nn.RNN's `all_weights`."""
        names = [n for n, _ in self.named_parameters()]
        size = 4 if self.bias else 2
        return [[getattr(self, n) for n in names[i:i + size]] for i in range(0, len(names), size)]

    def _check_input(self, input):
        """A tensor (or a PackedSequence's data) of input_size features, the parameters' dtype and device."""
        if not isinstance(input, torch.Tensor):
            raise TypeError(f"input must be a torch.Tensor or a PackedSequence, got {type(input).__name__}")
        if input.dim() not in (2, 3):
            raise ValueError(f"input must be 3-D ((T, B, input_size), or (B, T, input_size) with batch_first) or "
                             f"2-D (unbatched), got shape {tuple(input.shape)}")
        if input.shape[-1] != self.input_size:
            raise ValueError(f"input.size(-1) must equal input_size = {self.input_size}, got {input.shape[-1]}")
        weight = self.weight_hh_l0
        if input.dtype != weight.dtype or input.device != weight.device:
            raise TypeError(f"input must have the parameters' dtype {weight.dtype} on {weight.device}, "
                            f"got {input.dtype} on {input.device}")

    def _initial_states(self, hx, x, batched, order):
        """hx as (layers·directions, B, hidden), in the packed batch order; None stays None."""
        if hx is None:
            return None
        shape = (self.num_layers * (2 if self.bidirectional else 1), x.shape[1], self.hidden_size)
        hx = hx if batched else hx.unsqueeze(1)
        if tuple(hx.shape) != shape:
            raise ValueError(f"hx must have shape (num_layers*directions, B, hidden_size) = {shape}"
                             f"{'' if batched else ' before the batch axis of unbatched input'}, "
                             f"got {tuple(hx.shape)}")
        if hx.dtype != x.dtype or hx.device != x.device:
            raise TypeError(f"hx must have the input's dtype {x.dtype} on {x.device}, got {hx.dtype} on {hx.device}")
        return hx if order is None else hx.index_select(1, order)


def _check_options(input_size, hidden_size, num_layers, nonlinearity, dropout, truncate, backend):
    for name, value in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if nonlinearity not in NONLINEARITIES:
        raise ValueError(f"nonlinearity must be one of {NONLINEARITIES}, got {nonlinearity!r}")
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout <= 1:
        raise ValueError(f"dropout must be a number in [0, 1], got {dropout!r}")
    if truncate is not None and (isinstance(truncate, bool) or not isinstance(truncate, int) or truncate < 0):
        raise ValueError(f"truncate must be None or an int >= 0, got {truncate!r}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
