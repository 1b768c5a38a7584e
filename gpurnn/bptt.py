"""Forward pass and backpropagation through time, written once against a backend.

    forward   H = the layer stack's top states h_1..h_T (T,B,D·d)   `gpurnn.stack`, each cell
              XP = x U + b; S[t+1] = σ(XP[t] + S[t] W)              one `gpurnn.recurrence`
              Z = H V + c (all rows at once)
    loss      L = Σ_{t with a target} −log softmax(z_t)[target_t]
    pooled    output "mean" | "max": one loss per sequence read from P (B,D·d), a pool over its
              real states h_1..h_L (L = its length ≥ 1): P = (1/L) Σ_t h_t, or P[j] = max_t h_t[j]
              (the first t on ties); Z = P V + c, and ∂L/∂h_t explicit = dP / L (mean), dP on
              the argmax entries (max), 0 past L. Each step's share is a loss term at step t
              for truncation: it keeps the paths back to step t−τ.
    backward  dZ = ŷ − onehot;  dV = Hᵀ dZ;  dc = Σ dZ;  G = dZ Vᵀ = ∂L_t/∂h_t
              then each cell, top layer first: Δ_t = (G_t + Δ_{t+1} Wᵀ) ⊙ σ'(a_t)  (sequential)
              dW = S_prevᵀ Δ;  dU = Xᵀ Δ;  db = Σ Δ;  ds0 = Δ_0 Wᵀ;  dX = Δ Uᵀ to the layer below

Only the recurrences run step by step (inside the backend); every other product is one GEMM
over T·B rows. The recurrence's own part (states; Δ, dU, dW, db, ds0, dX) is
`gpurnn.recurrence`'s, shared with the PyTorch module; `gpurnn.stack` composes layers and
directions. Results come back as NumPy arrays when the parameters are NumPy arrays, and stay
on the device when they are the device backend's arrays.
"""
from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

from . import recurrence, stack
from .arrays import on_host, to_host
from .backends import get_backend
from .model import Params
from .validation import Problem, check_call, check_one_recurrence, check_params


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
    """Run the RNN over `inputs`: token ids (T,B) or (T,B,F) (F ids per step, their
    rows of U summed) or floats (T,B,n); see the module docstring.
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


def output_logits(params: Params, inputs, *, lengths=None, s0=None, activation="tanh", output="all",
                  backend="auto", check_values=True):
    """(logits, s_last) of the loss layout `output`: logits (T,B,k) for "all", (B,k) read from the
    top layer's final states ("last": fw after the last step, bw after the first) or from the
    pool over each sequence's real states ("mean", "max"); s_last as `forward`'s."""
    problem = check_call(params, inputs, lengths=lengths, s0=s0, activation=activation, output=output,
                         check_values=check_values)
    be = get_backend(backend)
    run, P = _place(be, params, problem)
    record = stack.forward(be, P, run.inputs, run.s0, run.lengths, problem.activation)
    s_last = stack.last_states(be, P, record)
    logits = be.affine(_visible(be, P, problem, record.top, s_last, run.lengths)[0], P.V, P.c)
    if output == "all":
        logits = logits.reshape(problem.T, problem.B, problem.k)
    return run.out(logits), run.out(s_last)


def explicit_state_grads(params: Params, inputs, targets, *, s0=None, activation="tanh", output="all",
                         backend="auto"):
    """G (T,B,d): ∂L_t/∂s_t through the output layer alone (no path through later states) for
    every output layout, all T steps real: the loss at each step ("all"), at step T ("last"),
    each step's share of the pool ("mean", "max"). What `recurrence_backward` starts from,
    for the diagnostics' gradient profiles (one layer of one direction)."""
    problem = check_call(params, inputs, s0=s0, activation=activation, output=output, targets=targets,
                         need_targets=True)
    check_one_recurrence(params)
    be = get_backend(backend)
    run, P = _place(be, params, problem)
    record = stack.forward(be, P, run.inputs, run.s0, run.lengths, problem.activation)
    s_last = stack.last_states(be, P, record)
    visible, argmax = _visible(be, P, problem, record.top, s_last, run.lengths)
    _, _, dZ = be.softmax_xent(be.affine(visible, P.V, P.c), be.asarray(problem.targets))
    G, g_last = _state_grads(be, problem, be.matmul(dZ, P.V, trans_b=True), run.lengths, argmax)
    if g_last is not None:
        G = be.zeros((problem.T, problem.B, problem.d), problem.dtype)
        G[problem.T - 1] = g_last
    return run.out(G)


def bptt(params: Params, inputs, targets, *, lengths=None, s0=None, activation="tanh", output="all",
         truncate=None, dropout=0.0, dropout_seed=None, input_grad=False, backend="auto",
         check_values=True) -> BPTTResult:
    """Loss and exact (or τ-truncated) gradients of the summed cross-entropy.

    output="all": targets (T,B), a negative target takes no loss at that step.
    output="last": targets (B,), one loss at each sequence's last step (read from the top layer's
    final states: fw after the last step, bw after the first).
    output="mean" | "max": targets (B,), one loss per sequence read from the pool of its real
    states (lengths must be ≥ 1).
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
    masks = stack.dropout_masks(P, problem.T, problem.B, dropout, dropout_seed)
    record = stack.forward(be, P, run.inputs, run.s0, run.lengths, problem.activation, masks)
    targets = be.asarray(problem.targets)
    s_last = stack.last_states(be, P, record)
    visible, argmax = _visible(be, P, problem, record.top, s_last, run.lengths)
    loss, count, dZ = be.softmax_xent(be.affine(visible, P.V, P.c), targets)
    # dV, and ∂L/∂(visible rows) from the outputs alone: independent products
    dV, explicit = be.matmuls([(visible, dZ, True, False), (dZ, P.V, False, True)])
    dc = be.sum_rows(dZ)
    G, g_last = _state_grads(be, problem, explicit, run.lengths, argmax)
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
    return to_host(z) if on_host(next(iter(params))) else z


def check_dropout(dropout, name="dropout"):
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ValueError(f"{name} must be a number in [0, 1), got {dropout!r}")


def _place(be, params: Params, problem: Problem):
    """The call's arrays and the parameters moved to the backend once."""
    return recurrence.Placement(be, problem, on_host(next(iter(params)))), params.map(be.asarray)


def _visible(be, P: Params, p: Problem, H, s_last, lengths):
    """(rows the outputs read, argmax): h_1..h_T (T·B,D·d) for "all", the top layer's final states
    (B,D·d) for "last", the pool over h_1..h_L (B,D·d) for "mean" and "max"; argmax (B,D·d) int64
    for "max", else None."""
    if p.output == "all":
        return H.reshape(p.T * p.B, H.shape[2]), None
    if p.output == "last":
        return stack.top_last(be, P, s_last), None
    return be.pool_states(H, lengths, p.output)


def _state_grads(be, p: Problem, explicit, lengths, argmax):
    """(G (T,B,D·d) or None, g_last (B,D·d) or None) for the stack's backward pass from `explicit`,
    ∂L/∂(the rows `_visible` returned)."""
    if p.output == "all":
        return explicit.reshape(p.T, p.B, explicit.shape[1]), None
    if p.output == "last":
        return None, explicit
    return be.unpool_grad(explicit, lengths, argmax, p.output, p.T), None
