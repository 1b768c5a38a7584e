"""The CPU backend: NumPy arrays, BLAS for every product, the time loops compiled by Numba.

The only sequential work is the recurrence (`s_{t-1} W` forward, `δ_t W^T` backward).
Small steps run inside `@njit` loops that call BLAS once per step, so Python never runs
per step, the batch split into slices on threads where that pays (`cpu_threads`); large
steps (`cpu_threads.stepwise_blas`) run a Python loop around one NumPy GEMM per step on
every BLAS thread, with σ and δ compiled. Everything else is one product over all T·B rows.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from ..arrays import to_host
from .base import CellsOneByOne
from .cpu_blas import activate, gemm, sigma_prime
from .cpu_threads import run_sliced, stepwise_blas


@njit(cache=True)
def _gather_rows(tokens, U, b, lengths, XP):
    """XP[t, i] = U[tokens[t, i]] + b for t < lengths[i]; rows past a length are zeroed."""
    T, B, d = XP.shape
    for t in range(T):
        for i in range(B):
            row = XP[t, i]
            if t < lengths[i]:
                u = U[tokens[t, i]]
                for j in range(d):
                    row[j] = u[j] + b[j]
            else:
                row[:] = 0


@njit(cache=True)
def _scatter_rows(tokens, delta, lengths, dU):
    """dU[tokens[t, i]] += Δ[t, i] for t < lengths[i]."""
    T, B, d = delta.shape
    for t in range(T):
        for i in range(B):
            if t < lengths[i]:
                row, src = dU[tokens[t, i]], delta[t, i]
                for j in range(d):
                    row[j] += src[j]


@njit(cache=True, nogil=True, inline="always")
def _activate_step(act, t, XP, prev, nxt, lengths):
    """Step t after its product nxt = prev W: nxt[i] = σ(nxt[i] + XP[t, i]) per active
    sequence i, nxt[i] = prev[i] for finished ones. prev, nxt (B,d) = S[t], S[t+1]."""
    for i in range(nxt.shape[0]):
        if t < lengths[i]:
            activate(act, nxt[i], XP[t, i], nxt[i])
        else:
            nxt[i] = prev[i]


@njit(cache=True, nogil=True)
def _recurrence_forward(XP, W, S, lengths, act):
    """S[t+1] = σ(S[t] W + XP[t]) per active sequence, S[t] carried for finished ones.

    XP (T,B,d), W (d,d), S (T+1,B,d) with S[0] set: one GEMM (B,d)·(d,d) per step, then
    σ row by row.
    """
    for t in range(XP.shape[0]):
        gemm(False, False, 1.0, S[t], W, 0.0, S[t + 1])
        _activate_step(act, t, XP, S[t], S[t + 1], lengths)


@njit(cache=True, error_model="numpy", inline="always")
def _delta_row(act, h, G, t, i, s, out):
    """out = (h + G[t, i]) ⊙ σ'(s) over one row (d,): ∂L/∂a from ∂L/∂s (later steps h, this
    step G[t, i]; no term when G has 0 rows)."""
    if G.shape[0] == 0:
        for j in range(out.shape[0]):
            out[j] = h[j] * sigma_prime(act, s[j])
        return
    g = G[t, i]
    for j in range(out.shape[0]):
        out[j] = (h[j] + g[j]) * sigma_prime(act, s[j])


@njit(cache=True, nogil=True, inline="always")
def _delta_step(act, t, h, G, S, lengths, dt):
    """Step t of full BPTT before its product h ← Δ_t Wᵀ: Δ_t = (G_t + h) ⊙ σ'(a_t) per
    active sequence, 0 for finished ones. h, dt (B,d); G (T,B,d) or (0,B,d); S (T+1,B,d)."""
    st = S[t + 1]
    for i in range(dt.shape[0]):
        if t < lengths[i]:
            _delta_row(act, h[i], G, t, i, st[i], dt[i])
        else:
            dt[i] = 0


@njit(cache=True, nogil=True)
def _backward_exact(G, S, WT, lengths, act, delta, ds0):
    """Full BPTT: h = ∂L/∂s_t from every later loss; Δ_t = (G_t + h) ⊙ σ'(a_t); h ← Δ_t Wᵀ.

    G (T,B,d) explicit ∂L_t/∂s_t (0 rows: none), S (T+1,B,d), WT = Wᵀ (d,d) contiguous; writes Δ (T,B,d),
    adds to ds0 (B,d).
    """
    T, B, d = delta.shape
    h = np.zeros((B, d), delta.dtype)
    for t in range(T - 1, -1, -1):
        _delta_step(act, t, h, G, S, lengths, delta[t])
        gemm(False, False, 1.0, delta[t], WT, 0.0, h)   # (B,d)·(d,d): the one sequential product
    ds0 += h


@njit(cache=True, nogil=True)
def _backward_truncated(G, S, WT, lengths, act, tau, delta, ds0):
    """Truncated BPTT: the loss at step t reaches steps t, t−1, …, t−τ only.

    Each loss step t starts a chain; up to τ+1 chains are alive at once, kept in a ring
    of slots (chain t in slot t mod (τ+1)) and propagated together by one product
    ((τ+1)·B, d)·(d, d) per step. Chain t retires after its term at step t−τ, and the
    chain entering next (t−τ−1) takes its slot.
    """
    T, B, d = delta.shape
    m = tau + 1
    chains = np.zeros((m, B, d), delta.dtype)     # ∂L_t/∂s_k for each live chain t
    local = np.zeros((m, B, d), delta.dtype)      # the same chains' ∂L_t/∂a_k
    for k in range(T - 1, -1, -1):
        if G.shape[0] > 0:
            chains[k % m] = G[k]
        else:
            chains[k % m] = 0
        sk, dk = S[k + 1], delta[k]
        for i in range(B):
            active = k < lengths[i]
            for j in range(d):
                dsig = sigma_prime(act, sk[i, j]) if active else 0
                total = 0.0
                for c in range(m):
                    local[c, i, j] = chains[c, i, j] * dsig
                    total += local[c, i, j]
                dk[i, j] = total
        gemm(False, False, 1.0, local.reshape((m * B, d)), WT, 0.0, chains.reshape((m * B, d)))
    # ds0 = Δ_0 Wᵀ: every chain still holding a term at step 0 contributes (docs/design.md's
    # Σ_k ∂L_t/∂s_k ∂⁺s_k/∂θ with θ = s0, whose only explicit term is at the first step).
    for c in range(m):
        ds0 += chains[c]


@njit(cache=True)
def _fold_last(g_last, lengths, G, ds0):
    """Add ∂L/∂s_last (B,d) to G (T,B,d) at each sequence's last step, or to ds0 for length 0."""
    for i in range(lengths.shape[0]):
        if lengths[i] == 0:
            ds0[i] += g_last[i]
        else:
            G[lengths[i] - 1, i] += g_last[i]


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
    dZ = np.empty_like(Z)
    top = _shift_rows(Z, dZ)
    np.exp(dZ, out=dZ)
    total = _normalize_rows(dZ)
    terms = np.log(total[rows]) + top[rows] - Z[rows, cols]
    dZ[rows, cols] -= 1
    if rows.size < Z.shape[0]:
        dZ[targets < 0] = 0
    return float(terms.sum(dtype=np.float64)), int(rows.size), dZ


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
        if inputs.ndim == 2:
            XP = np.empty((T, B, U.shape[1]), U.dtype)
            _gather_rows(inputs, U, b, lengths, XP)
            return XP
        return self.affine(inputs.reshape(T * B, -1), U, b).reshape(T, B, -1)

    def recurrence_forward(self, XP, W, s0, lengths, activation):
        T, B, d = XP.shape
        S = np.empty((T + 1, B, d), XP.dtype)
        S[0] = s0
        if stepwise_blas(B, d):
            for t in range(T):
                np.matmul(S[t], W, out=S[t + 1])
                _activate_step(activation, t, XP, S[t], S[t + 1], lengths)
        else:
            run_sliced(_recurrence_forward, B, d, lambda r: (XP[:, r], W, S[:, r], lengths[r], activation))
        return S

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
        Z = X @ V
        Z += c
        return Z

    def softmax_xent(self, Z, targets):
        return _softmax_xent(Z, targets)

    def recurrence_backward(self, G, g_last, S, W, lengths, activation, truncate):
        T, B, d = S.shape[0] - 1, S.shape[1], S.shape[2]
        delta = np.empty((T, B, d), S.dtype)
        ds0 = np.zeros((B, d), S.dtype)
        if g_last is not None:       # folded into the explicit terms (a copy: the caller's G is kept)
            G = np.zeros((T, B, d), S.dtype) if G is None else G.copy()
            _fold_last(g_last, lengths, G, ds0)
        elif G is None:
            G = np.empty((0, B, d), S.dtype)      # absent: 0 rows (gpurnn.backends.base)
        WT = np.ascontiguousarray(W.T)        # BLAS runs Δ·Wᵀ for small B 3-4× slower than Δ·(Wᵀ copied)
        if truncate is None and stepwise_blas(B, d):
            h = np.zeros((B, d), S.dtype)
            for t in range(T - 1, -1, -1):
                _delta_step(activation, t, h, G, S, lengths, delta[t])
                np.matmul(delta[t], WT, out=h)
            ds0 += h
        elif truncate is None:
            run_sliced(_backward_exact, B, d,
                       lambda r: (G[:, r], S[:, r], WT, lengths[r], activation, delta[:, r], ds0[r]))
        else:
            run_sliced(_backward_truncated, B, d,
                       lambda r: (G[:, r], S[:, r], WT, lengths[r], activation, truncate, delta[:, r], ds0[r]))
        return delta, ds0

    def matmul(self, A, B, *, trans_a=False, trans_b=False):
        return (A.T if trans_a else A) @ (B.T if trans_b else B)

    def sum_rows(self, A):
        return np.ones(A.shape[0], A.dtype) @ A   # BLAS gemv: 1.6x NumPy's sum(axis=0) at (12800,256)

    def input_grad(self, inputs, delta, n, lengths):
        T, B, d = delta.shape
        if inputs.ndim == 2:
            dU = np.zeros((n, d), delta.dtype)
            _scatter_rows(inputs, delta, lengths, dU)
            return dU
        return self.matmul(inputs.reshape(T * B, n), delta.reshape(T * B, d), trans_a=True)

    def sum_squares(self, *arrays):
        flats = [A.reshape(-1).astype(np.float64) for A in arrays]
        return sum(float(flat @ flat) for flat in flats)

    def scale(self, A, factor):
        return A * A.dtype.type(factor)

    def clamp(self, A, limit):
        return np.clip(A, -limit, limit)
