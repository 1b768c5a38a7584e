"""Shared test utilities: random problems, tolerances, finite differences, and a plain
per-step NumPy reference of the Elman RNN, independent of gpurnn's engine.

The reference (flax's "cell vs fused loop" idea) runs the cell's own reference step
(`gpurnn.cell.reference_step`: NumPy, not the compiled σ) once per step in Python and
backpropagates each loss term on its own (brute force, O(T²)), walking back at most τ
Jacobian factors: for the loss L_t read from s_t,

    ∂L_t/∂θ ≈ Σ_{k=max(1,t−τ)}^{t} ∂L_t/∂s_t · ∂s_t/∂s_k · ∂⁺s_k/∂θ     (τ = None: k from 1)

and s0 receives ∂L_t/∂s_0 only when the window reaches the first step. A loss read at
step 0 (output "last", a sequence of length 0) reads s0 itself. A pooled loss (output
"mean" or "max") reads p = Σ_t w_t ⊙ s_t over the sequence's real steps (w_t = 1/L, or the
indicator of the argmax); each step's share w_t ⊙ ∂L/∂p is backpropagated as a loss term at
step t, through at most τ factors.
"""
from __future__ import annotations

import dataclasses
import itertools
import os

import numpy as np

from gpurnn import Params
from gpurnn.cell import reference_sigma_prime, reference_step

# Comparison tolerances keyed by dtype: |actual − ref| <= atol·max(1, max|ref|) + rtol·|ref|
# (CuPy's atol + rtol·|ref|, with atol taken relative to the array's scale: an entry that is
# a sum of large terms that cancel carries the rounding of those terms).
TOL = {
    np.dtype(np.float64): dict(atol=1e-12, rtol=1e-9),
    np.dtype(np.float32): dict(atol=2e-5, rtol=2e-4),
}
FIELDS = ("U", "W", "V", "b", "c")


def assert_close(actual, ref, dtype, name, scale=1.0):
    """Elementwise comparison with the tolerances of `dtype` (see TOL), both multiplied by
    `scale` (e.g. the number of terms a result sums)."""
    tol = TOL[np.dtype(dtype)]
    actual, ref = np.asarray(actual, np.float64), np.asarray(ref, np.float64)
    size = max(1.0, float(np.abs(ref).max(initial=0.0)))
    np.testing.assert_allclose(actual, ref, atol=scale * tol["atol"] * size, rtol=scale * tol["rtol"], err_msg=name)


def relative_error(a, b) -> float:
    """‖a − b‖ / max(‖a‖, ‖b‖) (0 when both are 0)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    denom = max(np.linalg.norm(a), np.linalg.norm(b))
    return 0.0 if denom == 0 else float(np.linalg.norm(a - b) / denom)


# --- random problems -----------------------------------------------------------------------

@dataclasses.dataclass
class Case:
    """One call's arguments: `kwargs()` feeds `gpurnn.bptt` (and `forward`, minus targets)."""

    params: Params
    inputs: np.ndarray
    targets: np.ndarray
    lengths: np.ndarray | None
    s0: np.ndarray | None
    activation: str
    output: str
    truncate: int | None = None

    def kwargs(self, **changes):
        kw = dict(lengths=self.lengths, s0=self.s0, activation=self.activation, output=self.output,
                  truncate=self.truncate)
        kw.update(changes)
        return kw

    def forward_kwargs(self):
        return dict(lengths=self.lengths, s0=self.s0, activation=self.activation)

    def astype(self, dtype):
        """The same case with params, s0 and dense inputs cast to `dtype`."""
        cast = (lambda a: a if a is None else a.astype(dtype))
        inputs = self.inputs if self.inputs.dtype.kind in "iu" else cast(self.inputs)
        return dataclasses.replace(self, params=self.params.map(cast), inputs=inputs, s0=cast(self.s0))


def make_case(seed, *, T=5, B=3, n=4, d=4, k=3, tokens=True, activation="tanh", output="all",
              lengths=False, s0=False, truncate=None, dtype=np.float64) -> Case:
    """A random problem. lengths=True gives lengths (T, 0, then random in [1, max(T−1, 1)]) with
    garbage past each length (out-of-range token ids, large dense values, targets) that the
    engine must never read. For relu, draws until no pre-activation lies within 1e-3 of the
    kink, so finite differences never cross it."""
    rng = np.random.default_rng(seed)
    for _ in range(100):
        case = _draw(rng, T, B, n, d, k, tokens, activation, output, lengths, s0, truncate)
        if activation != "relu" or np.abs(preactivations(case)).min() > 1e-3:
            return case.astype(dtype)
    raise AssertionError("no relu case away from the kink")


def _draw(rng, T, B, n, d, k, tokens, activation, output, lengths, s0, truncate):
    # Bounds scale as 1/sqrt(fan-in) (U ±1, W ±0.8, V ±1 at n = d = 4): W's spectral radius
    # stays near 1 at every size, so gradients neither vanish nor explode in the tests.
    params = Params(U=rng.uniform(-1, 1, (n, d)) * 2 / np.sqrt(n), W=rng.uniform(-0.8, 0.8, (d, d)) * 2 / np.sqrt(d),
                    V=rng.uniform(-1, 1, (d, k)) * 2 / np.sqrt(d), b=rng.uniform(-0.5, 0.5, d),
                    c=rng.uniform(-0.5, 0.5, k))
    lens = None
    if lengths:
        lens = np.concatenate([[T, 0 if output in ("all", "last") else 1], rng.integers(1, max(T, 2), B - 2)])
        lens = lens[:B].astype(np.int64)
    if tokens:
        inputs = rng.integers(0, n, (T, B))
    else:
        inputs = rng.normal(size=(T, B, n))
    if output == "all":
        targets = rng.integers(0, k, (T, B))
        targets[rng.random((T, B)) < 0.2] = -1          # unlabelled steps
    else:
        targets = rng.integers(0, k, B)
    if lens is not None:
        past = np.arange(T)[:, None] >= lens[None, :]
        if tokens:
            inputs[past] = n + 3                         # never read
        else:
            inputs[past] = 1e3                           # would dominate if read
        if output == "all":
            targets[past] = rng.integers(0, k, int(past.sum()))
    s0_arr = rng.uniform(-0.9, 0.9, (B, d)) if s0 else None
    return Case(params, inputs, targets, lens, s0_arr, activation, output, truncate)


# --- the plain per-step reference ------------------------------------------------------------

def _lengths(case):
    T, B = case.inputs.shape[:2]
    return np.full(B, T) if case.lengths is None else case.lengths


def _x(case, t, i):
    """Row x_t of sequence i as a dense vector (one-hot for token ids (T,B); for ids (T,B,F),
    each id's count among the step's F)."""
    if case.inputs.dtype.kind == "f":
        return case.inputs[t, i]
    x = np.zeros(case.params.n_in, case.params.W.dtype)
    np.add.at(x, case.inputs[t, i], 1.0)
    return x


def cell(case, t, i, s_prev):
    """One step of one sequence: (a_t, s_t) from s_{t−1}."""
    P = case.params
    return reference_step(P.cell(0), _x(case, t, i), s_prev, case.activation)


def preactivations(case):
    """a_t for every active step (those before each sequence's length), flattened."""
    S = reference_forward(case)[0]
    lens = _lengths(case)
    return np.array([cell(case, t, i, S[t, i])[0] for i in range(len(lens)) for t in range(lens[i])]).ravel()


def reference_forward(case):
    """(S (T+1,B,d) with S[0] = s0, Z (T,B,k), s_last (B,d)), one `cell` per step and sequence."""
    P = case.params
    T, B = case.inputs.shape[:2]
    lens = _lengths(case)
    S = np.zeros((T + 1, B, P.hidden), P.W.dtype)
    if case.s0 is not None:
        S[0] = case.s0
    for i in range(B):
        for t in range(T):
            S[t + 1, i] = cell(case, t, i, S[t, i])[1] if t < lens[i] else S[t, i]
    Z = S[1:] @ P.V + P.c
    return S, Z, S[T]


def max_pool_gap(case):
    """The smallest distance between a max-pooled value and its runner-up (inf with one step)."""
    S, lens = reference_forward(case)[0], _lengths(case)
    gaps = [np.diff(np.sort(S[1:L + 1, i], axis=0)[-2:], axis=0) for i, L in enumerate(lens) if L > 1]
    return min((float(g.min()) for g in gaps), default=np.inf)


def loss_terms(case):
    """(step, sequence, target) of every loss term; step t reads s_t (t = 0 reads s0); a pooled
    output's term is listed at its sequence's last step."""
    lens = _lengths(case)
    if case.output != "all":
        return [(int(lens[i]), i, int(case.targets[i])) for i in range(len(lens)) if case.targets[i] >= 0]
    T, B = case.targets.shape
    return [(t + 1, i, int(case.targets[t, i])) for i in range(B) for t in range(T)
            if t < lens[i] and case.targets[t, i] >= 0]


def reference_loss(case, dtype=np.float64) -> float:
    """The summed cross-entropy, computed in `dtype` (np.longdouble for finite differences)."""
    wide = dataclasses.replace(case, params=case.params.map(lambda a: a.astype(dtype)),
                               s0=None if case.s0 is None else case.s0.astype(dtype),
                               inputs=case.inputs if case.inputs.dtype.kind in "iu" else case.inputs.astype(dtype))
    S = reference_forward(wide)[0]
    P, loss = wide.params, dtype(0)
    for shares, i, y in readouts(case, S):
        z = sum(w * S[t, i] for t, w in shares) @ P.V + P.c
        loss += np.logaddexp.reduce(z) - z[y]
    return loss


def readouts(case, S):
    """(shares, sequence, target) of every loss term: it reads p = Σ_{(t, w) in shares} w ⊙ s_t
    from the states S (T+1,B,d), so ∂p/∂s_t = diag(w): the one share (t, 1) of `loss_terms` for
    outputs "all" and "last"; (t, 1/L) for every real step of "mean"; (t, [t is the first
    argmax]) for "max"."""
    if case.output in ("all", "last"):
        return [([(t, 1.0)], i, y) for t, i, y in loss_terms(case)]
    terms = []
    for L, i, y in loss_terms(case):
        if case.output == "mean":
            shares = [(t, 1.0 / L) for t in range(1, L + 1)]
        else:
            top = np.argmax(S[1:L + 1, i], axis=0) + 1          # the first maximum of each unit
            shares = [(t, (top == t).astype(S.dtype)) for t in range(1, L + 1)]
        terms.append((shares, i, y))
    return terms


def reference_bptt(case):
    """(loss, grads as a dict by field name, ds0): every loss term backpropagated on its own."""
    P = case.params
    S = reference_forward(case)[0]
    grads = {name: np.zeros_like(value, dtype=np.float64) for name, value in P.items()}
    ds0 = np.zeros_like(S[0])
    loss = 0.0
    for shares, i, y in readouts(case, S):
        p = sum(w * S[t, i] for t, w in shares)
        z = p @ P.V + P.c
        loss += np.logaddexp.reduce(z) - z[y]
        dz = np.exp(z - np.logaddexp.reduce(z))
        dz[y] -= 1.0
        grads["V"] += np.outer(p, dz)
        grads["c"] += dz
        xs = [_x(case, t, i) for t in range(_lengths(case)[i])]          # the real steps only
        for t, w in shares:
            reached = walk_back(P.cell(0), xs, S[:, i], w * (P.V @ dz), t, case.truncate, case.activation, grads)
            if reached is not None:
                ds0[i] += reached
    return float(loss), grads, ds0


def walk_back(cell, xs, S, g, t, truncate, activation, grads, dxs=None):
    """One loss term of one sequence backpropagated on its own: g = ∂L_t/∂s_t walked back over
    the steps t, t−1, …, max(1, t−τ) (τ = None: to step 1), each adding its ∂⁺s_k/∂θ share to
    grads["U"], grads["W"], grads["b"] and, when given, ∂L/∂x_k to dxs[k−1] (L,n).
    xs: the sequence's dense inputs by step (x_k = xs[k−1]); S (≥t+1,d) its states, S[0] = s0.
    Returns ∂L_t/∂s_0 when the walk reaches step 1 (t = 0: g itself), else None."""
    first = 1 if truncate is None else max(1, t - truncate)
    for step in range(t, first - 1, -1):            # s_step = σ(x_step U + s_{step−1} W + b)
        delta = g * reference_sigma_prime(activation, S[step])
        grads["W"] += np.outer(S[step - 1], delta)
        grads["b"] += delta
        grads["U"] += np.outer(xs[step - 1], delta)
        if dxs is not None:
            dxs[step - 1] += cell.U @ delta
        g = cell.W @ delta                           # ∂L_t/∂s_{step−1}
    return g if first == 1 else None


# --- the per-term reference of a layer stack, one sequence at a time ---------------------------

def reference_layer(cells, X, s0s, activation):
    """One sequence X (L,n) through a layer of cells (fw, then bw reading X reversed): H (L,D·d)
    by position and each cell's states S_j (L+1,d) in its own reading order, S_j[0] = s0s[j]."""
    Ss = []
    for j, cell in enumerate(cells):
        xs = X if j == 0 else X[::-1]
        S = [np.asarray(s0s[j], np.float64)]
        for x in xs:
            S.append(reference_step(cell, x, S[-1], activation)[1])
        Ss.append(np.array(S))
    H = np.concatenate([S[1:] if j == 0 else S[1:][::-1] for j, S in enumerate(Ss)], axis=1)
    return H, Ss


def reference_layer_backprop(cells, X, Ss, G, g_last, activation, truncate):
    """The layer's gradients for one sequence, every loss term on its own: G (L,D·d) = ∂L/∂H
    by position, each row a loss term at its step, and g_last (D,d) = ∂L/∂(each cell's final
    state), a term at the cell's last step (or None). Returns (dX (L,n), [ds0_j (d,)],
    [{"U", "W", "b"} per cell])."""
    L, d = len(X), len(Ss[0][0])
    dX, ds0s, grads = np.zeros(X.shape), [], []
    for j, (cell, S) in enumerate(zip(cells, Ss)):
        own = G[:, j * d:(j + 1) * d] if j == 0 else G[::-1, j * d:(j + 1) * d]
        xs = X if j == 0 else X[::-1]
        dxs, ds0 = np.zeros(X.shape), np.zeros(d)
        cell_grads = {f: np.zeros(np.shape(getattr(cell, f))) for f in ("U", "W", "b")}
        for t in range(0 if g_last is not None else 1, L + 1):
            g = own[t - 1].copy() if t > 0 else np.zeros(d)
            if g_last is not None and t == L:
                g += g_last[j]
            reached = walk_back(cell, xs, S, g, t, truncate, activation, cell_grads, dxs)
            if reached is not None:
                ds0 += reached
        dX += dxs if j == 0 else dxs[::-1]
        ds0s.append(ds0)
        grads.append(cell_grads)
    return dX, ds0s, grads


def reference_stack_bptt(P, x, targets, lengths, s0, activation, truncate, masks=None, h_n_grad=None):
    """(loss, {name: grad} with gpurnn's parameter names, ds0 (cells,B,d)) of a stack with an
    output per step (`output="all"`, summed cross-entropy) on dense inputs x (T,B,n): each
    sequence alone, each layer's G (and each cell's ∂L/∂(final state) h_n_grad (cells,B,d),
    as a loss on torch's h_n adds) backpropagated term by term through at most τ factors
    (`reference_layer_backprop`), τ applying in every cell. masks: `stack.dropout_masks`."""
    from gpurnn.model import DIRECTIONS

    D, layers = P.directions, P.layers
    head_V, head_c = P.head_names()
    grads = {name: np.zeros(np.shape(value)) for name, value in P.items()}
    ds0 = np.zeros((P.n_cells, x.shape[1], P.hidden))
    loss = 0.0
    for i, L in enumerate(lengths):
        X, record = x[:L, i], []
        for layer in range(layers):
            if masks is not None and masks[layer] is not None:
                X = X * masks[layer][:L, i]
            cells = [P.cell(layer, direction) for direction in DIRECTIONS[:D]]
            H, Ss = reference_layer(cells, X, [s0[layer * D + j, i] for j in range(D)], activation)
            record.append((cells, X, Ss))
            X = H
        G = np.zeros((L, D * P.hidden))
        for t in range(L):
            z = X[t] @ P.V + P.c
            loss += np.logaddexp.reduce(z) - z[targets[t, i]]
            dz = np.exp(z - np.logaddexp.reduce(z))
            dz[targets[t, i]] -= 1.0
            grads[head_V] += np.outer(X[t], dz)
            grads[head_c] += dz
            G[t] = P.V @ dz
        for layer in reversed(range(layers)):
            cells, X_in, Ss = record[layer]
            g_last = None if h_n_grad is None else h_n_grad[layer * D:(layer + 1) * D, i]
            G, ds0s, cell_grads = reference_layer_backprop(cells, X_in, Ss, G, g_last, activation, truncate)
            if masks is not None and masks[layer] is not None:
                G = G * masks[layer][:L, i]
            for j, direction in enumerate(DIRECTIONS[:D]):
                ds0[layer * D + j, i] += ds0s[j]
                for f, value in cell_grads[j].items():
                    grads[P.cell_name(layer, direction, f)] += value
    return float(loss), grads, ds0


# --- finite differences ----------------------------------------------------------------------

def finite_difference(fn, array, step):
    """Central differences (fn(x + h e_i) − fn(x − h e_i)) / 2h of a scalar fn for every
    entry of `array`, perturbed in place and restored; 2h is taken as the difference of
    the two perturbed values actually stored."""
    grad = np.zeros(array.shape)
    flat, out = array.reshape(-1), grad.reshape(-1)
    for j in range(flat.size):
        saved = flat[j]
        flat[j] = saved + step
        up, x_up = fn(), flat[j]
        flat[j] = saved - step
        down, x_down = fn(), flat[j]
        flat[j] = saved
        out[j] = (up - down) / (x_up - x_down)
    return grad


# --- test matrices ---------------------------------------------------------------------------

def representative(**axes):
    """Parameter tuples for a test matrix: the full product of `axes`' values, or under the
    CUDA simulator (where every thread runs in Python) and with GPURNN_TEST_PAIRWISE=1 (a
    short GPU slot: profiling/gpu_check.sh) a greedy pairwise cover of it, in which every
    pair of values of two axes still appears at least once."""
    from conftest import SIMULATOR     # here, so make_golden.py imports this module without pytest

    combos = list(itertools.product(*axes.values()))
    if not (SIMULATOR or os.environ.get("GPURNN_TEST_PAIRWISE") == "1"):
        return combos

    def pairs(combo):
        return {(i, combo[i], j, combo[j]) for i, j in itertools.combinations(range(len(combo)), 2)}

    uncovered = set().union(*(pairs(c) for c in combos))
    chosen = []
    while uncovered:
        best = max(combos, key=lambda c: len(pairs(c) & uncovered))
        chosen.append(best)
        uncovered -= pairs(best)
    return chosen
