"""Vanishing and exploding gradients, measured on a model: see `jacobians`, `profile`, `monitor`."""
from .jacobians import (batched_spectral_norm, explicit_dW, jacobian_norms, lecture_bound,
                        sigma_prime_states, spectral_norm, spectral_radius)
from .monitor import GradientNormLog
from .profile import GradientProfile, bound_violations, gradient_profile, summarize_by_lag

__all__ = [
    "GradientNormLog", "GradientProfile", "batched_spectral_norm", "bound_violations", "explicit_dW",
    "gradient_profile", "jacobian_norms", "lecture_bound", "sigma_prime_states", "spectral_norm",
    "spectral_radius", "summarize_by_lag",
]
