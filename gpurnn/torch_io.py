"""Move a model between gpurnn and PyTorch's `nn.RNN` + `nn.Linear`.

Each layer ℓ and direction's cell maps to `rnn.<name>_lℓ` (suffix "" for fw, "_reverse" for
bw) with the names `gpurnn.cell.to_torch` gives (weight_ih = Uᵀ, weight_hh = Wᵀ, bias_ih = b,
bias_hh = 0; import sums the two biases), and the head to `nn.Linear`:

    linear.weight    = Vᵀ (k,D·d)   linear.bias      = c (k,)

`nn.RNN(num_layers=L, bidirectional=...)` concatenates the directions' states as gpurnn's
stack does. Token-id inputs correspond to one-hot inputs in PyTorch (or an `nn.Embedding`
holding layer 0's U whose output feeds an identity input layer). `nn.RNN` offers tanh and
relu only. Torch is imported only when tensors are asked for or given; NumPy dicts work
without it.
"""
from __future__ import annotations

import numpy as np

from .arrays import to_host
from .cell import from_torch, to_torch
from .cell import CELL_FIELDS
from .model import DIRECTIONS, FIELDS, Params, tree_names
from .validation import check_params

__all__ = ["from_torch_state_dict", "to_torch_state_dict"]

TORCH_NONLINEARITIES = ("tanh", "relu")
SUFFIXES = {"fw": "", "bw": "_reverse"}


def to_torch_state_dict(params: Params, *, activation: str = "tanh", tensors: bool = True,
                        rnn_prefix: str = "rnn.", linear_prefix: str = "linear.") -> dict:
    """The state dict of `nn.RNN(n, d, num_layers=L, nonlinearity=activation, bidirectional=D == 2)`
    + `nn.Linear(D·d, k)` under the given key prefixes; torch tensors (`tensors=True`) or NumPy
    arrays. Parameters on a GPU are copied to the host first."""
    check_params(params)
    if activation not in TORCH_NONLINEARITIES:
        raise ValueError(f"activation must be one of {TORCH_NONLINEARITIES} (those nn.RNN offers), "
                         f"got {activation!r}")
    P = params.map(to_host)
    arrays = {}
    for layer, direction, cell in P.cells():
        key = f"l{layer}{SUFFIXES[direction]}"
        arrays.update({f"{rnn_prefix}{name}_{key}": value for name, value in to_torch(cell).items()})
    arrays.update({f"{linear_prefix}weight": P.V.T, f"{linear_prefix}bias": P.c})
    arrays = {key: np.ascontiguousarray(value) for key, value in arrays.items()}
    if not tensors:
        return arrays
    import torch

    return {key: torch.from_numpy(value) for key, value in arrays.items()}


def from_torch_state_dict(state_dict: dict, *, rnn_prefix: str = "rnn.", linear_prefix: str = "linear.",
                          dtype=None) -> Params:
    """`Params` (NumPy) from an `nn.RNN` + `nn.Linear` state dict of torch tensors or arrays, its
    layers and directions read from the keys: U = weight_ihᵀ, W = weight_hhᵀ, b = bias_ih +
    bias_hh, V = weightᵀ, c = bias. `dtype` (float32 | float64) defaults to the state dict's."""
    def get(key):
        if key not in state_dict:
            raise ValueError(f"state_dict lacks {key!r} (keys: {sorted(state_dict)[:8]}…); "
                             f"set rnn_prefix/linear_prefix to match")
        value = state_dict[key]
        if hasattr(value, "detach"):
            value = value.detach().cpu().numpy()
        return np.asarray(value)

    layers = 1
    while f"{rnn_prefix}weight_ih_l{layers}" in state_dict:
        layers += 1
    directions = 2 if f"{rnn_prefix}weight_ih_l0_reverse" in state_dict else 1
    cells = []
    for layer in range(layers):
        for direction in DIRECTIONS[:directions]:
            key = f"l{layer}{SUFFIXES[direction]}"
            cells.append(from_torch(lambda name: get(f"{rnn_prefix}{name}_{key}")))
    dtype = np.dtype(dtype or cells[0][1].dtype)
    by_field = {field: [cell[i] for cell in cells] for i, field in enumerate(CELL_FIELDS)}
    by_field.update(V=[get(f"{linear_prefix}weight").T], c=[get(f"{linear_prefix}bias")])
    names = tree_names(layers, directions)      # by field, then layer, then direction: as `cells`
    values = [array for field in FIELDS for array in by_field[field]]
    params = Params.from_items((name, np.ascontiguousarray(a, dtype=dtype)) for name, a in zip(names, values))
    check_params(params)
    return params
