"""The optimizers' elementwise update, written once as a scalar rule and compiled twice:
`numba.njit` here for NumPy arrays, `numba.cuda.jit` in `gpurnn.kernels.optimizer_update`
for the CUDA backend's arrays (CuPy on a GPU, Numba's device arrays under the simulator):
one fused pass per parameter, in place.

    rule(code, p, g, s1, s2, lr, a, b, eps, c1, c2) -> (p', s1', s2')

    SGD       s1 ← a s1 + g;              p ← p − lr·s1
    NESTEROV  s1 ← a s1 + g;              p ← p − lr·(g + a s1)
    ADAGRAD   s1 ← s1 + g²;               p ← p − lr·g / sqrt(s1 + eps)
    RMSPROP   s1 ← a s1 + (1−a) g²;       p ← p − lr·g / (sqrt(s1) + eps)
    ADAM      s1 ← a s1 + (1−a) g;  s2 ← b s2 + (1−b) g²
              p ← p − c1·s1 / (sqrt(s2)/c2 + eps),   c1 = lr/(1−aᵗ), c2 = sqrt(1−bᵗ) (host)

The arithmetic runs in float64 (the scalars are Python floats) and is stored in the
arrays' dtype. Only ADAM reads or writes s2.
"""
from __future__ import annotations

import math

import numba
import numpy as np

from .arrays import on_host
from .backends import backend_for

SGD, NESTEROV, ADAGRAD, RMSPROP, ADAM = range(5)


def rule(code, p, g, s1, s2, lr, a, b, eps, c1, c2):
    """One entry's update: (new p, new s1, new s2); see the module docstring."""
    if code == SGD or code == NESTEROV:
        s1 = a * s1 + g
        step = s1 if code == SGD else g + a * s1
        return p - lr * step, s1, s2
    if code == ADAGRAD:
        s1 = s1 + g * g
        return p - lr * g / math.sqrt(s1 + eps), s1, s2
    if code == RMSPROP:
        s1 = a * s1 + (1.0 - a) * g * g
        return p - lr * g / (math.sqrt(s1) + eps), s1, s2
    s1 = a * s1 + (1.0 - a) * g
    s2 = b * s2 + (1.0 - b) * g * g
    return p - c1 * s1 / (math.sqrt(s2) / c2 + eps), s1, s2


# error_model="numpy": x/0 gives inf instead of a Python exception check per element, which
# lets LLVM vectorize the loop (3x faster on a 65k-entry Adam update); the results are the same.
_rule_cpu = numba.njit(cache=True, error_model="numpy")(rule)


@numba.njit(cache=True, error_model="numpy")
def _update_cpu(code, P, G, S1, S2, lr, a, b, eps, c1, c2):
    for i in range(P.shape[0]):
        P[i], S1[i], s2 = _rule_cpu(code, P[i], G[i], S1[i], S2[i], lr, a, b, eps, c1, c2)
        if code == ADAM:
            S2[i] = s2


def update(code, p, g, s1, s2, scalars) -> None:
    """Apply the rule in place to p, s1 (and s2) from g, all of one shape, on their backend.
    `scalars` = (lr, a, b, eps, c1, c2) as Python floats."""
    size = int(np.prod(p.shape))
    flat = [x.reshape(size) for x in (p, g, s1, s2)]
    if on_host(p):
        _update_cpu(code, *flat, *scalars)
        return
    from gpurnn.kernels.optimizer_update import launch_update

    if size:
        launch_update(code, flat, scalars)


def zeros_like(array):
    """Zeros of `array`'s shape and dtype on its backend."""
    return backend_for(array).zeros(array.shape, array.dtype)
