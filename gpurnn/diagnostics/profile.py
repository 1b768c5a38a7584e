"""The gradient-through-time profile ‖∂L_t/∂s_k‖ for every pair k ≤ t.

L_t = Σ_b −log ŷ_{t,b}[target_{t,b}] is the loss at step t (summed over the batch, 0 where no
target). Its gradient with respect to the states at step k ≤ t (a row vector per sequence):

    ∂L_t/∂s_t = (ŷ_t − onehot(target_t)) Vᵀ                     the explicit term
    ∂L_t/∂s_{k−1} = (∂L_t/∂s_k ⊙ σ'(a_k)) Wᵀ                     one step back

(the row vector times the column Jacobian ∂s_k/∂s_{k−1} = diag(σ'(a_k)) Wᵀ). The norm is
the Frobenius norm over the batch and the d units: sequences are independent, so it is the
norm of ∂L_t/∂(s_k of every sequence). Each loss step's chain is the backend's own
`recurrence_backward` with G nonzero at that step only (∂L_t/∂s_k = G_k + Δ_{k+1} Wᵀ): the
chains of several loss steps run as one batch of copies of the B sequences, O(T² B d²) work
in all, on the parameters' device (NumPy or CuPy arrays).

With output "last" the only loss term is at step T; with "mean" or "max" the loss term at
step t is that step's share of the pooled loss (`gpurnn.bptt.explicit_state_grads`), so a
pooled model's profile shows how directly every step is reached. `totals` (T,) holds the
whole gradient ‖∂L/∂s_k‖ = ‖Σ_{t≥k} ∂L_t/∂s_k‖ that reaches each step.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..arrays import array_module, to_host
from ..backends import backend_for
from ..bptt import explicit_state_grads
from ..cell import activation_code
from .jacobians import lecture_bound, run_states

CHAIN_BATCH = 2 ** 22   # scalars of one batch of chains, (T+1)·(steps·B)·d: bounds the memory they take


@dataclasses.dataclass
class GradientProfile:
    """norms (T,T): norms[t−1, k−1] = ‖∂L_t/∂s_k‖ (NaN for k > t). totals (T,): totals[k−1] =
    ‖∂L/∂s_k‖, all loss terms together. vectors (T,T,B,d) or None: the gradients themselves
    (`keep_vectors=True`), vectors[t−1, k−1] = ∂L_t/∂s_k."""

    norms: np.ndarray
    totals: object = None
    vectors: object = None

    def relative(self) -> np.ndarray:
        """norms[t, k] / norms[t, t]: how much of the loss gradient at step t reaches step k
        (NaN where step t carries no gradient). The bound says relative ≤ (γλ)^(t−k)."""
        own = np.diag(self.norms)[:, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(own > 0, self.norms / np.where(own > 0, own, 1), np.nan)

    def by_lag(self, statistic="geomean", relative=True) -> np.ndarray:
        """A (T,) summary over the pairs at each lag ℓ = t − k (0..T−1): "geomean" (of the
        positive finite values), "max" or "mean" of `relative()` (or of `norms`)."""
        return summarize_by_lag(self.relative() if relative else self.norms, statistic)


def summarize_by_lag(matrix, statistic="geomean") -> np.ndarray:
    """Summary of a lower-triangular (T,T) matrix along each sub-diagonal (lag ℓ = 0..T−1)."""
    if statistic not in ("geomean", "max", "mean"):
        raise ValueError(f"statistic must be 'geomean', 'max' or 'mean', got {statistic!r}")
    T = matrix.shape[0]
    out = np.full(T, np.nan)
    for lag in range(T):
        values = np.diagonal(matrix, offset=-lag)
        values = values[np.isfinite(values)]
        if statistic == "geomean":
            values = values[values > 0]
            if values.size:
                out[lag] = float(np.exp(np.log(values).mean()))
        elif values.size:
            out[lag] = float(values.max() if statistic == "max" else values.mean())
    return out


def gradient_profile(params, inputs, targets, *, activation="tanh", s0=None, output="all", backend="auto",
                     keep_vectors=False) -> GradientProfile:
    """‖∂L_t/∂s_k‖ for all k ≤ t (see the module docstring); targets (T,B) for output "all"
    (−1 for no loss), (B,) for "last", "mean" and "max".

    Runs where `params` live (CuPy arrays stay on the GPU) after a forward pass through
    `backend`. `keep_vectors` also returns every ∂L_t/∂s_k (T·T·B·d numbers: small runs only).
    """
    states = run_states(params, inputs, activation=activation, s0=s0, backend=backend)[0]
    explicit = explicit_state_grads(params, inputs, targets, s0=s0, activation=activation, output=output,
                                    backend=backend)                # ∂L_t/∂s_t (T,B,d)
    xp = array_module(states)
    explicit = xp.asarray(explicit, dtype=states.dtype)
    return chain_profile(explicit, states, xp.asarray(params.W, dtype=states.dtype), activation,
                         keep_vectors=keep_vectors)


def chain_profile(explicit, states, W, activation, *, keep_vectors=False) -> GradientProfile:
    """‖∂L_t/∂s_k‖ from the explicit terms ∂L_t/∂s_t (T,B,d), the states s_1..s_T (T,B,d) and
    W (d,d), all NumPy or all CuPy arrays of one dtype (see the module docstring)."""
    xp, be = array_module(explicit), backend_for(explicit)
    T, B, d = explicit.shape
    norms, totals = np.full((T, T), np.nan), xp.zeros((T, B, d), xp.float64)
    vectors = np.zeros((T, T, B, d)) if keep_vectors else None
    steps = max(1, CHAIN_BATCH // ((T + 1) * B * d))              # loss steps per batch of chains
    for first in range(0, T, steps):
        last = min(T, first + steps)                              # loss steps first..last−1
        grads = _chains(be, xp, explicit, states, W, activation_code(activation), first, last)
        wide = grads.reshape(last, last - first, B, d).astype(xp.float64)    # [k, t − first]
        norms_k_t = to_host(xp.sqrt((wide ** 2).sum(axis=(2, 3))))
        for t in range(first, last):
            norms[t, :t + 1] = norms_k_t[:t + 1, t - first]
            if keep_vectors:
                vectors[t, :t + 1] = to_host(wide[:t + 1, t - first])
        totals[:last] += wide.sum(axis=1)
    return GradientProfile(norms, to_host(xp.sqrt((totals ** 2).sum(axis=(1, 2)))), vectors)


def _chains(be, xp, explicit, states, W, code, first, last):
    """∂L_t/∂s_k (last, (last−first)·B, d) for the loss steps t = first..last−1 (batch block
    t − first) and the steps k < last (0 where k > t): one `recurrence_backward` over that many
    copies of the B sequences, each with G = ∂L_t/∂s_t at its own step t only."""
    T, B, d = explicit.shape
    copies = last - first
    S = xp.zeros((last + 1, copies * B, d), explicit.dtype)
    S[1:] = xp.tile(states[:last], (1, copies, 1))
    G = xp.zeros((last, copies * B, d), explicit.dtype)
    for t in range(first, last):
        G[t, (t - first) * B:(t - first + 1) * B] = explicit[t]
    lengths = be.asarray(np.full(copies * B, last, np.int64))
    delta = be.recurrence_backward(G, None, S, W, lengths, code, None)[0]      # ∂L_t/∂a_k
    if last > 1:                                                   # ∂L_t/∂s_k = G_k + Δ_{k+1} Wᵀ
        G[:-1] += be.matmul(delta[1:].reshape(-1, d), W, trans_b=True).reshape(last - 1, copies * B, d)
    return G


def bound_violations(norms, W, activation, relative_to=None, rtol=1e-6) -> int:
    """How many measured pairs exceed the lecture's bound (γλ)^(t−k) (times norms[t,t] when
    `relative_to` is that diagonal): 0 when the bound holds everywhere."""
    T = norms.shape[0]
    lag = np.subtract.outer(np.arange(T), np.arange(T))
    bound = lecture_bound(W, activation, np.maximum(lag, 0))
    if relative_to is not None:
        bound = bound * np.asarray(relative_to)[:, None]
    measured = np.isfinite(norms) & (lag >= 0)
    return int((norms[measured] > bound[measured] * (1 + rtol) + 1e-300).sum())
