"""The CPU backend's time loops, compiled: one cell's states forward and its Δ backward.

A cell reads each sequence i in its own order: forward (`rev` false) positions 0 … L−1,
backward (`rev` true) L−1 … 0, L = lengths[i]; its step t reads position p = t or L−1−t.
S (T+1,B,d) and Δ (T,B,d) are in that own order (what the products dW = S_prevᵀ Δ pair);
the arrays a layer shares are by position, the cell's columns c:c+d of width D·d:

    XP (T,B,D·d)  x U + b of every cell of the layer           (read)
    H  (T,B,D·d)  the cell's state after reading position p    (written; 0 rows: not wanted)
    G  (T,B,D·d)  ∂L/∂H explicit, 0 past each length           (read;    0 rows: none)
    g_last (B,D·d) ∂L/∂(the cell's final state)                (read;    0 rows: none)
    DP (T,B,D·d)  Δ at each position, 0 past each length       (written; 0 rows: not wanted)

so a bidirectional layer needs no reversed copies: the backward cell reads and writes its
columns in place. Past a length H holds the cell's final state (a finished sequence keeps
its state). One GEMM per step through `cpu_blas.gemm` (BLAS with β and row views); σ and
δ per row, compiled. The per-step bodies `activate_step` and `delta_step` also serve the
loop that runs one NumPy GEMM per step from Python (`gpurnn.backends.cpu`).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from ..compile_cache import CPU_SOURCES, key_on_sources
from .cpu_blas import activate, gemm, sigma_prime


@njit(cache=True, nogil=True, inline="always")
def copy_row(src, dst):
    """dst[:] = src for rows (d,): a plain loop (Numba's slice assignment checks for overlap
    and copies through a temporary, which cost a third of a backward step)."""
    for j in range(dst.shape[0]):
        dst[j] = src[j]


@njit(cache=True, nogil=True, inline="always")
def activate_step(act, t, XP, c, prev, nxt, lengths, rev, H):
    """Step t after its product nxt = prev W: nxt[i] = σ(nxt[i] + XP[p, i, c:c+d]) per active
    sequence i (p its position), also into H[p, i, c:c+d]; a finished one keeps prev[i], and
    H at position t (past its length) gets that final state. prev, nxt (B,d) = S[t], S[t+1]."""
    d = nxt.shape[1]
    keep = H.shape[0] > 0
    for i in range(nxt.shape[0]):
        length = lengths[i]
        if t < length:
            p = length - 1 - t if rev else t
            if keep:            # into H first, then the copy (the other order measured slower)
                h = H[p, i, c:c + d]
                activate(act, nxt[i], XP[p, i, c:c + d], h)
                copy_row(h, nxt[i])
            else:
                activate(act, nxt[i], XP[p, i, c:c + d], nxt[i])
        else:
            copy_row(prev[i], nxt[i])
            if keep:
                copy_row(prev[i], H[t, i, c:c + d])


@njit(cache=True, nogil=True)
def forward_loop(XP, c, W, S, lengths, act, rev, H):
    """S[t+1] = σ(S[t] W + XP at step t's positions), S[0] set: one GEMM (B,d)·(d,d) per step."""
    for t in range(S.shape[0] - 1):
        gemm(False, False, 1.0, S[t], W, 0.0, S[t + 1])
        activate_step(act, t, XP, c, S[t], S[t + 1], lengths, rev, H)


@njit(cache=True, nogil=True, inline="always")
def delta_step(act, t, h, G, c, g_last, S, lengths, rev, dt, DP):
    """Step t of exact BPTT before its product h ← Δ_t Wᵀ: Δ_t = (G at position p + h) ⊙ σ'(a_t)
    per active sequence (g_last added at its last step t = L−1), also into DP[p]; 0 for a
    finished one (and DP at position t). h, dt (B,d); S (T+1,B,d)."""
    d = dt.shape[1]
    st = S[t + 1]
    for i in range(dt.shape[0]):
        length = lengths[i]
        out, hi, si = dt[i], h[i], st[i]
        if t < length:
            p = length - 1 - t if rev else t
            if g_last.shape[0] > 0 and t == length - 1:
                last = g_last[i, c:c + d]
                if G.shape[0] > 0:
                    g = G[p, i, c:c + d]
                    for j in range(d):
                        out[j] = (hi[j] + (g[j] + last[j])) * sigma_prime(act, si[j])
                else:
                    for j in range(d):
                        out[j] = (hi[j] + last[j]) * sigma_prime(act, si[j])
            elif G.shape[0] > 0 and DP.shape[0] > 0:        # the common step, written to both at once
                g, dp = G[p, i, c:c + d], DP[p, i, c:c + d]
                for j in range(d):
                    out[j] = dp[j] = (hi[j] + g[j]) * sigma_prime(act, si[j])
                continue
            elif G.shape[0] > 0:
                g = G[p, i, c:c + d]
                for j in range(d):
                    out[j] = (hi[j] + g[j]) * sigma_prime(act, si[j])
            else:
                for j in range(d):
                    out[j] = hi[j] * sigma_prime(act, si[j])
        else:
            p = t
            out[:] = 0
        if DP.shape[0] > 0:
            copy_row(out, DP[p, i, c:c + d])


@njit(cache=True, nogil=True)
def backward_loop(G, c, g_last, S, WT, lengths, act, rev, delta, DP, ds0):
    """Exact BPTT: h = ∂L/∂s_t from every later step; Δ_t = (G_t + h) ⊙ σ'(a_t); h ← Δ_t Wᵀ.
    WT = Wᵀ (d,d) contiguous; writes Δ (T,B,d), adds h after step 0 to ds0 (B,d)."""
    T, B, d = delta.shape
    h = np.zeros((B, d), delta.dtype)
    for t in range(T - 1, -1, -1):
        delta_step(act, t, h, G, c, g_last, S, lengths, rev, delta[t], DP)
        gemm(False, False, 1.0, delta[t], WT, 0.0, h)   # (B,d)·(d,d): the one sequential product
    ds0 += h


@njit(cache=True, nogil=True)
def truncated_loop(G, c, g_last, S, WT, lengths, act, rev, tau, delta, DP, ds0):
    """Truncated BPTT: the loss at step t reaches steps t, t−1, …, t−τ only.

    Each loss step t starts a chain; up to τ+1 chains are alive at once, kept in a ring
    of slots (chain t in slot t mod (τ+1)) and propagated together by one product
    ((τ+1)·B, d)·(d, d) per step. Chain t retires after its term at step t−τ, and the
    chain entering next (t−τ−1) takes its slot. g_last is the loss term of step L−1.
    """
    T, B, d = delta.shape
    m = tau + 1
    chains = np.zeros((m, B, d), delta.dtype)     # ∂L_t/∂s_k for each live chain t
    local = np.zeros((m, B, d), delta.dtype)      # the same chains' ∂L_t/∂a_k
    for k in range(T - 1, -1, -1):
        entering = chains[k % m]
        sk, dk = S[k + 1], delta[k]
        for i in range(B):
            length = lengths[i]
            active = k < length
            p = length - 1 - k if rev and active else k
            entering[i] = 0
            if active and G.shape[0] > 0:
                copy_row(G[p, i, c:c + d], entering[i])
            if active and g_last.shape[0] > 0 and k == length - 1:
                entering[i] += g_last[i, c:c + d]
            for j in range(d):
                dsig = sigma_prime(act, sk[i, j]) if active else 0
                total = 0.0
                for s in range(m):
                    local[s, i, j] = chains[s, i, j] * dsig
                    total += local[s, i, j]
                dk[i, j] = total
            if DP.shape[0] > 0:
                copy_row(dk[i], DP[p, i, c:c + d])
        gemm(False, False, 1.0, local.reshape((m * B, d)), WT, 0.0, chains.reshape((m * B, d)))
    # ds0 = Δ_0 Wᵀ: every chain still holding a term at step 0 contributes (docs/design.md's
    # Σ_k ∂L_t/∂s_k ∂⁺s_k/∂θ with θ = s0, whose only explicit term is at the first step).
    for s in range(m):
        ds0 += chains[s]


key_on_sources(globals(), CPU_SOURCES)
