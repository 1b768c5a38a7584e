"""Write the torch reference values of tests/test_optim.py and tests/test_torch_io.py (run by hand).

    /work/torchenv/bin/python tests/golden/make_train_golden.py

optim_torch.npz: float64 parameters updated for 6 steps by torch.optim (SGD with momentum,
with Nesterov momentum, Adagrad, RMSprop, Adam) on fixed random gradients, and the
learning rates of torch's StepLR and CosineAnnealingLR.
torch_rnn.npz: an `nn.RNN` (tanh and relu) + `nn.Linear` state dict in float64 with the
logits it gives for dense inputs (T,B,n) and for one-hot token inputs, from a given h0.
trainer_torch.npz: PyTorch's word_language_model loop in float64 on one-hot ids: B streams
read in chunks of k, the hidden state carried and detached at each border, mean
cross-entropy, `clip_grad_norm_`, Adam (bias_hh frozen at 0: gpurnn has one bias); the
losses, norms before clipping and final weights.
"""
from __future__ import annotations

import pathlib

import numpy as np
import torch

HERE = pathlib.Path(__file__).resolve().parent
SHAPES = {"U": (3, 4), "W": (4, 4), "V": (4, 2), "b": (4,), "c": (2,)}
STEPS, LR = 6, 0.05
OPTIMIZERS = {
    "sgd": lambda ps: torch.optim.SGD(ps, lr=LR, momentum=0.9),
    "sgd_nesterov": lambda ps: torch.optim.SGD(ps, lr=LR, momentum=0.9, nesterov=True),
    "adagrad": lambda ps: torch.optim.Adagrad(ps, lr=LR, eps=1e-10),
    "rmsprop": lambda ps: torch.optim.RMSprop(ps, lr=LR, alpha=0.99, eps=1e-8),
    "adam": lambda ps: torch.optim.Adam(ps, lr=LR, betas=(0.9, 0.999), eps=1e-8),
}


def optimizer_golden():
    rng = np.random.default_rng(5)
    out = {f"init.{k}": rng.standard_normal(s) for k, s in SHAPES.items()}
    for i in range(STEPS):
        out.update({f"grad{i}.{k}": rng.standard_normal(s) for k, s in SHAPES.items()})
    for name, make in OPTIMIZERS.items():
        params = {k: torch.tensor(out[f"init.{k}"], requires_grad=True) for k in SHAPES}
        opt = make(list(params.values()))
        for i in range(STEPS):
            for k, p in params.items():
                p.grad = torch.tensor(out[f"grad{i}.{k}"])
            opt.step()
        out.update({f"{name}.{k}": p.detach().numpy() for k, p in params.items()})
    for name, make in (("step", lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=3, gamma=0.5)),
                       ("cosine", lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=7, eta_min=0.01))):
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        sched, lrs = make(opt), []
        for _ in range(10):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        out[f"lr.{name}"] = np.array(lrs)
    np.savez_compressed(HERE / "optim_torch.npz", **out)


def rnn_golden():
    torch.manual_seed(0)
    T, B, n, d, k = 5, 3, 4, 6, 3
    out = {}
    x = torch.randn(T, B, n, dtype=torch.float64)
    h0 = torch.randn(1, B, d, dtype=torch.float64)
    ids = torch.randint(0, n, (T, B))
    out.update(x=x.numpy(), h0=h0[0].numpy(), ids=ids.numpy())
    for nonlinearity in ("tanh", "relu"):
        rnn = torch.nn.RNN(n, d, nonlinearity=nonlinearity).double()
        linear = torch.nn.Linear(d, k).double()
        state = {f"rnn.{key}": v for key, v in rnn.state_dict().items()}
        state.update({f"linear.{key}": v for key, v in linear.state_dict().items()})
        with torch.no_grad():
            dense = linear(rnn(x, h0)[0])
            onehot = linear(rnn(torch.nn.functional.one_hot(ids, n).double(), h0)[0])
        out.update({f"{nonlinearity}.{key}": v.numpy() for key, v in state.items()})
        out.update({f"{nonlinearity}.logits_dense": dense.numpy(), f"{nonlinearity}.logits_ids": onehot.numpy()})
    np.savez_compressed(HERE / "torch_rnn.npz", **out)


def trainer_golden():
    n, d, B, k, max_norm, lr = 5, 6, 3, 4, 0.5, 0.05
    rng = np.random.default_rng(11)
    ids = rng.integers(0, n, 40)
    init = {"U": rng.uniform(-0.5, 0.5, (n, d)), "W": rng.uniform(-0.5, 0.5, (d, d)),
            "V": rng.uniform(-0.5, 0.5, (d, n)), "b": rng.uniform(-0.1, 0.1, d), "c": rng.uniform(-0.1, 0.1, n)}
    L = (len(ids) - 1) // B                                  # the layout of gpurnn.batches.TokenStreams
    X = torch.from_numpy(ids[: B * L].reshape(B, L).T.copy())
    Y = torch.from_numpy(ids[1: B * L + 1].reshape(B, L).T.copy())
    rnn, linear = torch.nn.RNN(n, d).double(), torch.nn.Linear(d, n).double()
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(torch.from_numpy(init["U"].T))
        rnn.weight_hh_l0.copy_(torch.from_numpy(init["W"].T))
        rnn.bias_ih_l0.copy_(torch.from_numpy(init["b"]))
        rnn.bias_hh_l0.zero_()
        linear.weight.copy_(torch.from_numpy(init["V"].T))
        linear.bias.copy_(torch.from_numpy(init["c"]))
    rnn.bias_hh_l0.requires_grad_(False)     # one bias b, as in gpurnn (two would each take an Adam step)
    params = [p for p in (*rnn.parameters(), *linear.parameters()) if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    h, losses, norms = torch.zeros(1, B, d, dtype=torch.float64), [], []
    for start in range(0, L, k):
        x = torch.nn.functional.one_hot(X[start:start + k], n).double()
        out, h = rnn(x, h)
        loss = torch.nn.functional.cross_entropy(linear(out).reshape(-1, n), Y[start:start + k].reshape(-1))
        opt.zero_grad()
        loss.backward()
        norms.append(float(torch.nn.utils.clip_grad_norm_(params, max_norm)))
        losses.append(float(loss.detach()))
        opt.step()
        h = h.detach()
    final = {"U": rnn.weight_ih_l0.T, "W": rnn.weight_hh_l0.T, "V": linear.weight.T,
             "b": rnn.bias_ih_l0 + rnn.bias_hh_l0, "c": linear.bias}
    np.savez_compressed(HERE / "trainer_torch.npz", ids=ids, losses=np.array(losses), norms=np.array(norms),
                        **{f"init.{key}": v for key, v in init.items()},
                        **{f"final.{key}": v.detach().numpy() for key, v in final.items()})


if __name__ == "__main__":
    optimizer_golden()
    rnn_golden()
    trainer_golden()
