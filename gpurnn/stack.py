"""The layer stack: `layers` layers of one or two directions, each cell a `gpurnn.recurrence`.

    X_0 = the inputs;  X_ℓ = H_{ℓ−1} ⊙ M_ℓ for ℓ > 0       M_ℓ: inverted dropout (training), else 1
    fw:  S  = recurrence(X_ℓ)              bw:  S' = recurrence(rev(X_ℓ))
    H_ℓ  = [S[1:], rev(S'[1:])]  (T,B,D·d) rev: each sequence reversed within its own length
    h_n  = S[T], S'[T] per cell  (B,d)     S'[T]: the bw state after the sequence's first step,
                                           as torch's h_n (padding is never read either way)
backward, top layer first, from G = ∂L/∂H_top (T,B,D·d) and/or g = ∂L/∂[S[T], S'[T]] (B,D·d):
    each cell's `recurrence.backprop` gives its dU, dW, db, ds0 and dX = ∂L/∂(its inputs)
    (a layer's cells together: `recurrence.states_cells`, `backprop_cells`, one launch on a GPU);
    ∂L/∂X_ℓ = dX_fw + rev(dX_bw), and ∂L/∂H_{ℓ−1} = ∂L/∂X_ℓ ⊙ M_ℓ (one product per layer).
rev is its own inverse (positions past a length stay put). A single cell (one layer, one
direction) is the plain recurrence: no reversal, no copy.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from . import recurrence
from .model import CELL_FIELDS, DIRECTIONS, Params


@dataclasses.dataclass
class StackRecord:
    """What the backward pass needs from the forward pass (backend arrays).

    inputs[i], states[i]: cell i's inputs and S (T+1,B,d), in the cell's own time (cells in
    `Params.cells` order); masks[ℓ]: M_ℓ (T,B,D·d) or None; top: H of the top layer."""

    inputs: list
    states: list
    masks: list
    top: Any


def dropout_masks(P: Params, T: int, B: int, dropout: float, seed) -> list:
    """Host masks M_ℓ (T,B,D·d) for ℓ = 1..L−1 (None at ℓ = 0): 0 with probability `dropout`, else
    1/(1 − dropout), drawn from `seed` in layer order (the same seed gives the same masks)."""
    masks = [None] * P.layers
    if dropout > 0 and P.layers > 1:
        rng = np.random.default_rng(seed)
        for layer in range(1, P.layers):
            keep = rng.random((T, B, P.directions * P.hidden)) >= dropout
            masks[layer] = (keep / (1.0 - dropout)).astype(P.dtype)
    return masks


def forward(be, P: Params, inputs, s0, lengths, activation, masks=None) -> StackRecord:
    """Run every cell bottom-up; s0 (B,d) for one cell, (cells,B,d) for more; masks from
    `dropout_masks` (moved to the backend here) or None."""
    masks = [None if m is None else be.asarray(m) for m in masks or [None] * P.layers]
    record = StackRecord([], [], masks, None)
    x = inputs
    for layer in range(P.layers):
        if masks[layer] is not None:
            x = be.array_op(lambda xp, a, m: a * m, x, masks[layer])
        directions = DIRECTIONS[:P.directions]
        cells = [P.cell(layer, direction) for direction in directions]
        owns = [x if direction == "fw" else _reverse(be, x, lengths) for direction in directions]
        s0s = [_cell_s0(P, s0, len(record.states) + j) for j in range(len(cells))]
        Ss = recurrence.states_cells(be, owns, [c.U for c in cells], [c.b for c in cells], [c.W for c in cells], s0s,
                                     lengths, activation)
        record.inputs += owns
        record.states += Ss
        outputs = [S[1:] if direction == "fw" else _reverse(be, S[1:], lengths) for direction, S in zip(directions, Ss)]
        x = outputs[0] if len(outputs) == 1 else be.array_op(lambda xp, *o: xp.concatenate(o, axis=2), *outputs)
    record.top = x
    return record


def last_states(be, P: Params, record: StackRecord):
    """s_last: S[T] (B,d) for one cell; for more, every cell's final state (cells,B,d), torch's h_n."""
    finals = [S[S.shape[0] - 1] for S in record.states]
    return finals[0] if len(finals) == 1 else be.array_op(lambda xp, *f: xp.stack(f), *finals)


def top_last(be, P: Params, s_last):
    """The features an output="last" head reads (B,D·d) from `last_states`: the top layer's final
    states, its directions concatenated."""
    if P.n_cells == 1:
        return s_last
    return be.array_op(lambda xp, s: xp.concatenate(list(s[s.shape[0] - P.directions:]), axis=1), s_last)


def backward(be, P: Params, record: StackRecord, G, g_last, lengths, activation, truncate, *, input_grad=False):
    """(grads {name: array} for every cell, ds0 like s0, dX (T,B,n) of the inputs or None).

    G (T,B,D·d) = ∂L/∂H_top, 0 past each length (or None); g_last (B,D·d) = ∂L/∂(the top
    layer's final states) (or None); `input_grad`: return ∂L/∂inputs (dense inputs only)."""
    grads, ds0 = {}, [None] * P.n_cells
    D, d = P.directions, P.hidden
    for layer in reversed(range(P.layers)):
        wants_dx = layer > 0 or input_grad
        dX = None
        directions, first = DIRECTIONS[:D], layer * D
        cells = [P.cell(layer, direction) for direction in directions]
        Gs = [_reverse(be, G, lengths, slice(j * d, (j + 1) * d)) if G is not None and direction == "bw"
              else _part(be, G, j, d, D) for j, direction in enumerate(directions)]
        backs = recurrence.backprop_cells(be, record.inputs[first:first + D], record.states[first:first + D],
                                          [c.U for c in cells], [c.W for c in cells], Gs,
                                          [_part(be, g_last, j, d, D) for j in range(D)], lengths, activation,
                                          truncate, input_grad=wants_dx)
        for j, (direction, back) in enumerate(zip(directions, backs)):
            i = first + j
            grads.update({P.cell_name(layer, direction, f): g
                          for f, g in zip(CELL_FIELDS, (back.dU, back.dW, back.db))})
            ds0[i] = back.ds0
            if wants_dx:
                dx = back.dX if direction == "fw" else _reverse(be, back.dX, lengths)
                dX = dx if dX is None else be.array_op(lambda xp, a, b: a + b, dX, dx)
        if layer > 0 and record.masks[layer] is not None:
            dX = be.array_op(lambda xp, a, m: a * m, dX, record.masks[layer])
        G, g_last = dX, None
    ds0 = ds0[0] if len(ds0) == 1 else be.array_op(lambda xp, *g: xp.stack(g), *ds0)
    return grads, ds0, G if input_grad else None


def _cell_s0(P: Params, s0, i):
    return s0 if P.n_cells == 1 else s0[i]


def _part(be, A, j, d, D):
    """Direction j's columns of A (..., D·d) as a contiguous array (A itself for D = 1; None stays None)."""
    if A is None or D == 1:
        return A
    return be.array_op(lambda xp, a: xp.ascontiguousarray(a[..., j * d:(j + 1) * d]), A)


def _reverse(be, X, lengths, columns=slice(None)):
    """X[..., columns] (T,B,...) with each sequence b's first lengths[b] steps in reverse order (the
    rest in place), a new contiguous array: one strided copy on the host when every sequence is
    full, else a gather."""
    def reverse(xp, x, n):
        x = x[..., columns]
        if xp is np and int(n.min()) == x.shape[0]:
            return np.ascontiguousarray(x[::-1])
        t = xp.arange(x.shape[0])[:, None]
        source = xp.where(t < n[None, :], n[None, :] - 1 - t, t)
        return xp.ascontiguousarray(x[source, xp.arange(x.shape[1])[None, :]])

    return be.array_op(reverse, X, lengths)
