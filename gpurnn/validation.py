"""Checks of every argument of `forward` and `bptt`, run before any work starts.

Each check raises `ValueError` (`TypeError` for a wrong kind of value) with a message
that names the argument and says what was expected. The checks work on NumPy and CuPy
arrays alike (`array_module`), so data kept on a GPU is checked where it lives. Checks of
values (finite, ranges) on an array already on the GPU each wait for the device (a
reduction read back): `check_values=False` skips those for device arrays, leaving the
shape, dtype and host-array checks, which never wait; the trainer passes it for batches
it checked on the host where it made them (`check_source`).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .arrays import array_module, is_array, on_host
from .cell import CELL_FIELDS, activation_code, cell_shapes
from .model import Params

OUTPUTS = ("all", "last", "mean", "max")
POOLS = ("mean", "max")   # outputs read from a pool over each sequence's real states s_1..s_L


@dataclasses.dataclass
class Problem:
    """One checked call: sizes, the normalised arguments and the loss targets.

    `targets` is flat `(T·B,)` for output "all" and `(B,)` for "last", "mean" and "max",
    with −1 wherever no loss is taken (a negative target, or a step past the sequence's length).
    """

    T: int
    B: int
    n: int
    d: int
    k: int                # outputs (0 for the recurrence alone, `check_recurrence`)
    dtype: np.dtype
    tokens: bool          # inputs are token ids (T,B), else dense floats (T,B,n)
    inputs: object
    lengths: object       # (B,) int64, T where not given
    s0: object            # (B,d) or None for zeros
    activation: int
    output: str = "all"
    targets: object = None
    truncate: int | None = None
    cells: int = 1        # layers · directions; s0 is (B,d) for 1, else (cells,B,d) as torch's h_0


def check_params(params, *, check_values=True) -> tuple[np.dtype, int, int, int]:
    """The dtype and sizes (n, d, k) of valid parameters (finite: unless check_values is
    False and they are on the GPU): every cell's U (n_ℓ,d), W (d,d), b (d,) with n_0 = n
    and n_ℓ = D·d above, and the head's V (D·d,k), c (k,)."""
    if not isinstance(params, Params):
        raise TypeError(f"params must be a gpurnn.Params, got {type(params).__name__}")
    named = {f"params.{name}": value for name, value in params.items()}
    dtype = _check_weights(named, "params")
    n, d = _shape(params.cell(0).U, f"params.{params.cell_name(0, 'fw', 'U')}", 2)
    k = _shape(params.V, "params.V", 2)[1]
    width = params.directions * d
    expected = {}
    for layer, direction, _ in params.cells():
        rows = n if layer == 0 else width
        for field, shape in zip(CELL_FIELDS, cell_shapes(rows, d)):
            expected[params.cell_name(layer, direction, field)] = shape
    expected.update(zip(params.head_names(), ((width, k), (k,))))
    for name, value in params.items():
        if tuple(value.shape) != expected[name]:
            raise ValueError(f"params.{name} must have shape {expected[name]} (from U {(n, d)}, V's {k} columns, "
                             f"{params.layers} layer(s), {params.directions} direction(s)), got {tuple(value.shape)}")
    for name, value in named.items():
        if _wanted(value, check_values):
            _check_finite(value, name)
    return dtype, n, d, k


def check_one_recurrence(params) -> None:
    """What studies one recurrence (the diagnostics) asks: params of one layer of one direction."""
    if isinstance(params, Params) and params.n_cells != 1:
        raise ValueError(f"params must have one layer of one direction (the diagnostics study one recurrence), "
                         f"got {params.layers} layers of {params.directions} directions")


def _check_weights(named, what) -> np.dtype:
    """The one float dtype (float32 or float64) that every array in `named` shares."""
    for name, value in named.items():
        if not is_array(value):
            raise TypeError(f"{name} must be an array, got {type(value).__name__}")
    dtypes = {name: np.dtype(value.dtype) for name, value in named.items()}
    if len(set(dtypes.values())) != 1:
        raise ValueError(f"{what} must share one dtype, got {', '.join(f'{k}={v}' for k, v in dtypes.items())}")
    dtype = next(iter(dtypes.values()))
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"{what} must be float32 or float64, got {dtype}")
    return dtype


def check_call(params, inputs, *, lengths=None, s0=None, activation="tanh", output="all",
               targets=None, truncate=None, need_targets=False, check_values=True) -> Problem:
    """Check a whole `forward`/`bptt` call and return its normalised `Problem` (see the module
    docstring for `check_values`)."""
    act = activation_code(activation)
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
    _check_truncate(truncate)
    dtype, n, d, k = check_params(params, check_values=check_values)
    tokens, T, B, lengths = _check_sequences(inputs, n, lengths, check_values)
    if output in POOLS and _wanted(lengths, check_values) and int(lengths.min()) < 1:
        raise ValueError(f"lengths must be >= 1 for output={output!r} (a pool over no steps is undefined), "
                         f"got a 0 at sequence {int(lengths.argmin())}")
    cells = params.n_cells
    if s0 is not None:
        names, shape = ("(B, d)", (B, d)) if cells == 1 else ("(layers·directions, B, d)", (cells, B, d))
        _check_state(s0, "s0", names, shape, finite=_wanted(s0, check_values))
    problem = Problem(T, B, n, d, k, dtype, tokens, inputs, lengths, s0, act, output,
                      truncate=_effective_truncate(truncate, T), cells=cells)
    if need_targets:
        problem.targets = _loss_targets(targets, output, lengths, T, B, k, check_values)
    return problem


def check_recurrence(inputs, U, W, b, *, s0=None, lengths=None, activation="tanh", truncate=None, S=None,
                     grad_states=None, grad_last=None) -> Problem:
    """Check a `gpurnn.recurrence` call (b None for `backward`; S, grad_states and grad_last
    only there) and return its `Problem` (k = 0: no output layer)."""
    act = activation_code(activation)
    _check_truncate(truncate)
    named = {"U": U, "W": W} if b is None else {"U": U, "W": W, "b": b}
    dtype = _check_weights(named, "U, W and b")
    n, d = _shape(U, "U", 2)
    expected = cell_shapes(n, d)._asdict()
    for name, value in named.items():
        if tuple(value.shape) != expected[name]:
            raise ValueError(f"{name} must have shape {expected[name]} (from U {(n, d)}), got {tuple(value.shape)}")
        _check_finite(value, name)
    tokens, T, B, lengths = _check_sequences(inputs, n, lengths)
    if s0 is not None:
        _check_state(s0, "s0", "(B, d)", (B, d))
    if S is not None:
        _check_state(S, "S", "(T+1, B, d)", (T + 1, B, d), dtype, finite=False)
    if grad_states is not None:
        _check_state(grad_states, "grad_states", "(T, B, d)", (T, B, d), dtype, finite=False)
    if grad_last is not None:
        _check_state(grad_last, "grad_last", "(B, d)", (B, d), dtype, finite=False)
    return Problem(T, B, n, d, 0, dtype, tokens, inputs, lengths, s0, act, truncate=_effective_truncate(truncate, T))


def _check_truncate(truncate):
    if truncate is not None and (not _is_int(truncate) or truncate < 0):
        raise ValueError(f"truncate must be None or an int >= 0, got {truncate!r}")


def _effective_truncate(truncate, T):
    """None (exact) for τ ≥ T − 1: no loss term has more than T − 1 factors."""
    return None if truncate is None or truncate >= T - 1 else int(truncate)


def _check_sequences(inputs, n, lengths, check_values=True):
    """(tokens, T, B, lengths (B,) int64 where the inputs live) of checked inputs and lengths."""
    tokens, T, B = _check_inputs(inputs, n, check_values)
    lengths = _check_lengths(lengths, T, B, array_module(inputs), check_values)
    if tokens and _wanted(inputs, check_values):
        _check_token_ids(inputs, lengths, n)
    return tokens, T, B, lengths


def _check_state(value, name, names, shape, dtype=None, finite=True):
    """An array of `shape` (spelled `names`, e.g. "(B, d)"), of `dtype` when given, finite unless
    finite=False."""
    if not is_array(value):
        raise TypeError(f"{name} must be an array of shape {names} = {shape}, got {type(value).__name__}")
    if tuple(value.shape) != shape:
        raise ValueError(f"{name} must be an array of shape {names} = {shape}, got {tuple(value.shape)}")
    if dtype is not None and np.dtype(value.dtype) != dtype:
        raise ValueError(f"{name} must have the weights' dtype {dtype}, got {value.dtype}")
    if finite:
        _check_finite(value, name)


def _wanted(array, check_values) -> bool:
    """Whether `array`'s values are checked: always on the host (NumPy), on a GPU unless told not to."""
    return check_values or on_host(array)


def _check_inputs(inputs, n, check_values):
    if not is_array(inputs):
        raise TypeError(f"inputs must be an array: token ids (T,B) or floats (T,B,n), got {type(inputs).__name__}")
    kind = np.dtype(inputs.dtype).kind
    if kind in "iu":
        if inputs.ndim != 2:
            raise ValueError(f"inputs of token ids must have shape (T, B), got {tuple(inputs.shape)}")
        tokens = True
    elif kind == "f":
        if inputs.ndim != 3 or inputs.shape[2] != n:
            raise ValueError(f"dense inputs must have shape (T, B, n) with n = {n} (rows of U), "
                             f"got {tuple(inputs.shape)}")
        if _wanted(inputs, check_values):
            _check_finite(inputs, "inputs")
        tokens = False
    else:
        raise TypeError(f"inputs must hold int token ids or floats, got dtype {inputs.dtype}")
    T, B = int(inputs.shape[0]), int(inputs.shape[1])
    if T < 1 or B < 1:
        raise ValueError(f"inputs must have at least one step and one sequence, got shape {tuple(inputs.shape)}")
    return tokens, T, B


def _check_lengths(lengths, T, B, xp, check_values):
    """lengths as int64 (B,); None gives T for all, made by `xp` (inputs' library: no copy)."""
    if lengths is None:
        return xp.full(B, T, xp.int64)
    if not is_array(lengths):
        lengths = np.asarray(lengths)
    if np.dtype(lengths.dtype).kind not in "iu":
        raise TypeError(f"lengths must be ints, got dtype {lengths.dtype}")
    if tuple(lengths.shape) != (B,):
        raise ValueError(f"lengths must have shape (B,) = {(B,)}, got {tuple(lengths.shape)}")
    if _wanted(lengths, check_values):
        low, high = int(lengths.min()), int(lengths.max())
        if low < 0 or high > T:
            raise ValueError(f"lengths must lie in [0, T] = [0, {T}], got values in [{low}, {high}]")
    return lengths.astype(np.int64)


def _check_token_ids(inputs, lengths, n):
    """Token ids must lie in [0, n) wherever they are read: before each sequence's length."""
    xp = array_module(inputs)
    active = xp.arange(inputs.shape[0])[:, None] < xp.asarray(lengths)[None, :]
    if not bool(active.any()):
        return
    read = inputs[active]
    low, high = int(read.min()), int(read.max())
    if low < 0 or high >= n:
        raise ValueError(f"inputs (token ids) must lie in [0, n) = [0, {n}) before each sequence's length, "
                         f"got values in [{low}, {high}]")


def _loss_targets(targets, output, lengths, T, B, k, check_values):
    """Flat targets with −1 wherever no loss is taken."""
    if targets is None or not is_array(targets) and not isinstance(targets, (list, tuple)):
        raise TypeError(f"targets must be an int array, got {type(targets).__name__}")
    if not is_array(targets):
        targets = np.asarray(targets)
    if np.dtype(targets.dtype).kind not in "iu":
        raise TypeError(f"targets must be int class ids, got dtype {targets.dtype}")
    shape = (T, B) if output == "all" else (B,)   # last, mean, max: one per sequence
    if tuple(targets.shape) != shape:
        raise ValueError(f"targets for output={output!r} must have shape {shape}, got {tuple(targets.shape)}")
    if _wanted(targets, check_values) and int(targets.max()) >= k:
        raise ValueError(f"targets must be < k = {k} (columns of V; negative means no loss), "
                         f"got a maximum of {int(targets.max())}")
    xp = array_module(targets if on_host(lengths) else lengths)   # host targets go where lengths are
    targets = xp.asarray(targets).astype(xp.int64)
    if output != "all":
        return xp.where(targets >= 0, targets, -1)
    active = xp.arange(T)[:, None] < xp.asarray(lengths)[None, :]
    return xp.where(active & (targets >= 0), targets, -1).reshape(T * B)


def _shape(value, name, ndim):
    if value.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {tuple(value.shape)}")
    return tuple(int(s) for s in value.shape)


def _check_finite(value, name):
    xp = array_module(value)
    if not bool(xp.isfinite(value).all()):
        raise ValueError(f"{name} must be finite, got NaN or Inf")


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)
