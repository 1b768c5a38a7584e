"""Write the golden tensors of tests/test_stack.py with PyTorch's own nn.RNN (run by hand).

    .venv/bin/pip install -e ".[torch]" && .venv/bin/python tests/golden/make_stack_golden.py

Each case is `nn.RNN(n, d, num_layers=L, bidirectional=..., nonlinearity=tanh|relu)` +
`nn.Linear(D·d, k)` in torch.float64, sequences of different lengths through
`pack_padded_sequence` (padding never read), an initial state h_0 (L·D,B,d), and autograd
for every gradient. gpurnn is not imported: the weights are saved under gpurnn's tree names
(U = weight_ihᵀ, W = weight_hhᵀ, b = bias_ih + bias_hh, V = weightᵀ, c = bias). Token ids
are fed to torch as one-hot rows. Loss: summed cross-entropy over the steps within each
length ("all", targets −1 take none) or once per sequence on [h_n fw, h_n bw] of the top
layer ("last"). Each case is one file stack_<case>.npz next to this script.
"""
from __future__ import annotations

import pathlib

import numpy as np
import torch

HERE = pathlib.Path(__file__).resolve().parent
T, B, N, D_HIDDEN, K = 5, 3, 4, 3, 3
LENGTHS = np.array([5, 3, 1])

# name: (layers, bidirectional, activation, output, token ids)
CASES = {
    "l2_bi_tanh_all_tok": (2, True, "tanh", "all", True),
    "l2_bi_relu_all_dense": (2, True, "relu", "all", False),
    "l2_bi_tanh_last_dense": (2, True, "tanh", "last", False),
    "l2_bi_relu_last_tok": (2, True, "relu", "last", True),
    "l3_fw_tanh_all_dense": (3, False, "tanh", "all", False),
}


def make(layers, bidirectional, activation, output, tokens, seed):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    D = 2 if bidirectional else 1
    rnn = torch.nn.RNN(N, D_HIDDEN, num_layers=layers, bidirectional=bidirectional, nonlinearity=activation,
                       dtype=torch.float64)
    head = torch.nn.Linear(D * D_HIDDEN, K, dtype=torch.float64)
    if tokens:
        ids = rng.integers(0, N, (T, B))
        x = torch.nn.functional.one_hot(torch.tensor(ids), N).double()
    else:
        ids = None
        x = torch.tensor(rng.normal(size=(T, B, N)))
    x.requires_grad_(not tokens)
    h0 = torch.tensor(0.5 * rng.normal(size=(layers * D, B, D_HIDDEN)), requires_grad=True)
    targets = rng.integers(0, K, (T, B) if output == "all" else (B,))
    if output == "all":
        targets[0, 1] = -1                                            # a step without a loss
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, torch.tensor(LENGTHS), enforce_sorted=False)
    out, h_n = rnn(packed, h0)
    H, _ = torch.nn.utils.rnn.pad_packed_sequence(out, total_length=T)
    if output == "all":
        logits = head(H)
        keep = (torch.arange(T)[:, None] < torch.tensor(LENGTHS)[None, :]) & (torch.tensor(targets) >= 0)
        loss = torch.nn.functional.cross_entropy(logits[keep], torch.tensor(targets)[keep], reduction="sum")
    else:
        logits = head(torch.cat(list(h_n[-D:]), dim=1))
        loss = torch.nn.functional.cross_entropy(logits, torch.tensor(targets), reduction="sum")
    loss.backward()

    out = {"lengths": LENGTHS, "targets": targets, "s0": h0.detach().numpy(), "loss": loss.detach().numpy(),
           "ds0": h0.grad.numpy(), "s_last": h_n.detach().numpy(), "logits": logits.detach().numpy(),
           "layers": np.array(layers), "bidirectional": np.array(bidirectional), "activation": np.array(activation),
           "output": np.array(output)}
    out["inputs"] = ids if tokens else x.detach().numpy()
    if not tokens:
        out["dinputs"] = x.grad.numpy()
    if output == "all":
        out["states"] = H.detach().numpy()
    for layer in range(layers):
        for direction, suffix in (("fw", ""), ("bw", "_reverse"))[:D]:
            name, key = f"layers.{layer}.{direction}", f"l{layer}{suffix}"
            w_ih, w_hh = getattr(rnn, f"weight_ih_{key}"), getattr(rnn, f"weight_hh_{key}")
            b_ih, b_hh = getattr(rnn, f"bias_ih_{key}"), getattr(rnn, f"bias_hh_{key}")
            out.update({f"param.{name}.U": w_ih.detach().numpy().T, f"param.{name}.W": w_hh.detach().numpy().T,
                        f"param.{name}.b": (b_ih + b_hh).detach().numpy(),
                        f"grad.{name}.U": w_ih.grad.numpy().T, f"grad.{name}.W": w_hh.grad.numpy().T,
                        f"grad.{name}.b": b_ih.grad.numpy()})      # ∂L/∂b_ih = ∂L/∂b_hh = ∂L/∂b
    out.update({"param.head.V": head.weight.detach().numpy().T, "param.head.c": head.bias.detach().numpy(),
                "grad.head.V": head.weight.grad.numpy().T, "grad.head.c": head.bias.grad.numpy()})
    return out


def main():
    for seed, (name, spec) in enumerate(CASES.items()):
        np.savez_compressed(HERE / f"stack_{name}.npz", **make(*spec, seed=seed))
        print("wrote", HERE / f"stack_{name}.npz")


if __name__ == "__main__":
    main()
