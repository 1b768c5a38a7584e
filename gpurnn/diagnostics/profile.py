"""The gradient-through-time profile ‖∂L_t/∂s_k‖ for every pair k ≤ t.

L_t = Σ_b −log ŷ_{t,b}[target_{t,b}] is the loss at step t (summed over the batch, 0 where no
target). Its gradient with respect to the states at step k ≤ t (a row vector per sequence):

    ∂L_t/∂s_t = (ŷ_t − onehot(target_t)) Vᵀ                     the explicit term
    ∂L_t/∂s_{k−1} = (∂L_t/∂s_k ⊙ σ'(a_k)) Wᵀ                     one step back

(the row vector times the column Jacobian ∂s_k/∂s_{k−1} = diag(σ'(a_k)) Wᵀ). The norm is
the Frobenius norm over the batch and the d units: sequences are independent, so it is the
norm of ∂L_t/∂(s_k of every sequence). All T chains (one per loss step t) are propagated
together: at step k every live chain t ≥ k is one row block of a (T·B, d) @ (d, d) product,
as the CPU backend's truncated BPTT ring does, so the whole matrix takes T sequential
products and O(T² B d²) work, on the parameters' device (NumPy or CuPy arrays).

With output "last" the only loss term is at step T; with "mean" or "max" the loss term at
step t is that step's share of the pooled loss (`gpurnn.bptt.explicit_state_grads`), so a
pooled model's profile shows how directly every step is reached. `totals` (T,) holds the
whole gradient ‖∂L/∂s_k‖ = ‖Σ_{t≥k} ∂L_t/∂s_k‖ that reaches each step.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..arrays import array_module
from ..backends import get_backend
from ..bptt import explicit_state_grads
from .jacobians import host, lecture_bound, run_states


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
    states, _, dsig, _ = run_states(params, inputs, activation=activation, s0=s0, backend=backend)
    explicit = explicit_state_grads(params, inputs, targets, s0=s0, activation=activation, output=output,
                                    backend=backend)                # ∂L_t/∂s_t (T,B,d)
    xp = array_module(states)
    explicit = xp.asarray(explicit, dtype=states.dtype)
    return chain_profile(explicit, dsig, xp.asarray(params.W, dtype=states.dtype), keep_vectors=keep_vectors)


def chain_profile(explicit, dsig, W, *, keep_vectors=False) -> GradientProfile:
    """‖∂L_t/∂s_k‖ from the explicit terms ∂L_t/∂s_t (T,B,d), σ'(a_t) (T,B,d) and W (d,d), all
    NumPy or all CuPy arrays of one dtype (see the module docstring)."""
    xp = array_module(explicit)
    be = get_backend("cpu" if xp is np else "cuda")
    T, B, d = explicit.shape
    chains = xp.zeros((T, B, d), explicit.dtype)                  # chains[t] = ∂L_t/∂s_k at step k
    norms, totals = np.full((T, T), np.nan), np.zeros(T)
    vectors = np.zeros((T, T, B, d)) if keep_vectors else None
    for k in range(T - 1, -1, -1):
        chains[k] = explicit[k]
        live = chains[k:]
        wide = live.astype(xp.float64)
        norms[k:, k] = host(xp.sqrt((wide ** 2).sum(axis=(1, 2))))
        totals[k] = float(xp.sqrt((wide.sum(axis=0) ** 2).sum()))
        if keep_vectors:
            vectors[k:, k] = host(live)
        local = live * dsig[k]                                    # ∂L_t/∂a_k
        chains[k:] = be.matmul(local.reshape(-1, d), W, trans_b=True).reshape(-1, B, d)
    return GradientProfile(norms, totals, vectors)


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
