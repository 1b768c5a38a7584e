"""Move a model between gpurnn and PyTorch's `nn.RNN` (one layer) + `nn.Linear`.

PyTorch computes h_t = σ(x_t W_ihᵀ + b_ih + h_{t−1} W_hhᵀ + b_hh) and y = h Wᵀ + b, so

    rnn.weight_ih_l0 = Uᵀ (d,n)   rnn.weight_hh_l0 = Wᵀ (d,d)
    rnn.bias_ih_l0   = b  (d,)    rnn.bias_hh_l0   = 0            (import sums the two)
    linear.weight    = Vᵀ (k,d)   linear.bias      = c (k,)

Token-id inputs correspond to one-hot inputs in PyTorch (or an `nn.Embedding` holding U
whose output feeds an identity input layer). `nn.RNN` offers tanh and relu only. Torch
is imported only when tensors are asked for or given; NumPy dicts work without it.
"""
from __future__ import annotations

import numpy as np

from .backends import backend_for
from .model import Params
from .validation import check_params

__all__ = ["from_torch_state_dict", "to_torch_state_dict"]

TORCH_NONLINEARITIES = ("tanh", "relu")


def to_torch_state_dict(params: Params, *, activation: str = "tanh", tensors: bool = True,
                        rnn_prefix: str = "rnn.", linear_prefix: str = "linear.") -> dict:
    """The state dict of `nn.RNN(n, d, nonlinearity=activation)` + `nn.Linear(d, k)` under the
    given key prefixes; torch tensors (`tensors=True`) or NumPy arrays. Parameters on a GPU
    are copied to the host first."""
    check_params(params)
    if activation not in TORCH_NONLINEARITIES:
        raise ValueError(f"activation must be one of {TORCH_NONLINEARITIES} (those nn.RNN offers), "
                         f"got {activation!r}")
    P = params.map(lambda a: backend_for(a).to_host(a))
    arrays = {
        f"{rnn_prefix}weight_ih_l0": P.U.T, f"{rnn_prefix}weight_hh_l0": P.W.T,
        f"{rnn_prefix}bias_ih_l0": P.b, f"{rnn_prefix}bias_hh_l0": np.zeros_like(P.b),
        f"{linear_prefix}weight": P.V.T, f"{linear_prefix}bias": P.c,
    }
    arrays = {key: np.ascontiguousarray(value) for key, value in arrays.items()}
    if not tensors:
        return arrays
    import torch

    return {key: torch.from_numpy(value) for key, value in arrays.items()}


def from_torch_state_dict(state_dict: dict, *, rnn_prefix: str = "rnn.", linear_prefix: str = "linear.",
                          dtype=None) -> Params:
    """`Params` (NumPy) from an `nn.RNN` + `nn.Linear` state dict of torch tensors or arrays:
    U = weight_ihᵀ, W = weight_hhᵀ, b = bias_ih + bias_hh, V = weightᵀ, c = bias. `dtype`
    (float32 | float64) defaults to the state dict's."""
    def get(key):
        if key not in state_dict:
            raise ValueError(f"state_dict lacks {key!r} (keys: {sorted(state_dict)[:8]}…); "
                             f"set rnn_prefix/linear_prefix to match")
        value = state_dict[key]
        if hasattr(value, "detach"):
            value = value.detach().cpu().numpy()
        return np.asarray(value)

    if f"{rnn_prefix}weight_ih_l1" in state_dict:
        raise ValueError("state_dict holds a multi-layer nn.RNN; gpurnn models have one layer")
    W_ih, W_hh = get(f"{rnn_prefix}weight_ih_l0"), get(f"{rnn_prefix}weight_hh_l0")
    b = get(f"{rnn_prefix}bias_ih_l0") + get(f"{rnn_prefix}bias_hh_l0")
    dtype = np.dtype(dtype or W_hh.dtype)
    params = Params(W_ih.T, W_hh.T, get(f"{linear_prefix}weight").T, b, get(f"{linear_prefix}bias"))
    params = params.map(lambda a: np.ascontiguousarray(a, dtype=dtype))
    check_params(params)
    return params
