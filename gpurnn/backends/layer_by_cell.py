"""A layer's cells in their own arrays: `Backend.layer_forward` / `layer_backward` built from
`recurrence_forward_cells` / `recurrence_backward_cells` (the CUDA backend runs a layer's two
cells in one launch where they fit) and `array_op` glue, for a backend without loops of its
own that read a layer's shared arrays in place (the CUDA backend today).

The backward cell gets its columns of XP and G reversed within each sequence's length
(`reverse`, its own inverse) and contiguous, runs the plain forward recurrence, and its
states and Δ are reversed back into their positions: copies the CPU's loops avoid.
"""
from __future__ import annotations

import numpy as np


def layer_forward(be, XP, Ws, s0s, lengths, activation):
    """(H (T,B,D·d), [S_j (T+1,B,d)]) as `Backend.layer_forward`."""
    D, d = len(Ws), XP.shape[2] // len(Ws)
    Ss = be.recurrence_forward_cells([_own(be, XP, j, d, D, lengths) for j in range(D)], Ws, s0s, lengths,
                                     activation)
    parts = [S[1:] if j == 0 else reverse(be, S[1:], lengths) for j, S in enumerate(Ss)]
    return _joined(be, parts), Ss


def layer_backward(be, G, g_last, Ss, Ws, lengths, activation, truncate):
    """(Δ (T,B,D·d) by position, [Δ_j (T,B,d)] in each cell's order, [ds0_j (B,d)]) as
    `Backend.layer_backward`."""
    D, d = len(Ss), Ss[0].shape[2]
    Gs = [None if G is None else _own(be, G, j, d, D, lengths) for j in range(D)]
    lasts = [g_last if g_last is None or D == 1 else
             be.array_op(lambda xp, a, j=j: xp.ascontiguousarray(a[:, j * d:(j + 1) * d]), g_last) for j in range(D)]
    backs = be.recurrence_backward_cells(Gs, lasts, Ss, Ws, lengths, activation, truncate)
    parts = [delta if j == 0 else reverse(be, delta, lengths) for j, (delta, _) in enumerate(backs)]
    return _joined(be, parts), [delta for delta, _ in backs], [ds0 for _, ds0 in backs]


def reverse(be, X, lengths, columns=slice(None)):
    """X[..., columns] (T,B,...) with each sequence b's first lengths[b] steps in reverse order (the
    rest in place), a new contiguous array: one strided copy on the host when every sequence is
    full, else a gather."""
    def rev(xp, x, n):
        x = x[..., columns]
        if xp is np and int(n.min()) == x.shape[0]:
            return np.ascontiguousarray(x[::-1])
        t = xp.arange(x.shape[0])[:, None]
        source = xp.where(t < n[None, :], n[None, :] - 1 - t, t)
        return xp.ascontiguousarray(x[source, xp.arange(x.shape[1])[None, :]])

    return be.array_op(rev, X, lengths)


def _own(be, A, j, d, D, lengths):
    """Cell j's columns of A (T,B,D·d) in its own order: contiguous, reversed for the backward cell
    (A itself for one forward cell)."""
    if D == 1:
        return A
    return be.array_op(lambda xp, a: xp.ascontiguousarray(a[..., :d]), A) if j == 0 else \
        reverse(be, A, lengths, slice(j * d, (j + 1) * d))


def _joined(be, parts):
    """The cells' (T,B,d) arrays side by side (T,B,D·d); one part is itself."""
    return parts[0] if len(parts) == 1 else be.array_op(lambda xp, *p: xp.concatenate(p, axis=2), *parts)
