"""The model's parameters: the `Params` tree and its initialisation.

A stack of `layers` Elman layers, each with one direction (`fw`) or two (`fw`, `bw`), and an
output layer (`head`). Row-vector convention (docs/design.md): each layer ℓ and direction is
a `gpurnn.cell` (U (n_ℓ,d), W (d,d), b (d,); n_0 = n, n_ℓ = D·d above), and the head reads

    z_t = h_t V + c                  V (D·d,k)  c (k,)             h_t: the top layer's states,
                                                                   directions concatenated
`Params` is an ordered name → array tree with one way to iterate (`items`, iteration over
the arrays), map (`map`), flatten (`flatten`/`unflatten`) and count (`size`) it: every
optimizer, clipping rule, checkpoint and monitor goes through those and names no field.
"""
from __future__ import annotations

import re
from typing import Any, Callable, Iterator

import numpy as np

from .arrays import array_module
from .cell import CELL_FIELDS, RECURRENT_INITS, Cell, draw_cell, init_recurrent

FIELDS = ("U", "W", "V", "b", "c")          # a single-layer model's names, in the tree's order
HEAD_FIELDS = ("V", "c")
DIRECTIONS = ("fw", "bw")
_NAME = re.compile(rf"layers\.(\d+)\.(fw|bw)\.([{''.join(CELL_FIELDS)}])|head\.([{''.join(HEAD_FIELDS)}])")


def tree_names(layers: int, directions: int) -> list[str]:
    """The names of a stack's arrays in the tree's order: by field (U, W, V, b, c), then layer,
    then direction. A model with one layer and one direction names them by field alone
    (U, W, V, b, c), as it always has, so its checkpoints, optimizer slots and logs keep them."""
    if layers == 1 and directions == 1:
        return list(FIELDS)
    cells = [f"layers.{layer}.{direction}" for layer in range(layers) for direction in DIRECTIONS[:directions]]
    return [f"head.{field}" if field in HEAD_FIELDS else f"{cell}.{field}"
            for field in FIELDS for cell in ([None] if field in HEAD_FIELDS else cells)]


class Params:
    """An Elman network's arrays as an ordered name → array tree (see the module docstring).

    `Params(U, W, V, b, c)` is the single-layer model; `Params.from_items` builds any stack from
    its names (`layers.0.fw.U`, `layers.1.bw.W`, `head.V`, ...). The arrays may live on any
    backend (NumPy on the CPU, CuPy on the GPU); gradients use the same class with the same
    names, shapes and dtype.
    """

    def __init__(self, U, W, V, b, c):
        self._set_arrays(dict(zip(FIELDS, (U, W, V, b, c))))

    @classmethod
    def from_items(cls, items) -> "Params":
        """A tree from (name, array) pairs; the names must be exactly those of one stack."""
        arrays = dict(items)
        params = cls.__new__(cls)
        params._set_arrays(arrays)
        return params

    def _set_arrays(self, arrays: dict):
        layers, directions = _structure(arrays.keys())
        expected = tree_names(layers, directions)
        if set(arrays) != set(expected):
            raise ValueError(f"params names must be those of a {layers}-layer {directions}-direction stack; "
                             f"missing {sorted(set(expected) - set(arrays))}, "
                             f"unknown {sorted(set(arrays) - set(expected))}")
        self._take({name: arrays[name] for name in expected}, layers, directions)

    def _take(self, arrays: dict, layers: int, directions: int):
        """Hold `arrays`, already in the tree's order for this structure (unchecked)."""
        object.__setattr__(self, "_arrays", arrays)
        object.__setattr__(self, "layers", layers)
        object.__setattr__(self, "directions", directions)

    def like(self, arrays: dict) -> "Params":
        """A tree of this one's structure holding arrays[name] for each of its names (gradients of
        these parameters, say)."""
        params = Params.__new__(Params)
        params._take({name: arrays[name] for name in self._arrays}, self.layers, self.directions)
        return params

    # one way to iterate, map, flatten and count
    def items(self) -> Iterator[tuple[str, Any]]:
        return iter(self._arrays.items())

    def names(self) -> list[str]:
        return list(self._arrays)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._arrays.values())

    def __getitem__(self, name: str):
        return self._arrays[name]

    def map(self, fn: Callable[..., Any], *others: "Params") -> "Params":
        """A new tree with fn(array, *(other's array of the same name)) for each array."""
        return self.like({name: fn(a, *(other[name] for other in others)) for name, a in self.items()})

    def flatten(self):
        """All arrays raveled into one 1-D array (in the tree's order, on the arrays' device)."""
        return array_module(next(iter(self))).concatenate([a.reshape(-1) for a in self])

    def unflatten(self, flat) -> "Params":
        """A tree shaped like this one whose arrays are views of consecutive pieces of `flat`."""
        pieces, start = {}, 0
        for name, a in self.items():
            pieces[name] = flat[start:start + a.size].reshape(a.shape)
            start += a.size
        return self.like(pieces)

    @property
    def size(self) -> int:
        """The number of scalars in the tree."""
        return sum(int(a.size) for a in self)

    # the structure
    @property
    def n_cells(self) -> int:
        """layers · directions: the number of recurrences (and of initial states s0)."""
        return self.layers * self.directions

    @property
    def bidirectional(self) -> bool:
        return self.directions == 2

    def cell(self, layer: int, direction: str = "fw") -> Cell:
        """Layer `layer`'s arrays in `direction` ("fw" or "bw")."""
        return Cell(*(self._arrays[self.cell_name(layer, direction, field)] for field in CELL_FIELDS))

    def cells(self) -> Iterator[tuple[int, str, Cell]]:
        """(layer, direction, cell) bottom-up, fw before bw within a layer."""
        for layer in range(self.layers):
            for direction in DIRECTIONS[:self.directions]:
                yield layer, direction, self.cell(layer, direction)

    def cell_name(self, layer: int, direction: str, field: str) -> str:
        """The tree's name of one cell's array (a single-layer model's: the field alone)."""
        return field if self.layers == 1 and self.directions == 1 else f"layers.{layer}.{direction}.{field}"

    def head_names(self) -> tuple[str, str]:
        """The tree's names of the output layer's V and c."""
        return HEAD_FIELDS if self.layers == 1 and self.directions == 1 else ("head.V", "head.c")

    @property
    def V(self):
        return self._arrays[self.head_names()[0]]

    @property
    def c(self):
        return self._arrays[self.head_names()[1]]

    def __getattr__(self, name):
        # U, W, b of a single-layer model (a stack's are reached through `cell`)
        arrays = self.__dict__.get("_arrays", {})
        if name in CELL_FIELDS and name in arrays:
            return arrays[name]
        if name in CELL_FIELDS:
            raise AttributeError(f"params.{name} names a single-layer model's array; this model has "
                                 f"{self.layers} layers and {self.directions} directions: "
                                 f"use params.cell(layer, direction).{name}")
        raise AttributeError(name)

    def __setattr__(self, name, value):
        if name in FIELDS and name in self._arrays:
            self._arrays[name] = value
        else:
            raise AttributeError(f"Params has no settable attribute {name!r}")

    def __repr__(self):
        shapes = ", ".join(f"{name}={tuple(a.shape)}" for name, a in self.items())
        return f"Params({shapes})"

    @property
    def n_in(self) -> int:
        return int(self.cell(0).U.shape[0])

    @property
    def hidden(self) -> int:
        """d: the state size of each layer and direction."""
        return int(self.cell(0).W.shape[0])

    @property
    def n_out(self) -> int:
        return int(self.V.shape[1])

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.cell(0).W.dtype)


def _structure(names) -> tuple[int, int]:
    """(layers, directions) that the names describe (names checked against them by the caller)."""
    names = list(names)
    if set(names) <= set(FIELDS):
        return 1, 1
    layers = directions = 0
    for name in names:
        match = _NAME.fullmatch(name)
        if match and match.group(1) is not None:
            layers = max(layers, int(match.group(1)) + 1)
            directions = max(directions, DIRECTIONS.index(match.group(2)) + 1)
    return max(layers, 1), max(directions, 1)


def init_params(n_in: int, hidden: int, n_out: int, *, layers: int = 1, bidirectional: bool = False, seed: int = 0,
                dtype="float32", scale: float | None = None, recurrent_scale: float | None = None,
                recurrent: str = "uniform") -> Params:
    """Random parameters, as `torch.nn.RNN` and `nn.Linear` draw them by default.

    Every weight is uniform in ±1/sqrt(hidden), the bound `torch.nn.RNN` uses for U and W
    and `nn.Linear(hidden, n_out)` for V, so W starts with a spectral radius below one;
    biases start at zero. `scale` overrides the bound for U and V, `recurrent_scale`
    the bound for W (e.g. to put W's spectral radius where an experiment wants it).
    `layers` stacked layers, each with a backward direction too when `bidirectional`; layer
    ℓ > 0 reads D·d inputs (D = 2 directions or 1). Draws: each cell's U then W, bottom-up, fw
    before bw, then V (a single layer draws U, W, V as it always has).

    `recurrent` chooses every cell's W for long sequences (`gpurnn.cell.init_recurrent`:
    "uniform", "identity" or "orthogonal"), drawn after V cell by cell. U and V are the same
    draws whatever W is.
    """
    for name, value in (("n_in", n_in), ("hidden", hidden), ("n_out", n_out), ("layers", layers)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if not isinstance(bidirectional, bool):
        raise TypeError(f"bidirectional must be a bool, got {bidirectional!r}")
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    if recurrent not in RECURRENT_INITS:
        raise ValueError(f"recurrent must be one of {RECURRENT_INITS}, got {recurrent!r}")
    rng = np.random.default_rng(seed)
    bound = 1.0 / np.sqrt(hidden) if scale is None else scale
    w_bound = 1.0 / np.sqrt(hidden) if recurrent_scale is None else recurrent_scale
    directions = 2 if bidirectional else 1
    arrays = {}
    for layer in range(layers):
        rows = n_in if layer == 0 else directions * hidden
        for direction in DIRECTIONS[:directions]:
            arrays[layer, direction] = draw_cell(rng, rows, hidden, bound, w_bound, dtype)
    V = rng.uniform(-bound, bound, (directions * hidden, n_out)).astype(dtype)
    c = np.zeros(n_out, dtype)
    for key, cell in arrays.items():
        arrays[key] = init_recurrent(cell, recurrent, rng)
    if layers == 1 and directions == 1:
        U, W, b = arrays[0, "fw"]
        return Params(U, W, V, b, c)
    named = {f"layers.{layer}.{direction}.{field}": value
             for (layer, direction), cell in arrays.items() for field, value in zip(CELL_FIELDS, cell)}
    return Params.from_items({**named, "head.V": V, "head.c": c})

