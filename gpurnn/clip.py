"""Gradient clipping, as pure functions of a `Params` of gradients (optax's style).

- by global norm (Pascanu, Mikolov and Bengio 2013): ‖g‖ = sqrt(Σ over all parameters
  of Σ g²); if ‖g‖ > max_norm then g ← max_norm · g / ‖g‖;
- by value (min-char-rnn's ±5): each entry clamped to [−limit, limit].
"""
from __future__ import annotations

import math
import numbers

from .backends import backend_for
from .model import Params


class NonFiniteGradientError(ValueError, FloatingPointError):
    """A gradient (or loss) is NaN or Inf: clipping cannot repair it."""


def global_norm(grads: Params) -> float:
    """sqrt of Σ g² over every entry of every parameter, accumulated in float64."""
    _check_params(grads)
    backend = backend_for(next(iter(grads)))
    return math.sqrt(backend.sum_squares(*grads))      # one read back from a GPU for all arrays


def clip_grad_norm(grads: Params, max_norm: float) -> tuple[Params, float]:
    """(grads scaled so their global norm is at most `max_norm`, the norm before clipping).

    Raises `NonFiniteGradientError` when the norm is NaN or Inf.
    """
    _check_limit(max_norm, "max_norm")
    norm = global_norm(grads)
    if not math.isfinite(norm):
        raise NonFiniteGradientError(f"gradient norm is {norm}: a gradient holds NaN or Inf "
                                     "(lower the learning rate or clip earlier)")
    if norm <= max_norm:
        return grads, norm
    backend = backend_for(next(iter(grads)))
    factor = max_norm / norm
    return grads.map(lambda g: backend.scale(g, factor)), norm


def clip_grad_value(grads: Params, limit: float) -> Params:
    """grads with every entry clamped to [−limit, limit]."""
    _check_limit(limit, "limit")
    _check_params(grads)
    backend = backend_for(next(iter(grads)))
    return grads.map(lambda g: backend.clamp(g, limit))


def _check_params(grads):
    if not isinstance(grads, Params):
        raise TypeError(f"grads must be a gpurnn.Params, got {type(grads).__name__}")


def _check_limit(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (0 < value < math.inf):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
