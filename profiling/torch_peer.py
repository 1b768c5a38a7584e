"""The peer both benchmarks time: `torch.nn.RNN` (tanh) + `nn.Linear` holding gpurnn's weights.

The weights move through `gpurnn.torch_io.to_torch_state_dict` (the same mapping a user's
export takes: weight_ih = Uᵀ, weight_hh = Wᵀ, bias_ih = b, bias_hh = 0, Linear = Vᵀ, c),
for one layer or a stack (`nn.RNN(num_layers=L, bidirectional=...)`). The CPU benchmark
runs this from PyTorch's own environment, where gpurnn need not be installed, so the
repository root goes on the path.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpurnn import Params  # noqa: E402
from gpurnn.torch_io import to_torch_state_dict  # noqa: E402


def torch_model(torch, weights, device="cpu"):
    """(rnn, head) on `device` from a dict of NumPy arrays under `Params` tree names (U, W, V, b, c
    for one layer; layers.ℓ.fw.U, ..., head.V, head.c for a stack)."""
    params = Params.from_items(weights.items())
    n, d, k = params.n_in, params.hidden, params.n_out
    model = torch.nn.ModuleDict({
        "rnn": torch.nn.RNN(n, d, num_layers=params.layers, bidirectional=params.bidirectional, nonlinearity="tanh"),
        "linear": torch.nn.Linear(params.directions * d, k)})
    model.load_state_dict(to_torch_state_dict(params))
    model.to(device)
    return model["rnn"], model["linear"]
