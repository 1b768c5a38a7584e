"""The CPU backend: NumPy arrays, BLAS for every product, the time loops compiled by Numba.

The only sequential work is the recurrence (`s_{t-1} W` forward, `δ_t W^T` backward): the
loops of `cpu_loops`, run as `cpu_threads.plan` says (the two cells of a bidirectional layer
at once, batch slices on threads, or one NumPy GEMM per step on every BLAS thread for large
exact steps). Everything else is one product over all T·B rows. Large arrays come from
`cpu_memory` (recycled, so a call does not fault their pages in again).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from ..arrays import to_host
from ..compile_cache import CPU_SOURCES, key_on_sources
from . import cpu_memory as mem
from .base import CellsOneByOne
from .cpu_loops import activate_step, backward_loop, delta_step, forward_loop, truncated_loop
from .cpu_threads import plan, products_plan, run


@njit(cache=True)
def _gather_rows(tokens, U, b, lengths, XP):
    """XP[t, i] = Σ_f U[tokens[t, i, f]] + b for t < lengths[i]; rows past a length are zeroed.
    tokens (T,B,F)."""
    T, B, d = XP.shape
    for t in range(T):
        for i in range(B):
            row = XP[t, i]
            if t < lengths[i]:
                u = U[tokens[t, i, 0]]
                for j in range(d):
                    row[j] = u[j]
                for f in range(1, tokens.shape[2]):
                    u = U[tokens[t, i, f]]
                    for j in range(d):
                        row[j] += u[j]
                for j in range(d):
                    row[j] += b[j]
            else:
                row[:] = 0


@njit(cache=True)
def _scatter_rows(tokens, delta, lengths, dU):
    """dU[tokens[t, i, f]] += Δ[t, i] for t < lengths[i] and every field f. tokens (T,B,F)."""
    T, B, d = delta.shape
    for t in range(T):
        for i in range(B):
            if t < lengths[i]:
                src = delta[t, i]
                for f in range(tokens.shape[2]):
                    row = dU[tokens[t, i, f]]
                    for j in range(d):
                        row[j] += src[j]


def _token_fields(inputs):
    """Token ids (T,B) or (T,B,F) as (T,B,F); None for dense (float) inputs."""
    if inputs.dtype.kind not in "iu":
        return None
    return inputs[:, :, None] if inputs.ndim == 2 else inputs


@njit(cache=True)
def _shift_rows(Z, out):
    """out[r] = Z[r] − max(Z[r]) for Z (R,k); returns the maxima (R,). Compiled: NumPy's
    max over short rows (axis=1) took 40% of softmax-xent."""
    R, k = Z.shape
    top = np.empty(R, Z.dtype)
    for r in range(R):
        m = Z[r, 0]
        for j in range(1, k):
            m = max(m, Z[r, j])
        for j in range(k):
            out[r, j] = Z[r, j] - m
        top[r] = m
    return top


@njit(cache=True, fastmath={"reassoc"})
def _normalize_rows(E):
    """E[r] /= Σ E[r] in place for E (R,k); returns the sums (R,)."""
    R, k = E.shape
    total = np.empty(R, E.dtype)
    for r in range(R):
        acc = E.dtype.type(0)
        for j in range(k):
            acc += E[r, j]
        for j in range(k):
            E[r, j] /= acc
        total[r] = acc
    return total


def _softmax_xent(Z, targets):
    """(loss Σ_r −log softmax(Z_r)[target_r] in float64, count, dZ = softmax − onehot) for
    Z (R,k), targets (R,); rows with target < 0 take no loss and get dZ = 0.

    exp by NumPy (SIMD; Numba's is a scalar libm call), the row reductions compiled.
    """
    rows = np.flatnonzero(targets >= 0)
    cols = targets[rows]
    dZ = mem.empty(Z.shape, Z.dtype)
    top = _shift_rows(Z, dZ)
    np.exp(dZ, out=dZ)
    total = _normalize_rows(dZ)
    terms = np.log(total[rows]) + top[rows] - Z[rows, cols]
    dZ[rows, cols] -= 1
    if rows.size < Z.shape[0]:
        dZ[targets < 0] = 0
    return float(terms.sum(dtype=np.float64)), int(rows.size), dZ


# which arguments of `forward_loop` (XP, S, lengths, H) and of `backward_loop` / `truncated_loop`
# (G, g_last, S, lengths, delta, DP, ds0) hold the batch (restricted to a slice's rows)
FORWARD_BATCHED = (0, 3, 4, 7)
BACKWARD_BATCHED = (0, 2, 3, 5, -3, -2, -1)


def _rows(args, rows, batched):
    """args with the arrays at indices `batched` restricted to the batch rows `rows` (views)."""
    args = list(args)
    for i in batched:
        A = args[i]
        args[i] = A[:, rows] if A.ndim == 3 else A[rows]
    return tuple(args)


class CPUBackend(CellsOneByOne):
    """NumPy + Numba. See `gpurnn.backends.base.Backend` for each operation's contract."""

    name = "cpu"

    def asarray(self, array, dtype=None):
        return np.ascontiguousarray(array, dtype=dtype)

    to_host = staticmethod(to_host)

    def zeros(self, shape, dtype):
        return np.zeros(shape, dtype)

    def array_op(self, fn, *arrays):
        return fn(np, *arrays)

    def project_inputs(self, inputs, U, b, lengths):
        T, B = inputs.shape[:2]
        tokens = _token_fields(inputs)
        if tokens is not None:
            XP = mem.empty((T, B, U.shape[1]), U.dtype)
            _gather_rows(tokens, U, b, lengths, XP)
            return XP
        return self.affine(inputs.reshape(T * B, -1), U, b).reshape(T, B, -1)

    def recurrence_forward(self, XP, W, s0, lengths, activation):
        return self.layer_forward(XP, [W], [s0], lengths, activation)[1][0]

    def layer_forward(self, XP, Ws, s0s, lengths, activation):
        T, B, width = XP.shape
        D, d = len(Ws), width // len(Ws)
        Ss = [mem.empty((T + 1, B, d), XP.dtype) for _ in range(D)]
        for S, s0 in zip(Ss, s0s):
            S[0] = s0
        H = mem.empty((T if D > 1 else 0, B, width), XP.dtype)    # one forward cell: H = S[1:]
        choice = plan(B, d, D, None, T)
        if choice.kind == "stepwise":
            for j, (W, S) in enumerate(zip(Ws, Ss)):
                for t in range(T):
                    np.matmul(S[t], W, out=S[t + 1])
                    activate_step(activation, t, XP, j * d, S[t], S[t + 1], lengths, j == 1, H)
        else:
            cells = [(XP, j * d, W, S, lengths, activation, j == 1, H) for j, (W, S) in enumerate(zip(Ws, Ss))]
            run(choice, forward_loop, [_rows(args, rows, FORWARD_BATCHED) for args in cells for rows in choice.parts])
        return (Ss[0][1:] if D == 1 else H), Ss

    def pool_states(self, H, lengths, mode):
        real = np.arange(H.shape[0])[:, None, None] < lengths[None, :, None]         # (T,B,1)
        if mode == "mean":
            return np.where(real, H, 0).sum(axis=0) / lengths[:, None].astype(H.dtype), None
        argmax = np.where(real, H, -np.inf).argmax(axis=0)                              # first on ties
        return np.take_along_axis(H, argmax[None], axis=0)[0], argmax

    def unpool_grad(self, dP, lengths, argmax, mode, T):
        B, d = dP.shape
        if mode == "mean":
            real = np.arange(T)[:, None, None] < lengths[None, :, None]
            return np.where(real, dP / lengths[:, None].astype(dP.dtype), dP.dtype.type(0))
        G = np.zeros((T, B, d), dP.dtype)
        np.put_along_axis(G, argmax[None], dP[None], axis=0)
        return G

    def affine(self, X, V, c):
        Z = np.matmul(X, V, out=mem.empty((X.shape[0], V.shape[1]), X.dtype))
        Z += c
        return Z

    def softmax_xent(self, Z, targets):
        return _softmax_xent(Z, targets)

    def recurrence_backward(self, G, g_last, S, W, lengths, activation, truncate):
        (delta,), _, (ds0,) = self._cells_backward(G, g_last, [S], [W], lengths, activation, truncate)
        return delta, ds0

    def layer_backward(self, G, g_last, Ss, Ws, lengths, activation, truncate):
        deltas, DP, ds0s = self._cells_backward(G, g_last, Ss, Ws, lengths, activation, truncate)
        return (deltas[0] if DP is None else DP), deltas, ds0s

    def _cells_backward(self, G, g_last, Ss, Ws, lengths, activation, truncate):
        """([Δ_j (T,B,d)] in each cell's own order, DP (T,B,D·d) Δ by position or None for one
        forward cell, [ds0_j (B,d)]) from G (T,B,D·d) and g_last (B,D·d), either None."""
        D = len(Ss)
        T, B, d = Ss[0].shape[0] - 1, Ss[0].shape[1], Ss[0].shape[2]
        dtype = Ss[0].dtype
        G = np.empty((0, B, D * d), dtype) if G is None else G           # absent: 0 rows (gpurnn.backends.base)
        last = np.empty((0, D * d), dtype) if g_last is None else g_last
        deltas = [mem.empty((T, B, d), dtype) for _ in range(D)]
        DP = mem.empty((T if D > 1 else 0, B, D * d), dtype)
        ds0s = [np.zeros((B, d), dtype) for _ in range(D)]
        if g_last is not None:                   # a sequence of length 0: g_last is ∂L/∂s0
            for j, ds0 in enumerate(ds0s):
                ds0[lengths == 0] = g_last[lengths == 0, j * d:(j + 1) * d]
        WTs = [np.ascontiguousarray(W.T) for W in Ws]   # BLAS runs Δ·Wᵀ for small B 3-4× slower than Δ·(Wᵀ copied)
        choice = plan(B, d, D, truncate, T)
        if choice.kind == "stepwise":
            for j, (S, WT, delta, ds0) in enumerate(zip(Ss, WTs, deltas, ds0s)):
                h = np.zeros((B, d), dtype)
                for t in range(T - 1, -1, -1):
                    delta_step(activation, t, h, G, j * d, last, S, lengths, j == 1, delta[t], DP)
                    np.matmul(delta[t], WT, out=h)
                ds0 += h
        else:
            loop, extra = (backward_loop, ()) if truncate is None else (truncated_loop, (truncate,))
            cells = [(G, j * d, last, S, WT, lengths, activation, j == 1, *extra, delta, DP, ds0)
                     for j, (S, WT, delta, ds0) in enumerate(zip(Ss, WTs, deltas, ds0s))]
            run(choice, loop, [_rows(args, rows, BACKWARD_BATCHED) for args in cells for rows in choice.parts])
        return deltas, (DP if D > 1 else None), ds0s

    def matmul(self, A, B, *, trans_a=False, trans_b=False):
        return self.matmuls([(A, B, trans_a, trans_b)])[0]

    def matmuls(self, specs):
        tasks = []                                  # (op(A), op(B), out) each
        for A, B, trans_a, trans_b in specs:
            opA, opB = (A.T if trans_a else A), (B.T if trans_b else B)
            tasks.append((opA, opB, mem.empty((opA.shape[0], opB.shape[1]), A.dtype)))
        run(products_plan([a.shape[0] * a.shape[1] * b.shape[1] for a, b, _ in tasks]), np.matmul, tasks)
        return [out for _, _, out in tasks]

    def sum_rows(self, A):
        return np.ones(A.shape[0], A.dtype) @ A   # BLAS gemv: 1.6x NumPy's sum(axis=0) at (12800,256)

    def input_grad(self, inputs, delta, n, lengths):
        T, B, d = delta.shape
        tokens = _token_fields(inputs)
        if tokens is not None:
            dU = np.zeros((n, d), delta.dtype)
            _scatter_rows(tokens, delta, lengths, dU)
            return dU
        return self.matmul(inputs.reshape(T * B, n), delta.reshape(T * B, d), trans_a=True)

    def sum_squares(self, *arrays):
        flats = [A.reshape(-1).astype(np.float64) for A in arrays]
        return sum(float(flat @ flat) for flat in flats)

    def scale(self, A, factor):
        return A * A.dtype.type(factor)

    def clamp(self, A, limit):
        return np.clip(A, -limit, limit)


key_on_sources(globals(), CPU_SOURCES)
