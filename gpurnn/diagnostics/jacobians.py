"""Jacobians through time, their norms, the lecture's bound and the explicit ∂⁺s_k/∂W.

Row-vector model (docs/design.md): a_t = x_t U + s_{t−1} W + b, s_t = σ(a_t). As a column
Jacobian (rows index s_t, columns index s_{t−1}),

    ∂s_t/∂s_{t−1} = diag(σ'(a_t)) Wᵀ,    ∂s_t/∂s_k = Π_{j=t}^{k+1} diag(σ'(a_j)) Wᵀ   (k ≤ t)

(the product ordered left to right from j = t down to j = k+1; the empty product at k = t is
I). Its transpose W diag(σ'(a_{k+1})) ⋯ W diag(σ'(a_t)) is the row-vector form and has the same
2-norm. Since ‖diag(σ')‖₂ ≤ γ = max σ' and ‖Wᵀ‖₂ = ‖W‖₂ = λ, the lecture's bound is

    ‖∂s_t/∂s_k‖₂ ≤ (γλ)^(t−k),      γ = 1 (tanh, relu), 1/4 (logistic).

The spectral radius ρ(W) ≤ λ decides the long-run rate (‖W^m‖^(1/m) → ρ(W)), so vanishing
is guaranteed for γλ < 1 and possible growth needs γρ(W) > 1.

Indices: states s_1..s_T are rows/columns 0..T−1 of every (T,T) matrix, entry [t−1, k−1] for
the pair (t, k); pairs with k > t are NaN. Arrays may be NumPy or CuPy (`gpurnn.arrays`).
"""
from __future__ import annotations

import numpy as np

from ..arrays import array_module, to_host
from ..bptt import forward
from ..cell import GAMMA, activation_code, sigma_prime_states
from ..validation import check_one_recurrence

SVD_MAX_HIDDEN = 64   # "auto" uses an exact SVD up to this d, power iteration above


def run_states(params, inputs, *, activation="tanh", s0=None, backend="auto"):
    """(states (T,B,d) = s_1..s_T, s0 (B,d), σ'(a_t) (T,B,d), logits (T,B,k)) on params' backend.
    The diagnostics study one recurrence: `params` of one layer and one direction."""
    check_one_recurrence(params)
    result = forward(params, inputs, s0=s0, activation=activation, backend=backend)
    xp = array_module(result.states)
    start = xp.zeros(result.s_last.shape, result.states.dtype) if s0 is None else xp.asarray(s0)
    return result.states, start, sigma_prime_states(result.states, activation), result.logits


def spectral_norm(W) -> float:
    """λ = ‖W‖₂, the largest singular value (exact)."""
    W = to_host(W)
    return float(np.linalg.norm(W.astype(np.float64), 2))


def spectral_radius(W) -> float:
    """ρ(W) = max |eigenvalue of W|."""
    W = to_host(W)
    return float(np.abs(np.linalg.eigvals(W.astype(np.float64))).max())


def lecture_bound(W, activation, lags) -> np.ndarray:
    """(γλ)^lag for each lag, λ = ‖W‖₂ and γ = max σ' of the activation."""
    gamma = GAMMA[activation_code(activation)]
    return (gamma * spectral_norm(W)) ** np.asarray(lags, dtype=np.float64)


def batched_spectral_norm(M, *, method="auto", iterations=300, tol=1e-12, seed=0):
    """‖M_i‖₂ for a stack M (N,d,d) (NumPy or CuPy), as a host float64 array (N,).

    method "svd": the largest singular value, exact. "power": power iteration on MᵀM,
    v ← Mᵀ(M v)/‖Mᵀ(M v)‖, estimate ‖M v‖, until every estimate changes by less than `tol`
    (relative) or after `iterations` rounds; its error shrinks like (σ₂/σ₁)^(2m).
    "auto": svd when d ≤ SVD_MAX_HIDDEN, else power.
    """
    if method not in ("auto", "svd", "power"):
        raise ValueError(f"method must be 'auto', 'svd' or 'power', got {method!r}")
    xp = array_module(M)
    if method == "svd" or (method == "auto" and M.shape[-1] <= SVD_MAX_HIDDEN):
        return to_host(xp.linalg.svd(M, compute_uv=False)[..., 0]).astype(np.float64)
    rng = np.random.default_rng(seed)
    v = xp.asarray(rng.standard_normal(M.shape[:-1]).astype(M.dtype))
    v /= xp.linalg.norm(v, axis=-1, keepdims=True)
    estimate = xp.zeros(M.shape[0], M.dtype)
    for _ in range(iterations):
        u = xp.einsum("nij,nj->ni", M, v)
        new = xp.linalg.norm(u, axis=-1)
        w = xp.einsum("nji,nj->ni", M, u)
        size = xp.linalg.norm(w, axis=-1, keepdims=True)
        v = xp.where(size > 0, w / xp.where(size > 0, size, 1), v)
        done = bool((xp.abs(new - estimate) <= tol * xp.maximum(new, 1e-300)).all())
        estimate = new
        if done:
            break
    return to_host(estimate).astype(np.float64)


def jacobian_norms(params, inputs, *, activation="tanh", s0=None, sequence=0, method="auto", max_lag=None,
                   backend="auto") -> np.ndarray:
    """(T,T) matrix N[t−1, k−1] = ‖∂s_t/∂s_k‖₂ for one sequence of the batch (NaN for k > t,
    and for t − k > max_lag when given).

    The products are built lag by lag, all start steps k at once: J_{k+ℓ,k} =
    diag(σ'(a_{k+ℓ})) Wᵀ J_{k+ℓ−1,k}, one batched (T−ℓ, d, d) product per lag (O(T·L·d³) work for
    L = min(T−1, max_lag) lags, L batched steps), each norm by `batched_spectral_norm(method=…)`.
    """
    states, _, dsig, _ = run_states(params, inputs, activation=activation, s0=s0, backend=backend)
    B = states.shape[1]
    if not 0 <= sequence < B:
        raise ValueError(f"sequence must be in [0, B) = [0, {B}), got {sequence!r}")
    xp = array_module(states)
    return slope_jacobian_norms(dsig[:, sequence, :], xp.asarray(params.W, dtype=states.dtype), method=method,
                                max_lag=max_lag)


def slope_jacobian_norms(D, W, *, method="auto", max_lag=None) -> np.ndarray:
    """`jacobian_norms` from one sequence's σ'(a_t) D (T,d) (t = 1..T) and W (d,d), NumPy or CuPy."""
    T, d = D.shape
    if max_lag is not None and (isinstance(max_lag, bool) or not isinstance(max_lag, int) or max_lag < 0):
        raise ValueError(f"max_lag must be None or an int >= 0, got {max_lag!r}")
    last = T - 1 if max_lag is None else min(T - 1, max_lag)
    xp = array_module(D)
    norms = np.full((T, T), np.nan)
    np.fill_diagonal(norms, 1.0)
    J = xp.broadcast_to(xp.eye(d, dtype=D.dtype), (T, d, d))
    for lag in range(1, last + 1):
        J = D[lag:, :, None] * xp.matmul(W.T, J[:T - lag])     # J[k0] = ∂s_{k0+lag+1}/∂s_{k0+1}
        values = batched_spectral_norm(J, method=method)
        norms[np.arange(lag, T), np.arange(T - lag)] = values
    return norms


def explicit_dW(params, inputs, k, *, activation="tanh", s0=None, sequence=0, backend="auto") -> np.ndarray:
    """The lecture's 3-D tensor ∂⁺s_k/∂W (d,d,d) for one sequence, step k in 1..T (host float64).

    E[p, q, r] = ∂⁺s_{k,p} / ∂W[r, q] = σ'(a_{k,p}) s_{k−1,r} if p = q, else 0:
    "explicit" holds s_{k−1} fixed. Index convention for the row-vector model: W[r, q] joins
    unit r of s_{k−1} to unit q of a_k (a_{k,q} = Σ_r s_{k−1,r} W[r,q] + …), so the lecture's
    column-vector matrix is Wᵀ and its element (q, r) is our W[r, q]. Contracting with
    ∂L/∂s_k gives the step's share of the gradient: dW[r, q] += Σ_p (∂L/∂s_k)_p E[p, q, r].
    """
    states, start, dsig, _ = run_states(params, inputs, activation=activation, s0=s0, backend=backend)
    T = states.shape[0]
    if not 1 <= k <= T:
        raise ValueError(f"k must be a step in [1, T] = [1, {T}], got {k!r}")
    previous = to_host(start[sequence] if k == 1 else states[k - 2, sequence]).astype(np.float64)
    dk = to_host(dsig[k - 1, sequence]).astype(np.float64)
    d = dk.shape[0]
    E = np.zeros((d, d, d))
    E[np.arange(d), np.arange(d), :] = dk[:, None] * previous[None, :]
    return E

