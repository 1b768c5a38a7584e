"""The layer stack: `layers` layers of one or two directions, each a `gpurnn.recurrence` layer.

    X_0 = the inputs;  X_ℓ = H_{ℓ−1} ⊙ M_ℓ for ℓ > 0       M_ℓ: inverted dropout (training), else 1
    fw:  S  = recurrence(X_ℓ)              bw:  S' = recurrence(rev(X_ℓ))
    H_ℓ  = [S[1:], rev(S'[1:])]  (T,B,D·d) rev: each sequence reversed within its own length
    h_n  = S[T], S'[T] per cell  (B,d)     S'[T]: the bw state after the sequence's first step,
                                           as torch's h_n (padding is never read either way)
backward, top layer first, from G = ∂L/∂H_top (T,B,D·d) and/or g = ∂L/∂[S[T], S'[T]] (B,D·d):
    `recurrence.layer_backprop` gives each cell's gradients (a `Cell`), ds0 and the layer's
    ∂L/∂X_ℓ = [Δ_fw | rev(Δ'_bw)] [U_fw | U_bw]ᵀ, and ∂L/∂H_{ℓ−1} = ∂L/∂X_ℓ ⊙ M_ℓ.
The backend runs a layer's cells (`Backend.layer_forward`, `layer_backward`); the CPU's loops
read and write the bw cell's columns in place, so no reversed copy is made.
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

    inputs[ℓ]: layer ℓ's inputs X_ℓ; states[i]: cell i's S (T+1,B,d) in the cell's own order
    (cells in `Params.cells` order); masks[ℓ]: M_ℓ (T,B,D·d) or None; top: H of the top layer."""

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
    """Run every layer bottom-up; s0 (B,d) for one cell, (cells,B,d) for more; masks from
    `dropout_masks` (moved to the backend here) or None."""
    masks = [None if m is None else be.asarray(m) for m in masks or [None] * P.layers]
    record = StackRecord([], [], masks, None)
    x = inputs
    for layer in range(P.layers):
        if masks[layer] is not None:
            x = be.array_op(lambda xp, a, m: a * m, x, masks[layer])
        first = len(record.states)
        record.inputs.append(x)
        x, states = recurrence.layer_states(be, x, _cells(P, layer), [_cell_s0(P, s0, first + j)
                                                                      for j in range(P.directions)], lengths, activation)
        record.states.extend(states)
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
    D = P.directions
    for layer in reversed(range(P.layers)):
        first = layer * D
        back = recurrence.layer_backprop(be, record.inputs[layer], record.states[first:first + D], _cells(P, layer),
                                         G, g_last, lengths, activation, truncate,
                                         input_grad=layer > 0 or input_grad)
        for j, direction in enumerate(DIRECTIONS[:D]):
            grads.update({P.cell_name(layer, direction, f): g
                          for f, g in zip(CELL_FIELDS, back.cells[j])})
            ds0[first + j] = back.ds0[j]
        dX = back.dX
        if layer > 0 and record.masks[layer] is not None:
            dX = be.array_op(lambda xp, a, m: a * m, dX, record.masks[layer])
        G, g_last = dX, None
    ds0 = ds0[0] if len(ds0) == 1 else be.array_op(lambda xp, *g: xp.stack(g), *ds0)
    return grads, ds0, G if input_grad else None


def _cells(P: Params, layer):
    """Layer `layer`'s cells, fw then bw."""
    return [P.cell(layer, direction) for direction in DIRECTIONS[:P.directions]]


def _cell_s0(P: Params, s0, i):
    return s0 if P.n_cells == 1 else s0[i]
