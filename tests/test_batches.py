"""Data sources of the trainer: streams of one long text, padded and bucketed sentence batches."""
import numpy as np
import pytest

from gpurnn.batches import SentenceBatches, TokenStreams
from test_train import _sentences     # the same tiny random sentences as the trainer's tests


def test_token_streams_layout():
    ids = np.arange(23)
    data = TokenStreams(ids, batch_size=3, seq_len=4)     # L = (23 − 1) // 3 = 7 steps per stream
    chunks = list(data.iter_epoch())
    assert len(data) == len(chunks) == 2 and data.tokens_per_epoch == 21
    np.testing.assert_array_equal(chunks[0].inputs[:, 1], [7, 8, 9, 10])
    np.testing.assert_array_equal(chunks[1].inputs[:, 2], [18, 19, 20])
    np.testing.assert_array_equal(chunks[1].targets[:, 2], [19, 20, 21])
    assert [c.carry for c in chunks] == [False, True]
    with pytest.raises(ValueError, match="at least batch_size"):
        TokenStreams(np.arange(3), batch_size=3, seq_len=2)
    with pytest.raises(ValueError, match="seq_len must be a positive int"):
        TokenStreams(ids, batch_size=2, seq_len=0)


def test_sentence_batches_pad_and_mark():
    xs, ys = _sentences(5)
    data = SentenceBatches(xs, ys, batch_size=2)
    batch = data.batch([0, 3])
    lengths = [len(xs[0]), len(xs[3])]
    np.testing.assert_array_equal(batch.lengths, lengths)
    assert batch.inputs.shape == (max(lengths), 2)
    for b, i in enumerate([0, 3]):
        np.testing.assert_array_equal(batch.targets[: lengths[b], b], ys[i])
        assert (batch.targets[lengths[b]:, b] == -1).all()
    orders = [np.concatenate([b.lengths for b in data.iter_epoch(np.random.default_rng(s))]) for s in (0, 1)]
    assert sorted(orders[0]) == sorted(orders[1]) and len(data) == 3
    xs, labels = _sentences(4, last=True)
    assert SentenceBatches(xs, labels, 4).batch([0, 1, 2, 3]).targets.shape == (4,)
    with pytest.raises(ValueError, match="one target per step"):
        SentenceBatches(xs, [np.zeros(len(x) + 1, int) for x in xs], 2)


def test_bucketed_batches_are_fixed_sorted_and_shuffled_by_batch():
    xs, ys = _sentences(40)
    data = SentenceBatches(xs, ys, batch_size=8, bucket=True)
    epochs = [list(data.iter_epoch(np.random.default_rng(s))) for s in (0, 1)]
    maxima = sorted(int(b.lengths.max()) for b in epochs[0])
    assert maxima == sorted(int(b.lengths.max()) for b in epochs[1])
    assert sorted(np.concatenate([b.lengths for b in epochs[0]])) == sorted(len(x) for x in xs)
    ordered = list(data.iter_epoch(None))                  # no rng: shortest batches first
    assert [int(b.lengths.max()) for b in ordered] == maxima
    assert sum(b.inputs.size for b in ordered) < sum(b.inputs.size for b in SentenceBatches(xs, ys, 8).iter_epoch())
