"""One call that measures a model's gradient flow and sets it beside the lecture's bound.

    flow = measure_flow(params, inputs, targets, activation="tanh")

gives, for every lag ℓ = t − k (0..T−1): the geometric mean and the maximum of ‖∂s_t/∂s_k‖₂ over
the pairs of one sequence (`jacobian_norms`), the geometric mean of the relative loss gradient
‖∂L_t/∂s_k‖/‖∂L_t/∂s_t‖ over the batch's pairs (`gradient_profile`), the bound (γλ)^ℓ with
λ = ‖W‖₂, and (γρ(W))^ℓ, the rate that ρ alone would give; plus the count of measured pairs above
the bound (0 whenever the lecture's inequality holds, as it must).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .. import cell
from .jacobians import jacobian_norms, lecture_bound, spectral_norm, spectral_radius
from .profile import GradientProfile, bound_violations, gradient_profile, summarize_by_lag


@dataclasses.dataclass
class GradientFlow:
    """A model's measured gradient flow; every array is indexed by lag 0..T−1."""

    activation: str
    rho: float                   # ρ(W), the spectral radius
    norm: float                  # λ = ‖W‖₂
    gamma: float                 # max σ'
    jacobian_geomean: np.ndarray
    jacobian_max: np.ndarray
    profile_geomean: np.ndarray  # ‖∂L_t/∂s_k‖ / ‖∂L_t/∂s_t‖, geometric mean over pairs
    bound: np.ndarray            # (γλ)^ℓ
    radius_rate: np.ndarray      # (γρ)^ℓ: not a bound, the long-run rate of γ^ℓ ‖W^ℓ‖
    violations: int              # measured pairs (Jacobians and profile) above the bound
    profile: GradientProfile     # the whole (T,T) matrix ‖∂L_t/∂s_k‖


def measure_flow(params, inputs, targets, *, activation="tanh", s0=None, sequence=0, method="auto",
                 max_lag=None, backend="auto") -> GradientFlow:
    """Jacobian norms of sequence `sequence`, the batch's loss-gradient profile (targets (T,B),
    −1 for no loss) and the bound, side by side (see the module docstring)."""
    jac = jacobian_norms(params, inputs, activation=activation, s0=s0, sequence=sequence, method=method,
                         max_lag=max_lag, backend=backend)
    profile = gradient_profile(params, inputs, targets, activation=activation, s0=s0, backend=backend)
    return assemble_flow(jac, profile, params.W, activation)


def assemble_flow(jac, profile: GradientProfile, W, activation) -> GradientFlow:
    """The `GradientFlow` of measured Jacobian norms (T,T), a loss-gradient profile and W."""
    T = jac.shape[0]
    gamma = cell.GAMMA[cell.activation_code(activation)]
    rho = spectral_radius(W)
    violations = (bound_violations(jac, W, activation)
                  + bound_violations(profile.norms, W, activation, relative_to=np.diag(profile.norms)))
    return GradientFlow(activation, rho, spectral_norm(W), gamma, summarize_by_lag(jac, "geomean"),
                        summarize_by_lag(jac, "max"), profile.by_lag("geomean"),
                        lecture_bound(W, activation, np.arange(T)), (gamma * rho) ** np.arange(T, dtype=float),
                        violations, profile)
