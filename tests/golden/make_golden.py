"""Write the golden tensors of tests/test_golden.py with PyTorch's autograd (run by hand).

    PYTHONPATH=/work/main /work/torchenv/bin/python tests/golden/make_golden.py [CASE...]

(no CASE: every case).

The model is rebuilt here from scratch in torch.float64 (gpurnn's backward is never
called; the random problems come from tests/helpers.make_case):

    a_t = x_t U + s_{t−1} W + b,  s_t = σ(a_t) while t <= length (else s_t = s_{t−1}),
    z_t = s_t V + c,  L = Σ_terms −log softmax(z_t)[y]

Loss terms: output "all" reads s_t at every step t <= length with a target >= 0;
output "last" reads s_length once per sequence (s0 for a sequence of length 0);
output "mean" / "max" reads the mean / max (torch.max's gradient: to the maximum) of
s_1..s_length once per sequence.
Truncation τ: for each loss step t the states are recomputed with every step before
t−τ detached (no gradient) and steps max(1, t−τ)..t with gradient, so L_t reaches at most
τ factors ∂s_j/∂s_{j−1}; s0 gets ∂L_t/∂s0 only when that window starts at step 1.
A pooled loss is one term per sequence whose share from step t is a loss term at step t:
for each t the pool reads s_t from the window max(1, t−τ)..t and every other state detached,
and the gradients of U, W, b and s0 add up over t (V and c take the whole loss's).
Each case is one compressed file bptt_<case>.npz next to this script.
"""
from __future__ import annotations

import pathlib
import sys

import numpy as np
import torch

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from helpers import make_case  # noqa: E402  (tests/helpers.py: random problems only)

# name: make_case arguments. Sizes stay tiny (T=5, B=3, n=d=4, k=3) for the CUDA simulator.
CASES = {
    "tok_tanh_all_len_s0": dict(tokens=True, activation="tanh", output="all", lengths=True, s0=True),
    "dense_logistic_last_len_t2": dict(tokens=False, activation="logistic", output="last", lengths=True,
                                       truncate=2),
    "tok_relu_all_s0_t0": dict(tokens=True, activation="relu", output="all", s0=True, truncate=0),
    "dense_tanh_all_len_s0_t1": dict(tokens=False, activation="tanh", output="all", lengths=True, s0=True,
                                     truncate=1),
    "tok_sigmoid_last": dict(tokens=True, activation="sigmoid", output="last"),
    "tok_tanh_last_len_s0_t1": dict(tokens=True, activation="tanh", output="last", lengths=True, s0=True,
                                    truncate=1),
    "dense_relu_last_len_s0": dict(tokens=False, activation="relu", output="last", lengths=True, s0=True),
    "dense_logistic_all_t3": dict(tokens=False, activation="logistic", output="all", truncate=3),
    "tok_relu_all_len_t2": dict(tokens=True, activation="relu", output="all", lengths=True, truncate=2),
    "dense_tanh_mean_len_s0": dict(tokens=False, activation="tanh", output="mean", lengths=True, s0=True),
    "tok_relu_max_len_t1": dict(tokens=True, activation="relu", output="max", lengths=True, truncate=1),
    "dense_logistic_max_s0": dict(tokens=False, activation="logistic", output="max", s0=True),
    "tok_tanh_mean_len_t2": dict(tokens=True, activation="tanh", output="mean", lengths=True, truncate=2),
}
POOLS = ("mean", "max")
ACT = {"tanh": torch.tanh, "logistic": torch.sigmoid, "sigmoid": torch.sigmoid, "relu": torch.relu}


def torch_model(case):
    """Closures over torch leaves: `states(start)` and the loss terms."""
    P = {name: torch.tensor(value, requires_grad=True) for name, value in case.params.items()}
    T, B = case.inputs.shape[:2]
    d = case.params.hidden
    lengths = torch.tensor(np.full(B, T) if case.lengths is None else case.lengths)
    active = torch.arange(T)[:, None] < lengths[None, :]                      # (T,B)
    s0 = torch.tensor(np.zeros((B, d)) if case.s0 is None else case.s0, requires_grad=True)
    if case.inputs.ndim == 2:
        ids = torch.where(active, torch.tensor(case.inputs), 0)               # ids past a length: unread
        xU = lambda t: P["U"][ids[t]]                                         # noqa: E731
    else:
        X = torch.tensor(case.inputs)
        xU = lambda t: X[t] @ P["U"]                                          # noqa: E731
    sigma = ACT[case.activation]

    def step(t, s):
        """s_{t+1} from s_t (0-based t), frozen past each length."""
        return torch.where(active[t][:, None], sigma(xU(t) + s @ P["W"] + P["b"]), s)

    def states(start):
        """[s_0..s_T]; steps before `start` (1-based) run without gradient."""
        S = [s0]
        with torch.no_grad():
            for t in range(start - 1):
                S.append(step(t, S[-1]))
        cur = S[-1] if start == 1 else S[-1].detach()
        S[-1] = cur
        for t in range(start - 1, T):
            cur = step(t, cur)
            S.append(cur)
        return S

    if case.output != "all":
        terms = [(int(lengths[i]), i, int(case.targets[i])) for i in range(B) if case.targets[i] >= 0]
    else:
        terms = [(t + 1, i, int(case.targets[t, i])) for t in range(T) for i in range(B)
                 if active[t, i] and case.targets[t, i] >= 0]

    def loss_at(S, step_t):
        """Σ of the loss terms read at step `step_t` (1-based; 0 reads s0)."""
        rows = [(i, y) for t, i, y in terms if t == step_t]
        if not rows:
            return None
        z = torch.stack([S[step_t][i] for i, _ in rows]) @ P["V"] + P["c"]
        return torch.nn.functional.cross_entropy(z, torch.tensor([y for _, y in rows]), reduction="sum")

    def pooled_loss(S):
        """Σ_b −log softmax(pool(S_b) V + c)[y_b] over s_1..s_length, S = [s_0..s_T]."""
        X = torch.stack(S[1:])                                                 # (T,B,d)
        real = active[:, :, None]
        if case.output == "mean":
            pooled = torch.where(real, X, 0.0).sum(0) / lengths[:, None]
        else:
            pooled = torch.where(real, X, -torch.inf).max(dim=0).values
        z = pooled @ P["V"] + P["c"]
        return torch.nn.functional.cross_entropy(z, torch.tensor(case.targets), reduction="sum")

    return P, s0, states, loss_at, pooled_loss, sorted({t for t, _, _ in terms})


def _accumulate(grads, term, leaves):
    for total, g in zip(grads, torch.autograd.grad(term, leaves, allow_unused=True)):
        if g is not None:
            total += g


def golden(case):
    P, s0, states, loss_at, pooled_loss, steps = torch_model(case)
    leaves = [*P.values(), s0]
    grads = [torch.zeros_like(leaf) for leaf in leaves]
    loss = 0.0
    tau = case.truncate
    if case.output in POOLS:
        whole = states(1)
        term = pooled_loss(whole)
        loss = float(term.detach())
        if tau is None:
            _accumulate(grads, term, leaves)
        else:
            _accumulate([grads[2], grads[4]], term, [P["V"], P["c"]])
            for t in range(1, len(whole)):
                mixed = [s.detach() for s in whole]
                mixed[t] = states(max(1, t - tau))[t]
                _accumulate([grads[0], grads[1], grads[3], grads[5]], pooled_loss(mixed), [P["U"], P["W"], P["b"], s0])
    for t in steps if case.output not in POOLS else ():
        start = 1 if tau is None else max(1, t - tau)
        term = loss_at(states(start), t)
        loss += float(term.detach())
        _accumulate(grads, term, leaves)
    with torch.no_grad():
        S = torch.stack(states(1))
        logits = S[1:] @ P["V"] + P["c"]
    out = dict(
        U=case.params.U, W=case.params.W, V=case.params.V, b=case.params.b, c=case.params.c,
        inputs=case.inputs, targets=case.targets, activation=np.array(case.activation),
        output=np.array(case.output), truncate=np.array(-1 if tau is None else tau),
        loss=np.array(loss), states=S[1:].numpy(), logits=logits.numpy(), s_last=S[-1].numpy(),
        ds0=grads[-1].numpy(),
        **{f"d{name}": g.numpy() for name, g in zip(P, grads)},
    )
    if case.lengths is not None:
        out["lengths"] = case.lengths
    if case.s0 is not None:
        out["s0"] = case.s0
    return out


def main(names):
    torch.set_default_dtype(torch.float64)
    for seed, (name, kwargs) in enumerate(CASES.items()):
        if names and name not in names:
            continue
        case = make_case(100 + seed, **kwargs)
        np.savez_compressed(HERE / f"bptt_{name}.npz", **golden(case))
        print("wrote", name)


if __name__ == "__main__":
    main(sys.argv[1:])
