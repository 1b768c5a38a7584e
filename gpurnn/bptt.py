"""Forward pass and backpropagation through time, written once against a backend.

    forward   XP = x U + b (all T·B rows at once)
              S[t+1] = σ(XP[t] + S[t] W)              the recurrence (sequential)
              Z = S V + c (all rows at once)
    loss      L = Σ_{t with a target} −log softmax(z_t)[target_t]
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

from . import recurrence, stack
from .backends import get_backend
from .model import Params
from .validation import Problem, check_call, check_params


class ForwardResult(NamedTuple):
    """states (T,B,D·d): the top layer's states h_1..h_T (s_1..s_T for one layer of one direction);
    logits (T,B,k): z_1..z_T; s_last: each sequence's final state (B,d), or every cell's (cells,B,d)
    for a stack, as torch's h_n (bw: the state after the first step)."""

    states: Any
    logits: Any
    s_last: Any


@dataclasses.dataclass
class BPTTResult:
    """loss: summed cross-entropy (float); grads: ∂L/∂θ as `Params`; ds0: ∂L/∂s0 (s0's shape);
    s_last: as `ForwardResult.s_last`; count: the number of loss terms; dinputs (T,B,n): ∂L/∂inputs
    for dense inputs when asked (`input_grad`), else None."""

    loss: float
    grads: Params
    ds0: Any
    s_last: Any
    count: int
    dinputs: Any = None


def forward(params: Params, inputs, *, lengths=None, s0=None, activation="tanh", backend="auto",
            check_values=True) -> ForwardResult:
    """Run the RNN over `inputs`: token ids (T,B) or floats (T,B,n); see the module docstring.
    s0: (B,d), or (layers·directions,B,d) for a stack. check_values=False skips the checks of
    values on the GPU (`gpurnn.validation`). No dropout: that is training's alone."""
    problem = check_call(params, inputs, lengths=lengths, s0=s0, activation=activation, check_values=check_values)
    be = get_backend(backend)
    run, P = _place(be, params, problem)
    record = stack.forward(be, P, run.inputs, run.s0, run.lengths, problem.activation)
    T, B, k = problem.T, problem.B, problem.k
    H = record.top
    logits = be.affine(H.reshape(T * B, H.shape[2]), P.V, P.c).reshape(T, B, k)
    return ForwardResult(run.out(H), run.out(logits), run.out(stack.last_states(be, P, record)))


def bptt(params: Params, inputs, targets, *, lengths=None, s0=None, activation="tanh", output="all",
         truncate=None, dropout=0.0, dropout_seed=None, input_grad=False, backend="auto",
         check_values=True) -> BPTTResult:
    """Loss and exact (or τ-truncated) gradients of the summed cross-entropy.

    output="all": targets (T,B), a negative target takes no loss at that step.
    output="last": targets (B,), one loss at each sequence's last step (read from the top layer's
    final states: fw after the last step, bw after the first).
    truncate=τ keeps at most τ Jacobian factors ∂s_j/∂s_{j−1} per loss term, in every layer; None is exact.
    dropout=p: inverted dropout on the states between layers (a stack's training), masks drawn
    from `dropout_seed` (the same seed, the same masks).
    input_grad=True: also ∂L/∂inputs for dense inputs, in `dinputs` (one more product).
    check_values=False skips the checks of values on the GPU, each of which waits for the device
    (`gpurnn.validation`): for arrays checked where they were made, as the trainer does.
    """
    problem = check_call(params, inputs, lengths=lengths, s0=s0, activation=activation, output=output,
                         targets=targets, truncate=truncate, need_targets=True, check_values=check_values)
    check_dropout(dropout)
    be = get_backend(backend)
    run, P = _place(be, params, problem)
    T, B = problem.T, problem.B
    masks = stack.dropout_masks(P, T, B, dropout, dropout_seed)
    record = stack.forward(be, P, run.inputs, run.s0, run.lengths, problem.activation, masks)
    H = record.top
    width = H.shape[2]
    targets = be.asarray(problem.targets)
    s_last = stack.last_states(be, P, record)
    if output == "all":
        visible = H.reshape(T * B, width)        # rows that carry outputs: h_1..h_T
    else:
        visible = stack.top_last(be, P, s_last)  # (B, D·d)
    loss, count, dZ = be.softmax_xent(be.affine(visible, P.V, P.c), targets)
    dV = be.matmul(visible, dZ, trans_a=True)
    dc = be.sum_rows(dZ)
    explicit = be.matmul(dZ, P.V, trans_b=True)  # ∂L/∂h from the outputs alone
    G, g_last = (explicit.reshape(T, B, width), None) if output == "all" else (None, explicit)
    cell_grads, ds0, dX = stack.backward(be, P, record, G, g_last, run.lengths, problem.activation,
                                         problem.truncate, input_grad=input_grad and not problem.tokens)
    grads = P.like({**cell_grads, **dict(zip(P.head_names(), (dV, dc)))}).map(run.out)
    return BPTTResult(loss, grads, run.out(ds0), run.out(s_last), count,
                      None if dX is None else run.out(dX))


def final_logits(params: Params, s_last, *, backend="auto"):
    """z (B,k): the logits output="last" reads, from `forward`'s s_last (the top layer's fw state
    after each sequence's last step, bw state after its first); for one direction, the logits at
    each sequence's last step."""
    check_params(params)
    be = get_backend(backend)
    P = params.map(be.asarray)
    z = be.affine(stack.top_last(be, P, be.asarray(s_last, P.dtype)), P.V, P.c)
    return be.to_host(z) if isinstance(next(iter(params)), np.ndarray) else z


def check_dropout(dropout, name="dropout"):
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ValueError(f"{name} must be a number in [0, 1), got {dropout!r}")


def _place(be, params: Params, problem: Problem):
    """The call's arrays and the parameters moved to the backend once."""
    return recurrence.Placement(be, problem, isinstance(next(iter(params)), np.ndarray)), params.map(be.asarray)
