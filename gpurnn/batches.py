"""Batches for the trainer: streams of one long text (stateful BPTT) and padded sentence batches.

A data source has `__len__` (batches per epoch) and `iter_epoch(rng)`, yielding `Batch`es
in the epoch's order (`rng` a `numpy.random.Generator` that may shuffle, or None for the
fixed order used by evaluation). The trainer saves the generator's state at the start of
each epoch and, on resume, replays the epoch's order and skips the batches already done.

Streaming (Williams and Peng's BPTT(k1, k2) with k1 = k2 = k): a text of N token ids is cut
into B streams of L = ⌊(N−1)/B⌋ consecutive ids, stream b reading ids[b·L : b·L+L] with
targets one further on. Chunk j holds steps j·k … j·k+k−1 of every stream, time-major
(k,B); each chunk starts from the previous chunk's final states (`carry=True`), and the
gradient stops at the border (BPTT within the chunk only).

Data parallelism (`gpurnn.distributed`): `shard(source, rank, size)` of a source built
with the global batch yields rank `rank`'s part of every batch, so that the `size` ranks'
steps together read exactly the global batch. Each batch's columns (sequences, streams)
split into `size` contiguous parts, sizes differing by at most one: streams once for the
epoch (`TokenStreams.shard`: rank r holds its run of streams, their carried states with
it), any other source batch by batch (`Shard`: every rank draws the same global batch from
the same seeded generator, masks and shuffles included, and keeps its columns).
"""
from __future__ import annotations

from typing import Any, Iterator, NamedTuple, Sequence

import numpy as np

from .arrays import array_module

__all__ = ["Batch", "SentenceBatches", "Shard", "TokenStreams", "part_of", "shard"]


def part_of(items, rank: int, size: int):
    """Rank `rank`'s contiguous part of the array `items` split into `size` parts along its
    first axis (np.array_split's sizes: the first len % size parts hold one more)."""
    check_rank(rank, size)
    return np.array_split(np.asarray(items), size)[rank]


def check_rank(rank, size) -> None:
    if not (isinstance(size, (int, np.integer)) and size >= 1 and isinstance(rank, (int, np.integer))
            and 0 <= rank < size):
        raise ValueError(f"rank must be an int in [0, size) with size >= 1, got rank {rank!r} of size {size!r}")


class Batch(NamedTuple):
    """inputs: token ids (T,B) ints or floats (T,B,n); targets: (T,B) ints for output "all"
    (−1: no loss) or (B,) for output "last"; lengths: (B,) ints or None (all T steps);
    carry: start from the previous batch's final states (streams) instead of zeros."""

    inputs: Any
    targets: Any
    lengths: Any = None
    carry: bool = False

    @property
    def tokens(self) -> int:
        """The number of input steps that are read (Σ lengths)."""
        T, B = self.inputs.shape[:2]
        return int(T * B) if self.lengths is None else int(self.lengths.sum())


class TokenStreams:
    """One long sequence of token ids as `batch_size` streams read in chunks of `seq_len` steps.

    ids: 1-D ints (N,), N ≥ batch_size + 1. Targets are the next id (language modelling).
    `to(asarray)` moves the whole (L,B) input and target arrays to a device once; chunks
    are then views of them (row slices, C-contiguous).
    """

    def __init__(self, ids, batch_size: int, seq_len: int):
        ids = np.asarray(ids) if array_module(ids) is np else ids
        if ids.ndim != 1 or np.dtype(ids.dtype).kind not in "iu":
            raise ValueError(f"ids must be a 1-D array of int token ids, got shape {ids.shape} dtype {ids.dtype}")
        _check_positive(batch_size, "batch_size")
        _check_positive(seq_len, "seq_len")
        length = (ids.shape[0] - 1) // batch_size
        if length < 1:
            raise ValueError(f"ids must hold at least batch_size + 1 = {batch_size + 1} tokens, got {ids.shape[0]}")
        self.batch_size, self.seq_len, self.length = batch_size, seq_len, length
        used = ids[: batch_size * length + 1].astype(np.int64)
        self.X = used[:-1].reshape(batch_size, length).T.copy()    # (L,B): stream b at column b
        self.Y = used[1:].reshape(batch_size, length).T.copy()

    def __len__(self) -> int:
        return -(-self.length // self.seq_len)

    @property
    def tokens_per_epoch(self) -> int:
        return self.length * self.batch_size

    def to(self, asarray) -> "TokenStreams":
        """A copy whose arrays are `asarray(X)`, `asarray(Y)` (e.g. a backend's `asarray`)."""
        moved = object.__new__(TokenStreams)
        moved.__dict__.update(self.__dict__, X=asarray(self.X), Y=asarray(self.Y))
        return moved

    def shard(self, rank: int, size: int) -> "TokenStreams":
        """Rank `rank`'s streams (columns) of `size` ranks: every rank needs at least one."""
        if self.batch_size < size:
            raise ValueError(f"batch_size (streams in all) must be at least the {size} ranks, got {self.batch_size}")
        columns = part_of(np.arange(self.batch_size), rank, size)
        part = object.__new__(TokenStreams)
        part.__dict__.update(self.__dict__, batch_size=len(columns), X=self.X[:, columns].copy(),
                             Y=self.Y[:, columns].copy())
        return part

    def iter_epoch(self, rng=None) -> Iterator[Batch]:
        """Chunks in stream order (the order never shuffles: states carry from chunk to chunk)."""
        for start in range(0, self.length, self.seq_len):
            stop = min(start + self.seq_len, self.length)
            yield Batch(self.X[start:stop], self.Y[start:stop], None, start > 0)


class SentenceBatches:
    """Independent sequences padded into batches, shuffled each epoch when `rng` is given.

    inputs: a list of token-id arrays (L_i,) or float arrays (L_i, n);
    targets: a list of (L_i,) int arrays (output "all": tagging, language models; a
    negative target takes no loss) or a sequence of ints, one per sequence (output "last").
    Each batch is time-major with T = its longest length; padding reads id 0 (or zeros)
    and carries target −1, and `lengths` tells the model where each sequence ends.

    shuffle: each epoch draws a new order of the sequences (fresh batches every epoch);
    bucket: the sequences are sorted by length into fixed batches once (little padding: a
    batch of short sentences runs short), and each epoch shuffles the order of the batches.
    Fixed batches (bucket, or shuffle=False) are padded once, and `to(asarray)` moves them
    to the device once; shuffled ones are padded on the host as they are drawn.
    """

    def __init__(self, inputs: Sequence, targets: Sequence, batch_size: int, *, shuffle: bool = True,
                 bucket: bool = False):
        _check_positive(batch_size, "batch_size")
        if len(inputs) != len(targets):
            raise ValueError(f"inputs and targets must have the same length, got {len(inputs)} and {len(targets)}")
        if len(inputs) == 0:
            raise ValueError("inputs must hold at least one sequence, got none")
        self.inputs = [np.asarray(x) for x in inputs]
        self.per_step = np.ndim(targets[0]) == 1
        self.targets = [np.asarray(y, np.int64) for y in targets]
        for i, (x, y) in enumerate(zip(self.inputs, self.targets)):
            if self.per_step and y.shape != x.shape[:1]:
                raise ValueError(f"targets[{i}] must have one target per step, shape {x.shape[:1]}, got {y.shape}")
            if not self.per_step and y.ndim != 0:
                raise ValueError(f"targets[{i}] must be one int class (output 'last'), got shape {y.shape}")
        self.batch_size, self.shuffle = batch_size, shuffle
        self.fixed = None
        if bucket or not shuffle:
            order = np.argsort([len(x) for x in self.inputs], kind="stable") if bucket else np.arange(len(inputs))
            self.fixed = [self.batch(order[start:start + batch_size]) for start in range(0, len(order), batch_size)]

    def __len__(self) -> int:
        return -(-len(self.inputs) // self.batch_size)

    def to(self, asarray) -> "SentenceBatches":
        """A copy whose fixed batches hold `asarray(inputs)`, `asarray(targets)` (lengths stay on
        the host, where the trainer counts tokens); shuffled batches are left to move per step."""
        if self.fixed is None:
            return self
        moved = object.__new__(SentenceBatches)
        moved.__dict__.update(self.__dict__)
        moved.fixed = [b._replace(inputs=asarray(b.inputs), targets=asarray(b.targets)) for b in self.fixed]
        return moved

    @property
    def tokens_per_epoch(self) -> int:
        return sum(len(x) for x in self.inputs)

    def iter_epoch(self, rng=None) -> Iterator[Batch]:
        """The epoch's batches: in an order drawn from `rng` (when given and `shuffle`), else in
        file order (or, bucketed, shortest first)."""
        shuffled = rng is not None and self.shuffle
        if self.fixed is not None:
            order = rng.permutation(len(self.fixed)) if shuffled else range(len(self.fixed))
            yield from (self.fixed[i] for i in order)
            return
        count = len(self.inputs)
        order = rng.permutation(count) if shuffled else np.arange(count)
        for start in range(0, count, self.batch_size):
            yield self.batch(order[start:start + self.batch_size])

    def batch(self, indices) -> Batch:
        """The padded batch of the sequences at `indices`."""
        xs = [self.inputs[i] for i in indices]
        lengths = np.array([len(x) for x in xs], np.int64)
        T, B = max(int(lengths.max()), 1), len(xs)
        inputs = np.zeros((T, B) + xs[0].shape[1:], xs[0].dtype)
        for b, x in enumerate(xs):
            inputs[: len(x), b] = x
        if not self.per_step:
            return Batch(inputs, np.array([int(self.targets[i]) for i in indices], np.int64), lengths)
        targets = np.full((T, B), -1, np.int64)
        for b, i in enumerate(indices):
            targets[: lengths[b], b] = self.targets[i]
        return Batch(inputs, targets, lengths)


def shard(source, rank: int, size: int):
    """Rank `rank`'s part of every batch of `source` among `size` ranks: `source.shard(rank,
    size)` where the source has its own (TokenStreams), else `Shard(source, rank, size)`."""
    check_rank(rank, size)
    if isinstance(source, Shard):
        raise ValueError(f"this source already is part {source.rank} of {source.size}")
    return source.shard(rank, size) if hasattr(source, "shard") else Shard(source, rank, size)


class MappedSource:
    """A source whose batches are another source's, each passed through `map_batch(batch, rng)`
    as it comes (after the source's own draws from the epoch's rng); its length and tokens per
    epoch are the source's."""

    def __init__(self, source):
        self.source = source

    def __len__(self) -> int:
        return len(self.source)

    @property
    def tokens_per_epoch(self) -> int:
        return self.source.tokens_per_epoch

    def iter_epoch(self, rng=None) -> Iterator[Batch]:
        for batch in self.source.iter_epoch(rng):
            yield self.map_batch(batch, rng)

    def map_batch(self, batch: Batch, rng) -> Batch:
        raise NotImplementedError


class Shard(MappedSource):
    """Rank `rank`'s part of every batch a source yields (`part_of_batch`), in the source's
    epoch order: a rank draws the whole global batch (the generator's draws stay those of
    one process) and keeps its contiguous columns."""

    def __init__(self, source, rank: int, size: int):
        check_rank(rank, size)
        super().__init__(source)
        self.rank, self.size = rank, size

    def map_batch(self, batch: Batch, rng) -> Batch:
        return part_of_batch(batch, self.rank, self.size)


def part_of_batch(batch: Batch, rank: int, size: int) -> Batch:
    """Rank `rank`'s contiguous columns of `batch`, cut to their longest length. A rank left
    without a column (a last batch of fewer sequences than ranks) reads one empty sequence:
    length 0, no target, so it adds nothing to the sums and still takes part in the step."""
    T, B = batch.inputs.shape[:2]
    columns = part_of(np.arange(B), rank, size)
    per_step = batch.targets.ndim == 2
    if len(columns) == 0:
        targets = np.full((1, 1) if per_step else (1,), -1, np.int64)
        inputs = np.zeros((1, 1) + tuple(batch.inputs.shape[2:]), batch.inputs.dtype)
        return Batch(inputs, targets, np.zeros(1, np.int64), batch.carry)
    cut = slice(int(columns[0]), int(columns[-1]) + 1)
    lengths = None if batch.lengths is None else batch.lengths[cut]
    steps = T if lengths is None else max(int(lengths.max()), 1)
    targets = batch.targets[:steps, cut] if per_step else batch.targets[cut]
    return Batch(batch.inputs[:steps, cut], targets, lengths, batch.carry)


def _check_positive(value, name):
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
