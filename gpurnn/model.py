"""The model's parameters: the `Params` container and their initialisation.

Row-vector convention (DESIGN.md):

    a_t = x_t U + s_{t-1} W + b      U (n,d)  W (d,d)  b (d,)
    s_t = σ(a_t)
    z_t = s_t V + c                  V (d,k)  c (k,)
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterator

import numpy as np

FIELDS = ("U", "W", "V", "b", "c")


@dataclasses.dataclass
class Params:
    """The five arrays of an Elman RNN: `U (n,d) W (d,d) V (d,k) b (d,) c (k,)`.

    The arrays may live on any backend (NumPy on the CPU, CuPy on the GPU); gradients
    use the same class with the same shapes and dtype.
    """

    U: Any
    W: Any
    V: Any
    b: Any
    c: Any

    def __iter__(self) -> Iterator[Any]:
        return (getattr(self, name) for name in FIELDS)

    def items(self) -> Iterator[tuple[str, Any]]:
        return ((name, getattr(self, name)) for name in FIELDS)

    def map(self, fn: Callable[[Any], Any]) -> "Params":
        """A new `Params` with `fn` applied to each array."""
        return Params(*(fn(a) for a in self))

    @property
    def n_in(self) -> int:
        return int(self.U.shape[0])

    @property
    def hidden(self) -> int:
        return int(self.W.shape[0])

    @property
    def n_out(self) -> int:
        return int(self.V.shape[1])

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.W.dtype)


RECURRENT_INITS = ("uniform", "identity", "orthogonal")


def init_params(n_in: int, hidden: int, n_out: int, *, seed: int = 0, dtype="float32",
                scale: float | None = None, recurrent_scale: float | None = None,
                recurrent: str = "uniform") -> Params:
    """Random parameters, as `torch.nn.RNN` and `nn.Linear` draw them by default.

    Every weight is uniform in ±1/sqrt(hidden), the bound `torch.nn.RNN` uses for U and W
    and `nn.Linear(hidden, n_out)` for V, so W starts with a spectral radius below one;
    biases start at zero. `scale` overrides the bound for U and V, `recurrent_scale`
    the bound for W (e.g. to put W's spectral radius where an experiment wants it).

    `recurrent` chooses W for long sequences: "identity" (W = I, the IRNN of Le et al.
    2015: with relu the state starts as a running sum) or "orthogonal" (a random orthogonal
    W, Saxe et al. 2014, Keras' default: every singular value 1, so ‖s_{t−1} W‖ = ‖s_{t−1}‖
    and only σ' shrinks a gradient going back). U and V are the same draws whatever W is.
    """
    for name, value in (("n_in", n_in), ("hidden", hidden), ("n_out", n_out)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    if recurrent not in RECURRENT_INITS:
        raise ValueError(f"recurrent must be one of {RECURRENT_INITS}, got {recurrent!r}")
    rng = np.random.default_rng(seed)
    bound = 1.0 / np.sqrt(hidden) if scale is None else scale
    w_bound = 1.0 / np.sqrt(hidden) if recurrent_scale is None else recurrent_scale
    params = Params(
        U=rng.uniform(-bound, bound, (n_in, hidden)).astype(dtype),
        W=rng.uniform(-w_bound, w_bound, (hidden, hidden)).astype(dtype),
        V=rng.uniform(-bound, bound, (hidden, n_out)).astype(dtype),
        b=np.zeros(hidden, dtype),
        c=np.zeros(n_out, dtype),
    )
    if recurrent == "identity":
        params.W = np.eye(hidden, dtype=dtype)
    elif recurrent == "orthogonal":
        params.W = random_orthogonal(hidden, rng).astype(dtype)
    return params


def random_orthogonal(d: int, rng: np.random.Generator) -> np.ndarray:
    """A (d,d) orthogonal matrix drawn uniformly (Haar measure): the Q of a Gaussian matrix's
    QR, its columns' signs fixed by R's diagonal so the distribution does not depend on
    LAPACK's sign convention (Mezzadri 2007)."""
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))
