"""The pathological long-memory problems (Hochreiter and Schmidhuber 1997; Martens and Sutskever
2011; Pascanu, Mikolov and Bengio 2013) as seeded data generators with a length parameter T.

Every problem answers `generate(length, batch, rng) -> Sample` (time-major arrays for
`gpurnn.forward`/`bptt`) and `evaluate(params, length, …)` on fresh sequences (10,000 by
default) against its success criterion.

adding (T ≥ 2)          dense inputs (T,B,2): channel 0 a value u_t ~ U[0,1], channel 1 a marker,
                        1 at exactly two steps: with s = max(⌊T/10⌋, 1), i₁ uniform in [0, s),
                        i₂ uniform in [s, max(⌊T/2⌋, s+1)). Target y = u_{i₁} + u_{i₂} ∈ [0, 2].
                        Our model ends in a softmax, so the target is *quantised*: class
                        min(⌊y/2 · bins⌋, bins−1) of `bins` (20) equal bins, read at the last step
                        (output="last"). The prediction is the distribution's mean ŷ = Σ_j p_j c_j
                        over the bin centres c_j = (j + ½)·2/bins; success: mean (ŷ − y)² < 0.04
                        (predicting the mean 1 scores Var y = 1/6 ≈ 0.167; quantisation alone costs
                        at most (1/bins)² = 0.0025).
temporal order (m = 2|3)  tokens: distractors a b c d (0-3), relevant X Y (4, 5), start B (6) at step 0,
                        end E (7) at step T−1 (T ≥ 10). Relevant symbols at t₁ ∈ [T/10, 2T/10),
                        t₂ ∈ [4T/10, 5T/10) (m = 2) or t₁ ∈ [T/10, 2T/10), t₂ ∈ [3T/10, 4T/10),
                        t₃ ∈ [6T/10, 7T/10) (m = 3), each bound floored and kept inside [1, T−2];
                        every other step a uniform distractor. Class = the symbols read as binary,
                        X = 0, Y = 1, first symbol most significant (2^m classes), at the last step.
memorization (P = 5 bits) tokens: bits 0/1, blank 2, trigger 3. Steps 0..P−1 show the bits, then blanks,
                        the trigger at step P+T−1, then P blanks during which the targets are the bits
                        in order (sequence length 2P+T; every other target −1). T is the delay.
Success for the classification problems: fewer than 1% of the sequences wrong (a sequence is wrong if any
of its outputs' argmax differs from its target).
"""
from __future__ import annotations

import abc
import dataclasses
from typing import Any

import numpy as np

from .arrays import to_host
from .bptt import forward

FRESH = 10_000         # sequences each evaluation draws
ERROR_RATE = 0.01      # classification problems: solved when fewer than 1% of sequences are wrong
ADDING_MSE = 0.04      # adding: solved when the mean squared error is below this


@dataclasses.dataclass
class Sample:
    """inputs (T,B) ids or (T,B,n) floats; targets (B,) for output "last", (T,B) with −1 for
    "all"; values (B,) the adding problem's real-valued sums (None elsewhere); markers (B,m)
    the steps that matter (marked values, relevant symbols or shown bits)."""

    inputs: Any
    targets: Any
    markers: np.ndarray
    values: Any = None


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """error: mean squared error (adding) or the fraction of sequences wrong; solved: error < threshold."""

    error: float
    threshold: float
    sequences: int

    @property
    def solved(self) -> bool:
        return self.error < self.threshold


class SyntheticProblem(abc.ABC):
    """Shared evaluation; subclasses set name, n_in, n_out, output, threshold, min_length."""

    name = ""
    n_in = n_out = min_length = 0
    output = "last"
    threshold = ERROR_RATE

    @abc.abstractmethod
    def generate(self, length: int, batch: int, rng) -> Sample:
        """`batch` sequences of this length drawn with `rng` (a numpy Generator)."""

    @abc.abstractmethod
    def errors(self, logits, sample: Sample) -> np.ndarray:
        """Per-sequence error (B,) from logits (T,B,k): squared error (adding) or 1.0/0.0 for wrong/right."""

    def check(self, length, batch):
        """ValueError unless length >= min_length and batch >= 1 are ints."""
        _check_count(length, f"length for {self.name}", self.min_length)
        _check_count(batch, "batch", 1)

    def evaluate(self, params, length, *, activation="tanh", sequences=FRESH, seed=12345,
                 backend="auto", chunk=1000) -> Evaluation:
        """The problem's error on `sequences` fresh sequences of this length (drawn with `seed`)."""
        rng = np.random.default_rng(seed)
        total, done = 0.0, 0
        while done < sequences:
            batch = min(chunk, sequences - done)
            sample = self.generate(length, batch, rng)
            logits = forward(params, sample.inputs, activation=activation, backend=backend).logits
            logits = to_host(logits)
            total += float(self.errors(logits.astype(np.float64), sample).sum())
            done += batch
        return Evaluation(total / sequences, self.threshold, sequences)


class Adding(SyntheticProblem):
    name, n_in, min_length, threshold = "adding", 2, 2, ADDING_MSE

    def __init__(self, bins: int = 20):
        _check_count(bins, "bins", 2)
        self.bins = self.n_out = bins
        self.centres = (np.arange(bins) + 0.5) * 2.0 / bins

    def generate(self, length, batch, rng) -> Sample:
        self.check(length, batch)
        split = max(length // 10, 1)
        first = rng.integers(0, split, batch)
        second = rng.integers(split, max(length // 2, split + 1), batch)
        inputs = np.zeros((length, batch, 2))
        inputs[:, :, 0] = rng.uniform(0.0, 1.0, (length, batch))
        columns = np.arange(batch)
        inputs[first, columns, 1] = 1.0
        inputs[second, columns, 1] = 1.0
        values = inputs[first, columns, 0] + inputs[second, columns, 0]
        targets = np.minimum((values / 2.0 * self.bins).astype(np.int64), self.bins - 1)
        return Sample(inputs, targets, np.stack([first, second], axis=1), values)

    def errors(self, logits, sample):
        z = logits[-1] - logits[-1].max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        return (p @ self.centres - sample.values) ** 2


class TemporalOrder(SyntheticProblem):
    output, n_in, min_length = "last", 8, 10
    WINDOWS = {2: ((0.1, 0.2), (0.4, 0.5)), 3: ((0.1, 0.2), (0.3, 0.4), (0.6, 0.7))}

    def __init__(self, symbols: int = 2):
        if symbols not in self.WINDOWS:
            raise ValueError(f"symbols must be 2 or 3, got {symbols!r}")
        self.symbols, self.n_out = symbols, 2 ** symbols
        self.name = f"temporal-order-{symbols}"

    def positions(self, length):
        """[start, stop) of each relevant symbol's window for this length."""
        return [(max(int(lo * length), 1), min(max(int(hi * length), int(lo * length) + 1), length - 1))
                for lo, hi in self.WINDOWS[self.symbols]]

    def generate(self, length, batch, rng) -> Sample:
        self.check(length, batch)
        inputs = rng.integers(0, 4, (length, batch))
        inputs[0], inputs[-1] = 6, 7
        columns = np.arange(batch)
        markers = np.stack([rng.integers(lo, hi, batch) for lo, hi in self.positions(length)], axis=1)
        bits = rng.integers(0, 2, (batch, self.symbols))
        inputs[markers.T, columns] = 4 + bits.T
        targets = bits @ (2 ** np.arange(self.symbols - 1, -1, -1))
        return Sample(inputs, targets, markers)

    def errors(self, logits, sample):
        return (logits[-1].argmax(axis=1) != np.asarray(sample.targets)).astype(np.float64)


class Memorization(SyntheticProblem):
    name, output, n_in, n_out, min_length = "memorization", "all", 4, 2, 1

    def __init__(self, bits: int = 5):
        _check_count(bits, "bits", 1)
        self.bits = bits

    def generate(self, length, batch, rng) -> Sample:
        self.check(length, batch)
        P = self.bits
        pattern = rng.integers(0, 2, (P, batch))
        inputs = np.full((2 * P + length, batch), 2)
        inputs[:P] = pattern
        inputs[P + length - 1] = 3
        targets = np.full(inputs.shape, -1)
        targets[P + length:] = pattern
        return Sample(inputs, targets, np.tile(np.arange(P), (batch, 1)))

    def errors(self, logits, sample):
        P = self.bits
        wrong = logits[-P:].argmax(axis=2) != np.asarray(sample.targets)[-P:]
        return wrong.any(axis=0).astype(np.float64)


def _check_count(value, name, low):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")


PROBLEMS = {"adding": Adding, "temporal-order-2": lambda: TemporalOrder(2),
            "temporal-order-3": lambda: TemporalOrder(3), "memorization": Memorization}


def make_problem(name: str) -> SyntheticProblem:
    """A problem by name: adding, temporal-order-2, temporal-order-3, memorization."""
    if name not in PROBLEMS:
        raise ValueError(f"problem must be one of {', '.join(PROBLEMS)}, got {name!r}")
    return PROBLEMS[name]()
