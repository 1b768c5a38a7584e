"""The peer both benchmarks time: `torch.nn.RNN` (tanh) + `nn.Linear` holding gpurnn's weights.

The weights move through `gpurnn.torch_io.to_torch_state_dict` (the same mapping a user's
export takes: weight_ih = Uᵀ, weight_hh = Wᵀ, bias_ih = b, bias_hh = 0, Linear = Vᵀ, c).
The CPU benchmark runs this from PyTorch's own environment, where gpurnn is not installed,
so the repository root goes on the path.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpurnn import Params  # noqa: E402
from gpurnn.torch_io import to_torch_state_dict  # noqa: E402


def torch_model(torch, weights, device="cpu"):
    """(rnn, head) on `device` from a dict of NumPy arrays U (n,d), W (d,d), V (d,k), b (d,), c (k,)."""
    (n, d), k = weights["U"].shape, weights["V"].shape[1]
    model = torch.nn.ModuleDict({"rnn": torch.nn.RNN(n, d, nonlinearity="tanh"), "linear": torch.nn.Linear(d, k)})
    params = Params(*(weights[name] for name in ("U", "W", "V", "b", "c")))
    model.load_state_dict(to_torch_state_dict(params))
    model.to(device)
    return model["rnn"], model["linear"]
