"""Vanishing and exploding gradients, measured on a model: `jacobians` (‖∂s_t/∂s_k‖₂, the bound,
∂⁺s_k/∂W), `profile` (‖∂L_t/∂s_k‖), `flow` (both beside the bound, by lag), `monitor` (a per-step
gradient-norm log for training); `studies` holds the experiments of `gpurnn diagnose` and
`figures` the command that runs them and writes docs/gradient-flow.md's figures and numbers."""
from ..cell import sigma_prime_states
from .flow import GradientFlow, measure_flow
from .jacobians import batched_spectral_norm, explicit_dW, jacobian_norms, lecture_bound, spectral_norm, spectral_radius
from .monitor import GradientNormLog
from .profile import GradientProfile, bound_violations, gradient_profile, summarize_by_lag

__all__ = [
    "GradientFlow", "GradientNormLog", "GradientProfile", "batched_spectral_norm", "bound_violations",
    "explicit_dW", "gradient_profile", "jacobian_norms", "lecture_bound", "measure_flow", "sigma_prime_states",
    "spectral_norm", "spectral_radius", "summarize_by_lag",
]
