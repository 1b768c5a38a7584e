"""σ and σ' for every backend, written once as scalar functions.

The CPU backend compiles them with `numba.njit`, the CUDA kernels with
`numba.cuda.jit(device=True)`; σ' is computed from the state s = σ(a) alone, so backward
needs only the stored states:

    tanh       σ(a) = tanh(a)          σ' = 1 − s²     γ = max σ' = 1
    logistic   σ(a) = 1 / (1 + e^−a)   σ' = s (1 − s)  γ = 1/4
    relu       σ(a) = max(a, 0)        σ' = [s > 0]    γ = 1
"""
import math

TANH, LOGISTIC, RELU = 0, 1, 2
CODES = {"tanh": TANH, "logistic": LOGISTIC, "sigmoid": LOGISTIC, "relu": RELU}
# γ: the largest value of σ', the factor in the lecture's bound (γλ)^(t−k).
GAMMA = {TANH: 1.0, LOGISTIC: 0.25, RELU: 1.0}


def activation_code(name) -> int:
    """The integer code of an activation name (`sigmoid` is an alias of `logistic`)."""
    if not isinstance(name, str) or name.lower() not in CODES:
        raise ValueError(f"activation must be one of 'tanh', 'logistic' ('sigmoid') or 'relu', got {name!r}")
    return CODES[name.lower()]


def sigma(code, a):
    """σ(a) for one scalar, in a's own precision."""
    one = a ** 0          # 1 of a's type: a literal 1 would promote float32 to float64 in Numba
    if code == TANH:
        return math.tanh(a)
    if code == LOGISTIC:
        # 1/(1+e^-a) overflows e^-a to inf for a << 0 and correctly gives 0.
        return one / (one + math.exp(-a))
    return a if a > 0 else one - one


def sigma_prime_from_state(code, s):
    """σ'(a) expressed through s = σ(a), for one scalar, in s's own precision."""
    one = s ** 0          # see sigma
    if code == TANH:
        return one - s * s
    if code == LOGISTIC:
        return s * (one - s)
    return one if s > 0 else one - one
