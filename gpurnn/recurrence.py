"""The recurrence alone, one layer and one direction: states forward, gradients backward.

    forward   XP = x U + b (all T·B rows at once)
              S[t+1] = σ(XP[t] + S[t] W)           (a finished sequence keeps its state)
    backward  G_t = ∂L/∂s_t given for each step, each counted as a loss term at step t
              (plus ∂L/∂s_last at each sequence's last step)
              Δ_t = (G_t + Δ_{t+1} Wᵀ) ⊙ σ'(a_t)    exact, or at most τ factors per loss term
              dW = S_prevᵀ Δ;  dU = Xᵀ Δ;  db = Σ Δ;  ds0 = Δ_0 Wᵀ;  dX = Δ Uᵀ

This is the split cuDNN's API makes (states forward; data and weight gradients backward):
`gpurnn.stack` runs a layer's directions together (`layer_states`, `layer_backprop`) under
`gpurnn.bptt`'s output layer, `gpurnn.torch.RNN` the same calls once per layer under autograd.
`states`/`backprop` take the backend's own arrays; `forward`/`backward` are the checked public
calls, whose results are NumPy arrays for NumPy weights and stay on the device for CuPy ones.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from .arrays import array_module
from .backends import get_backend
from .model import Cell
from .validation import Problem, check_recurrence


class RecurrenceGrads(NamedTuple):
    """dX (T,B,n): ∂L/∂x (None for token ids or when not asked); ds0 (B,d); dU (n,d); dW (d,d); db (d,)."""

    dX: Any
    ds0: Any
    dU: Any
    dW: Any
    db: Any


class LayerGrads(NamedTuple):
    """A layer's gradients: dX (T,B,n) (None when not asked); per cell, in the layer's order,
    ds0 (B,d) and its parameters' gradients as a `Cell` (dU (n,d), dW (d,d), db (d,))."""

    dX: Any
    ds0: list
    cells: list


def layer_states(be, inputs, cells, s0s, lengths, activation):
    """(H (T,B,D·d), [S_j (T+1,B,d)]) of a layer of D cells (`model.Cell`, fw then bw) on backend
    `be`: one projection x [U_fw | U_bw] + [b_fw | b_bw] for all cells, then
    `Backend.layer_forward` (the bw cell reads each sequence from its last step)."""
    XP = be.project_inputs(inputs, _joined(be, [c.U for c in cells], 1), _joined(be, [c.b for c in cells], 0),
                           lengths)
    return be.layer_forward(XP, [c.W for c in cells], s0s, lengths, activation)


def layer_backprop(be, inputs, Ss, cells, G, g_last, lengths, activation, truncate, *, input_grad=False) -> LayerGrads:
    """A layer's gradients from G (T,B,D·d) = ∂L/∂H (0 past each length, or None) and g_last
    (B,D·d) = ∂L/∂(each cell's final state) (or None); Ss from `layer_states`. One product each
    for dU, db and dX over all cells: Δ (T,B,D·d) holds them side by side; dW_j = S_prevᵀ Δ_j
    per cell, from each cell's Δ in its own reading order (the one place either backend's dW is made)."""
    delta, own, ds0s = be.layer_backward(G, g_last, Ss, [c.W for c in cells], lengths, activation, truncate)
    T, B, width = delta.shape
    d = width // len(cells)
    dWs = be.matmuls([(S[:-1].reshape(T * B, d), delta_j.reshape(T * B, d), True, False) for S, delta_j in zip(Ss, own)])
    U = _joined(be, [c.U for c in cells], 1)
    n = U.shape[0]
    flat = delta.reshape(T * B, width)
    db = be.sum_rows(flat)
    if input_grad:          # dense inputs: dU = Xᵀ Δ and dX = Δ Uᵀ, independent
        dU, dX = be.matmuls([(inputs.reshape(T * B, n), flat, True, False), (flat, U, False, True)])
        dX = dX.reshape(T, B, n)
    else:
        dU, dX = be.input_grad(inputs, delta, n, lengths), None
    return LayerGrads(dX, ds0s, [Cell(*g) for g in zip(_split(be, dU, len(cells)), dWs, _split(be, db, len(cells)))])


def states(be, inputs, U, b, W, s0, lengths, activation):
    """S (T+1,B,d) with S[0] = s0 of one forward cell on backend `be` (its arrays; activation as its code)."""
    return layer_states(be, inputs, [Cell(U, W, b)], [s0], lengths, activation)[1][0]


def backprop(be, inputs, S, U, W, G, g_last, lengths, activation, truncate, *, input_grad=False) -> RecurrenceGrads:
    """One forward cell's gradients from G (T,B,d) (0 past each length, or None) and g_last (B,d)
    (or None) on backend `be`; n = U's rows. dX only when `input_grad` (dense inputs)."""
    g = layer_backprop(be, inputs, [S], [Cell(U, W, None)], G, g_last, lengths, activation, truncate,
                       input_grad=input_grad)
    return RecurrenceGrads(g.dX, g.ds0[0], *g.cells[0])


def _joined(be, arrays, axis):
    """The cells' arrays side by side along `axis`; one array is itself."""
    if len(arrays) == 1:
        return arrays[0]
    return be.array_op(lambda xp, *a: xp.concatenate(a, axis=axis), *arrays)


def _split(be, A, parts):
    """A (..., parts·d) as `parts` contiguous arrays (..., d); one part is A itself."""
    if parts == 1:
        return [A]
    d = A.shape[A.ndim - 1] // parts        # (no negative index: the simulator's shapes refuse it)
    return [be.array_op(lambda xp, a: xp.ascontiguousarray(a[..., j * d:(j + 1) * d]), A) for j in range(parts)]


def forward(inputs, U, W, b, *, s0=None, lengths=None, activation="tanh", backend="auto"):
    """S (T+1,B,d): S[0] = s0 (zeros when None), S[t] = s_t; a sequence past its length keeps its
    state, so S[T] holds each sequence's last state. inputs: floats (T,B,n) or token ids (T,B)."""
    problem = check_recurrence(inputs, U, W, b, s0=s0, lengths=lengths, activation=activation)
    run = Placement(get_backend(backend), problem, isinstance(W, np.ndarray))
    be = run.be
    return run.out(run.states(be.asarray(U), be.asarray(b), be.asarray(W)))


def backward(inputs, U, W, S, *, grad_states=None, grad_last=None, lengths=None, activation="tanh", truncate=None,
             input_grad=True, backend="auto") -> RecurrenceGrads:
    """∂L/∂(x, s0, U, W, b) from grad_states (T,B,d) = ∂L/∂s_t (ignored past each length) and
    grad_last (B,d) = ∂L/∂s_last; S (T+1,B,d) from `forward`. `truncate=τ` keeps at most τ
    Jacobian factors per loss term (as `gpurnn.bptt`); None is exact."""
    problem = check_recurrence(inputs, U, W, None, lengths=lengths, activation=activation, truncate=truncate,
                               S=S, grad_states=grad_states, grad_last=grad_last)
    be = get_backend(backend)
    run = Placement(be, problem, isinstance(W, np.ndarray))
    G = None if grad_states is None else be.asarray(_zero_past_lengths(grad_states, problem), problem.dtype)
    g_last = None if grad_last is None else be.asarray(grad_last, problem.dtype)
    grads = backprop(be, run.inputs, be.asarray(S, problem.dtype), be.asarray(U, problem.dtype),
                     be.asarray(W, problem.dtype), G, g_last, run.lengths, problem.activation, problem.truncate,
                     input_grad=input_grad and not problem.tokens)
    return RecurrenceGrads(*(None if g is None else run.out(g) for g in grads))


def _zero_past_lengths(G, problem: Problem):
    """G with the rows past each sequence's length set to 0 (G itself when every sequence is full)."""
    if int(np.min(problem.lengths)) == problem.T:
        return G
    xp = array_module(G)
    active = xp.arange(problem.T)[:, None] < xp.asarray(problem.lengths)[None, :]
    return xp.where(active[:, :, None], G, 0)


class Placement:
    """One call's inputs, lengths and s0 moved to the backend once, and the way results go back
    (to the host when the caller's weights are NumPy arrays)."""

    def __init__(self, be, problem: Problem, on_host: bool):
        dtype = problem.dtype
        self.be, self.problem, self.on_host = be, problem, on_host
        self.inputs = be.asarray(problem.inputs, None if problem.tokens else dtype)
        self.lengths = be.asarray(problem.lengths)
        shape = (problem.B, problem.d) if problem.cells == 1 else (problem.cells, problem.B, problem.d)
        self.s0 = be.zeros(shape, dtype) if problem.s0 is None else be.asarray(problem.s0, dtype)

    def states(self, U, b, W):
        """S (T+1,B,d) with S[0] = s0, from the backend's U, b, W."""
        return states(self.be, self.inputs, U, b, W, self.s0, self.lengths, self.problem.activation)

    def out(self, array):
        return self.be.to_host(array) if self.on_host else array
