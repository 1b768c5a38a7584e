"""Forward pass and backpropagation through time, written once against a backend.

    forward   XP = x U + b (all T·B rows at once)
              S[t+1] = σ(XP[t] + S[t] W)              the recurrence (sequential)
              Z = S V + c (all rows at once)
    loss      L = Σ_{t with a target} −log softmax(z_t)[target_t]
    pooled    output "mean" | "max": one loss per sequence read from P (B,d), a pool over its real
              states s_1..s_L (L = its length ≥ 1): P = (1/L) Σ_t s_t, or P[j] = max_t s_t[j]
              (the first t on ties); Z = P V + c, and ∂L/∂s_t explicit = dP / L (mean), dP on
              the argmax entries (max), 0 past L. Each step's share is a loss term at step t
              for truncation: it keeps the paths back to step t−τ.
    backward  dZ = ŷ − onehot;  dV = Sᵀ dZ;  dc = Σ dZ;  G = dZ Vᵀ = ∂L_t/∂s_t
              Δ_t = (G_t + Δ_{t+1} Wᵀ) ⊙ σ'(a_t)     the recurrence backward (sequential)
              dW = S_prevᵀ Δ;  dU = Xᵀ Δ;  db = Σ Δ;  ds0 = Δ_0 Wᵀ

Only the two recurrences run step by step (inside the backend); every other product is
one GEMM over T·B rows. The recurrence's own part (states; Δ, dU, dW, db, ds0) is
`gpurnn.recurrence`'s, shared with the PyTorch module. Results come back as NumPy arrays
when the parameters are NumPy arrays, and stay on the device when they are the device
backend's arrays.
"""
from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import numpy as np

from . import recurrence
from .backends import get_backend
from .model import Params
from .validation import Problem, check_call


class ForwardResult(NamedTuple):
    """states (T,B,d): s_1..s_T; logits (T,B,k): z_1..z_T; s_last (B,d): each sequence's final state."""

    states: Any
    logits: Any
    s_last: Any


@dataclasses.dataclass
class BPTTResult:
    """loss: summed cross-entropy (float); grads: ∂L/∂θ as `Params`; ds0 (B,d): ∂L/∂s0;
    s_last (B,d): each sequence's final state; count: the number of loss terms."""

    loss: float
    grads: Params
    ds0: Any
    s_last: Any
    count: int


def forward(params: Params, inputs, *, lengths=None, s0=None, activation="tanh", backend="auto",
            check_values=True) -> ForwardResult:
    """Run the RNN over `inputs`: token ids (T,B) or floats (T,B,n); see the module docstring.
    check_values=False skips the checks of values on the GPU (`gpurnn.validation`)."""
    problem = check_call(params, inputs, lengths=lengths, s0=s0, activation=activation, check_values=check_values)
    be = get_backend(backend)
    run, P = _place(be, params, problem)
    S = run.states(P.U, P.b, P.W)
    T, B, d, k = problem.T, problem.B, problem.d, problem.k
    logits = be.affine(S[1:].reshape(T * B, d), P.V, P.c).reshape(T, B, k)
    return ForwardResult(run.out(S[1:]), run.out(logits), run.out(S[T]))


def output_logits(params: Params, inputs, *, lengths=None, s0=None, activation="tanh", output="all",
                  backend="auto", check_values=True):
    """(logits, s_last (B,d)) of the loss layout `output`: logits (T,B,k) for "all", (B,k) read
    from s_last ("last") or from the pool over each sequence's real states ("mean", "max")."""
    problem = check_call(params, inputs, lengths=lengths, s0=s0, activation=activation, output=output,
                         check_values=check_values)
    be = get_backend(backend)
    run, P = _place(be, params, problem)
    S = run.states(P.U, P.b, P.W)
    logits = be.affine(_visible(be, problem, S, run.lengths)[0], P.V, P.c)
    if output == "all":
        logits = logits.reshape(problem.T, problem.B, problem.k)
    return run.out(logits), run.out(S[problem.T])


def explicit_state_grads(params: Params, inputs, targets, *, s0=None, activation="tanh", output="all",
                         backend="auto"):
    """G (T,B,d): ∂L_t/∂s_t through the output layer alone (no path through later states) for
    every output layout, all T steps real: the loss at each step ("all"), at step T ("last"),
    each step's share of the pool ("mean", "max"). What `recurrence_backward` starts from,
    for the diagnostics' gradient profiles."""
    problem = check_call(params, inputs, s0=s0, activation=activation, output=output, targets=targets,
                         need_targets=True)
    be = get_backend(backend)
    run, P = _place(be, params, problem)
    S = run.states(P.U, P.b, P.W)
    visible, argmax = _visible(be, problem, S, run.lengths)
    _, _, dZ = be.softmax_xent(be.affine(visible, P.V, P.c), be.asarray(problem.targets))
    G, g_last = _state_grads(be, problem, be.matmul(dZ, P.V, trans_b=True), run.lengths, argmax)
    if g_last is not None:
        G = be.zeros((problem.T, problem.B, problem.d), problem.dtype)
        G[problem.T - 1] = g_last
    return run.out(G)


def bptt(params: Params, inputs, targets, *, lengths=None, s0=None, activation="tanh", output="all",
         truncate=None, backend="auto", check_values=True) -> BPTTResult:
    """Loss and exact (or τ-truncated) gradients of the summed cross-entropy.

    output="all": targets (T,B), a negative target takes no loss at that step.
    output="last": targets (B,), one loss at each sequence's last step (read from s_last).
    output="mean" | "max": targets (B,), one loss per sequence read from the pool of its real
    states (lengths must be ≥ 1).
    truncate=τ keeps at most τ Jacobian factors ∂s_j/∂s_{j−1} per loss term; None is exact.
    check_values=False skips the checks of values on the GPU, each of which waits for the device
    (`gpurnn.validation`): for arrays checked where they were made, as the trainer does.
    """
    problem = check_call(params, inputs, lengths=lengths, s0=s0, activation=activation, output=output,
                         targets=targets, truncate=truncate, need_targets=True, check_values=check_values)
    be = get_backend(backend)
    run, P = _place(be, params, problem)
    T, B, d = problem.T, problem.B, problem.d
    S = run.states(P.U, P.b, P.W)
    targets = be.asarray(problem.targets)
    visible, argmax = _visible(be, problem, S, run.lengths)
    loss, count, dZ = be.softmax_xent(be.affine(visible, P.V, P.c), targets)
    dV = be.matmul(visible, dZ, trans_a=True)
    dc = be.sum_rows(dZ)
    explicit = be.matmul(dZ, P.V, trans_b=True)  # ∂L/∂(visible rows) from the outputs alone
    G, g_last = _state_grads(be, problem, explicit, run.lengths, argmax)
    back = recurrence.backprop(be, run.inputs, S, P.U, P.W, G, g_last, run.lengths, problem.activation,
                               problem.truncate)
    grads = Params(back.dU, back.dW, dV, back.db, dc).map(run.out)
    return BPTTResult(loss, grads, run.out(back.ds0), run.out(S[T]), count)


def _place(be, params: Params, problem: Problem):
    """The call's arrays and the parameters moved to the backend once."""
    return recurrence.Placement(be, problem, isinstance(params.W, np.ndarray)), params.map(be.asarray)


def _visible(be, p: Problem, S, lengths):
    """(rows the outputs read, argmax): s_1..s_T (T·B,d) for "all", s_last (B,d) for "last",
    the pool (B,d) for "mean" and "max"; argmax (B,d) int64 for "max", else None."""
    if p.output == "all":
        return S[1:].reshape(p.T * p.B, p.d), None
    if p.output == "last":
        return S[p.T], None
    return be.pool_states(S, lengths, p.output)


def _state_grads(be, p: Problem, explicit, lengths, argmax):
    """(G (T,B,d) or None, g_last (B,d) or None) for `recurrence_backward` from `explicit`,
    ∂L/∂(the rows `_visible` returned)."""
    if p.output == "all":
        return explicit.reshape(p.T, p.B, p.d), None
    if p.output == "last":
        return None, explicit
    return be.unpool_grad(explicit, lengths, argmax, p.output, p.T), None
