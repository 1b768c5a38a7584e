"""v1, the first CPU backend (commit 9245560), kept as the baseline of profiling/cpu/harness.py.

Per step: `np.dot(prev, W, out)` inside @njit, then σ by a scalar libm call per element
(not vectorized); backward reads G / g_last per element through `_explicit_grad` and
copies Wᵀ; softmax-xent with a scalar `math.exp` per element.

The CPU backend: NumPy arrays, BLAS for every product, the time loops compiled by Numba.

The only sequential work is the recurrence (`s_{t-1} W` forward, `δ_t W^T` backward);
it runs inside `@njit` loops that call BLAS once per step on the whole batch, so Python
never runs per step. Everything else is one product over all T·B rows.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from gpurnn import cell
from gpurnn.backends.base import CellsOneByOne, ProductsInTurn

sigma = njit(cell.sigma, cache=True)
sigma_prime = njit(cell.sigma_prime_from_state, cache=True)


@njit(cache=True)
def _gather_rows(tokens, U, b, lengths, XP):
    """XP[t, i] = U[tokens[t, i]] + b for t < lengths[i]; rows past a length are zeroed."""
    T, B = tokens.shape
    for t in range(T):
        for i in range(B):
            if t < lengths[i]:
                XP[t, i, :] = U[tokens[t, i]] + b
            else:
                XP[t, i, :] = 0


@njit(cache=True)
def _scatter_rows(tokens, delta, lengths, dU):
    """dU[tokens[t, i]] += Δ[t, i] for t < lengths[i]."""
    T, B = tokens.shape
    for t in range(T):
        for i in range(B):
            if t < lengths[i]:
                dU[tokens[t, i]] += delta[t, i]


@njit(cache=True)
def _recurrence_forward(XP, W, S, lengths, act):
    """S[t+1] = σ(XP[t] + S[t] W) per active sequence, S[t] carried for finished ones."""
    T, B, d = XP.shape
    for t in range(T):
        prev, nxt = S[t], S[t + 1]
        np.dot(prev, W, nxt)                      # (B,d) @ (d,d): the one sequential product
        for i in range(B):
            if t < lengths[i]:
                for j in range(d):
                    nxt[i, j] = sigma(act, nxt[i, j] + XP[t, i, j])
            else:
                nxt[i] = prev[i]


@njit(cache=True)
def _explicit_grad(G, g_last, lengths, t, i, j):
    """∂L_t/∂s_t[i, j] from the loss at step t alone (0 where no loss is taken)."""
    g = 0.0
    if G.shape[0] > 0:
        g += G[t, i, j]
    if g_last.shape[0] > 0 and t == lengths[i] - 1:
        g += g_last[i, j]
    return g


@njit(cache=True)
def _backward_exact(G, g_last, S, WT, lengths, act, delta, ds0):
    """Full BPTT: h = ∂L/∂s_t accumulates every later loss; Δ_t = h ⊙ σ'(a_t); h ← Δ_t W^T."""
    T, B, d = delta.shape
    h = np.zeros((B, d), delta.dtype)
    for t in range(T - 1, -1, -1):
        st, dt = S[t + 1], delta[t]
        for i in range(B):
            if t < lengths[i]:
                for j in range(d):
                    g = h[i, j] + _explicit_grad(G, g_last, lengths, t, i, j)
                    dt[i, j] = g * sigma_prime(act, st[i, j])
            else:
                dt[i] = 0
        np.dot(dt, WT, h)                         # (B,d) @ (d,d): the one sequential product
    ds0[:] = h


@njit(cache=True)
def _backward_truncated(G, g_last, S, WT, lengths, act, tau, delta, ds0):
    """Truncated BPTT: the loss at step t reaches steps t, t−1, …, t−τ only.

    Each loss step t starts a chain; up to τ+1 chains are alive at once, kept in a ring
    of slots (chain t in slot t mod (τ+1)) and propagated together by one product
    ((τ+1)·B, d) @ (d, d) per step. Chain t retires after its term at step t−τ, and the
    chain entering next (t−τ−1) takes its slot.
    """
    T, B, d = delta.shape
    m = tau + 1
    chains = np.zeros((m, B, d), delta.dtype)     # ∂L_t/∂s_k for each live chain t
    local = np.zeros((m, B, d), delta.dtype)      # the same chains' ∂L_t/∂a_k
    for k in range(T - 1, -1, -1):
        slot = k % m
        for i in range(B):
            for j in range(d):
                chains[slot, i, j] = _explicit_grad(G, g_last, lengths, k, i, j)
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
        np.dot(local.reshape((m * B, d)), WT, chains.reshape((m * B, d)))
    # ds0 = Δ_0 W^T: every chain still holding a term at step 0 contributes (docs/design.md's
    # Σ_k ∂L_t/∂s_k ∂⁺s_k/∂θ with θ = s0, whose only explicit term is at the first step).
    for c in range(m):
        ds0 += chains[c]


@njit(cache=True)
def _softmax_xent(Z, targets, dZ):
    """Loss Σ_r −log softmax(Z_r)[target_r] and dZ = softmax − onehot, rows with target < 0 skipped."""
    R, k = Z.shape
    loss = 0.0
    count = 0
    for r in range(R):
        target = targets[r]
        if target < 0:
            dZ[r] = 0
            continue
        top = Z[r].max()
        total = 0.0
        for j in range(k):
            e = math.exp(Z[r, j] - top)
            dZ[r, j] = e
            total += e
        loss += math.log(total) + top - Z[r, target]
        inv = 1.0 / total
        for j in range(k):
            dZ[r, j] *= inv
        dZ[r, target] -= 1
        count += 1
    return loss, count


@njit(cache=True)
def _add_length0(g_last, lengths, ds0):
    """A sequence of length 0 reads its output from s0 directly."""
    for i in range(lengths.shape[0]):
        if lengths[i] == 0:
            ds0[i] += g_last[i]


class CPUBackend(CellsOneByOne, ProductsInTurn):
    """NumPy + Numba. See `gpurnn.backends.base.Backend` for each operation's contract."""

    name = "cpu"

    def asarray(self, array, dtype=None):
        return np.ascontiguousarray(array, dtype=dtype)

    def to_host(self, array):
        return array

    def zeros(self, shape, dtype):
        return np.zeros(shape, dtype)

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
        _recurrence_forward(XP, W, S, lengths, activation)
        return S

    def affine(self, X, V, c):
        Z = X @ V
        Z += c
        return Z

    def softmax_xent(self, Z, targets):
        dZ = np.empty_like(Z)
        loss, count = _softmax_xent(Z, targets, dZ)
        return float(loss), int(count), dZ

    def recurrence_backward(self, G, g_last, S, W, lengths, activation, truncate):
        T, B, d = S.shape[0] - 1, S.shape[1], S.shape[2]
        dtype = S.dtype
        G = np.zeros((0, B, d), dtype) if G is None else G
        g_last = np.zeros((0, d), dtype) if g_last is None else g_last
        WT = np.ascontiguousarray(W.T)
        delta = np.empty((T, B, d), dtype)
        ds0 = np.zeros((B, d), dtype)
        if truncate is None:
            _backward_exact(G, g_last, S, WT, lengths, activation, delta, ds0)
        else:
            _backward_truncated(G, g_last, S, WT, lengths, activation, truncate, delta, ds0)
        if g_last.shape[0]:
            _add_length0(g_last, lengths, ds0)
        return delta, ds0

    def matmul(self, A, B, *, trans_a=False, trans_b=False):
        return (A.T if trans_a else A) @ (B.T if trans_b else B)

    def sum_rows(self, A):
        return A.sum(axis=0)

    def input_grad(self, inputs, delta, n, lengths):
        T, B, d = delta.shape
        if inputs.ndim == 2:
            dU = np.zeros((n, d), delta.dtype)
            _scatter_rows(inputs, delta, lengths, dU)
            return dU
        return self.matmul(inputs.reshape(T * B, n), delta.reshape(T * B, d), trans_a=True)

    def sum_squares(self, A):
        flat = A.reshape(-1).astype(np.float64)
        return float(flat @ flat)

    def scale(self, A, factor):
        return A * A.dtype.type(factor)

    def clamp(self, A, limit):
        return np.clip(A, -limit, limit)
