"""Word dropout: training batches that read some words as a coarser id, redrawn every epoch.

Classification (Iyyer et al. 2015) reads a dropped word as the unknown id; tagging reads it
as its spelling signature, so the signature rows of U learn from many more words than the
rare ones (Kiperwasser and Goldberg 2016 drop each word w with chance α / (α + count(w))).
"""
from __future__ import annotations

import numpy as np

from ..batches import MappedSource


class WordDropout(MappedSource):
    """A training source whose batches read each word id i as `unk_id` (an int, or per id: an
    int array (n,) of the id each word reads as) with probability `p` (a float, or per id: an
    array (n,) of chances), the mask drawn from the epoch's `rng` (so resuming replays it).
    Without an rng (evaluation) the words are read as they are."""

    def __init__(self, source, p, unk_id):
        p = np.asarray(p, np.float64)
        if not np.all((p >= 0.0) & (p < 1.0)):
            raise ValueError(f"word_dropout must lie in [0, 1), got {p if p.ndim == 0 else 'an array outside it'}")
        unk_id = np.asarray(unk_id, np.int64)
        if p.ndim > 1 or unk_id.ndim > 1 or (p.ndim == unk_id.ndim == 1 and len(p) != len(unk_id)):
            raise ValueError(f"word_dropout and unk_id must be scalars or per-id arrays (n,) of one length, "
                             f"got shapes {p.shape} and {unk_id.shape}")
        super().__init__(source)
        self.p, self.unk_id = p, unk_id

    def map_batch(self, batch, rng):
        if rng is None or not np.any(self.p > 0):
            return batch
        ids = batch.inputs
        chance = self.p[ids] if self.p.ndim else self.p
        drop = rng.random(ids.shape) < chance
        return batch._replace(inputs=np.where(drop, self.unk_id[ids] if self.unk_id.ndim else self.unk_id, ids))


def frequency_dropout(counts, alpha: float):
    """Per-id chances α / (α + count) (Kiperwasser and Goldberg 2016) from counts (n,) of each
    id's training words: a word seen once is dropped often, a frequent word almost never."""
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha!r}")
    counts = np.asarray(counts, np.float64)
    return np.where(counts > 0, alpha / (alpha + counts), 0.0)
