"""One Elman cell (a layer in one direction): its equations, arrays, σ and σ', initialisation,
its PyTorch names and the plain per-step reference every engine is tested against.

Row vectors, T steps, B sequences, n_ℓ inputs, d units (docs/design.md):

    a_t = x_t U + s_{t−1} W + b            U (n_ℓ,d)  W (d,d)  b (d,)
    s_t = σ(a_t)
    Δ_t = (G_t + Δ_{t+1} Wᵀ) ⊙ σ'(a_t)      G_t = ∂L/∂s_t from above (backward)
    dW = Σ_t s_{t−1}ᵀ Δ_t   dU = Σ_t x_tᵀ Δ_t   db = Σ_t Δ_t   ds0 = Δ_1 Wᵀ   dx_t = Δ_t Uᵀ

σ and σ' are written once as scalar functions: the CPU backend compiles them with
`numba.njit`, the CUDA kernels with `numba.cuda.jit(device=True)` (in
`gpurnn.kernels.cell_step`, the cell's per-unit math that every recurrent kernel calls),
`sigma_prime_states` vectorises σ' for host arrays. σ' is computed from the state s = σ(a)
alone, so backward needs only the stored states:

    tanh       σ(a) = tanh(a)          σ' = 1 − s²     γ = max σ' = 1
    logistic   σ(a) = 1 / (1 + e^−a)   σ' = s (1 − s)  γ = 1/4
    relu       σ(a) = max(a, 0)        σ' = [s > 0]    γ = 1

The reference (`reference_step`, `reference_sigma_prime`) is plain NumPy over whole vectors in
any float dtype (np.longdouble for finite differences), written apart from the compiled σ on
purpose: the tests check the engines against it.
"""
import functools
import math
from typing import Any, NamedTuple

import numpy as np

from .arrays import array_module, to_host

TANH, LOGISTIC, RELU = 0, 1, 2
CODES = {"tanh": TANH, "logistic": LOGISTIC, "sigmoid": LOGISTIC, "relu": RELU}
# γ: the largest value of σ', the factor in the lecture's bound (γλ)^(t−k).
GAMMA = {TANH: 1.0, LOGISTIC: 0.25, RELU: 1.0}

CELL_FIELDS = ("U", "W", "b")
RECURRENT_INITS = ("uniform", "identity", "orthogonal")


class Cell(NamedTuple):
    """One layer-direction's arrays: U (n_ℓ,d), W (d,d), b (d,)."""

    U: Any
    W: Any
    b: Any


def cell_shapes(rows: int, d: int) -> Cell:
    """The shapes of a cell reading `rows` inputs with d units."""
    return Cell((rows, d), (d, d), (d,))


# --- σ and σ' ----------------------------------------------------------------------------------

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


@functools.cache
def _sigma_prime_ufunc():
    """σ'(a) from s = σ(a), elementwise on host arrays: the scalar definition above, vectorised
    (compiled on first use: `import gpurnn` loads neither Numba nor SciPy)."""
    import numba

    return numba.vectorize(["float32(int64, float32)", "float64(int64, float64)"], cache=True)(sigma_prime_from_state)


def sigma_prime_states(states, activation):
    """σ'(a) for every state (any shape, NumPy or CuPy), from the states s = σ(a) themselves."""
    xp = array_module(states)
    values = _sigma_prime_ufunc()(activation_code(activation), np.ascontiguousarray(to_host(states)))
    return values if xp is np else xp.asarray(values)


# --- initialisation ----------------------------------------------------------------------------

def draw_cell(rng: np.random.Generator, rows: int, d: int, bound: float, w_bound: float, dtype) -> Cell:
    """U uniform in ±bound, then W uniform in ±w_bound (drawn in that order from `rng`), b = 0."""
    U = rng.uniform(-bound, bound, (rows, d)).astype(dtype)
    W = rng.uniform(-w_bound, w_bound, (d, d)).astype(dtype)
    return Cell(U, W, np.zeros(d, dtype))


def init_recurrent(cell: Cell, recurrent: str, rng: np.random.Generator) -> Cell:
    """The cell with W chosen for long sequences (`recurrent` one of RECURRENT_INITS, checked by
    `gpurnn.init_params`): "uniform" keeps the drawn W; "identity" sets
    W = I (the IRNN of Le et al. 2015: with relu the state starts as a running sum);
    "orthogonal" draws a random orthogonal W from `rng` (Saxe et al. 2014, Keras' default: every
    singular value 1, so ‖s_{t−1} W‖ = ‖s_{t−1}‖ and only σ' shrinks a gradient going back)."""
    d, dtype = cell.W.shape[0], cell.W.dtype
    if recurrent == "identity":
        return cell._replace(W=np.eye(d, dtype=dtype))
    if recurrent == "orthogonal":
        return cell._replace(W=random_orthogonal(d, rng).astype(dtype))
    return cell


def random_orthogonal(d: int, rng: np.random.Generator) -> np.ndarray:
    """A (d,d) orthogonal matrix drawn uniformly (Haar measure): the Q of a Gaussian matrix's
    QR, its columns' signs fixed by R's diagonal so the distribution does not depend on
    LAPACK's sign convention (Mezzadri 2007)."""
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


# --- PyTorch's names -----------------------------------------------------------------------------
# nn.RNN computes h_t = σ(x_t W_ihᵀ + b_ih + h_{t−1} W_hhᵀ + b_hh): weight_ih = Uᵀ (d,n_ℓ),
# weight_hh = Wᵀ (d,d), bias_ih = b, bias_hh = 0 (import sums the two biases).

def to_torch(cell: Cell) -> dict:
    """{nn.RNN's parameter name without its "_lℓ" suffix: host array} for one cell."""
    return {"weight_ih": cell.U.T, "weight_hh": cell.W.T, "bias_ih": cell.b, "bias_hh": np.zeros_like(cell.b)}


def from_torch(get) -> Cell:
    """A cell from `get(name)` -> nn.RNN's array of that name (without its "_lℓ" suffix)."""
    return Cell(get("weight_ih").T, get("weight_hh").T, get("bias_ih") + get("bias_hh"))


# --- the reference -------------------------------------------------------------------------------

def reference_sigma(activation: str, a):
    """σ(a) elementwise in NumPy, a of any float dtype."""
    code = activation_code(activation)
    if code == TANH:
        return np.tanh(a)
    if code == LOGISTIC:
        return 1 / (1 + np.exp(-a))
    return np.maximum(a, 0.0)


def reference_sigma_prime(activation: str, s):
    """σ'(a) elementwise in NumPy, through s = σ(a)."""
    code = activation_code(activation)
    if code == TANH:
        return 1 - s * s
    if code == LOGISTIC:
        return s * (1 - s)
    return (s > 0).astype(s.dtype)


def reference_step(cell: Cell, x, s_prev, activation: str):
    """One step of one sequence: (a_t, s_t) (d,) from x_t (n_ℓ,) and s_{t−1} (d,)."""
    a = x @ cell.U + s_prev @ cell.W + cell.b
    return a, reference_sigma(activation, a)
