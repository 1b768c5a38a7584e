"""Data parallelism's pieces in one process: the shards of the data sources are exactly the
parts of the global batches, and the flat all-reduce buffer packs and unpacks the gradients
(on the CUDA backend too: the NCCL path's buffer, under the simulator)."""
import os
import subprocess
import sys

import numpy as np
import pytest

from gpurnn.allreduce import FlatLayout
from gpurnn.backends import get_backend
from gpurnn.batches import SentenceBatches, TokenStreams, shard
from gpurnn.distributed import SIZE_VARIABLES, launched_as_ranks, world
from gpurnn.model import Params


def test_stream_shards_are_the_global_streams_in_rank_order():
    ids = np.arange(203)
    whole = TokenStreams(ids, 6, 7)
    parts = [shard(whole, rank, 3) for rank in range(3)]
    assert [p.batch_size for p in parts] == [2, 2, 2] and all(len(p) == len(whole) for p in parts)
    for chunk, *pieces in zip(whole.iter_epoch(), *(p.iter_epoch() for p in parts)):
        assert np.array_equal(np.concatenate([p.inputs for p in pieces], axis=1), chunk.inputs)
        assert np.array_equal(np.concatenate([p.targets for p in pieces], axis=1), chunk.targets)
        assert all(p.carry == chunk.carry for p in pieces)
    with pytest.raises(ValueError, match="at least the 7 ranks"):
        shard(whole, 0, 7)
    with pytest.raises(ValueError, match="rank must be an int in"):
        shard(whole, 3, 3)


@pytest.mark.parametrize("options", [{}, {"bucket": True}, {"shuffle": False}])
def test_sentence_shards_split_every_global_batch(options):
    rng = np.random.default_rng(1)
    xs = [rng.integers(0, 5, rng.integers(1, 9)) for _ in range(13)]    # 13 = 2 batches of 6 + 1
    ys = [x[::-1].copy() for x in xs]
    whole = SentenceBatches(xs, ys, 6, **options)
    parts = [shard(whole, rank, 3) for rank in range(3)]
    epochs = [list(source.iter_epoch(np.random.default_rng(7))) for source in (whole, *parts)]
    assert all(len(e) == len(whole) == 3 for e in epochs)
    for batch, *pieces in zip(*epochs):
        read = [sorted(map(tuple, _sequences(p))) for p in pieces]
        assert sorted(sum(read, [])) == sorted(map(tuple, _sequences(batch)))
    single = [i for i, batch in enumerate(epochs[0]) if batch.inputs.shape[1] == 1][0]   # the one-sentence batch
    assert [e[single].lengths.tolist() for e in epochs[2:]] == [[0], [0]]            # ranks 1, 2 read nothing
    assert epochs[2][single].targets.tolist() == [[-1]]                                # and take no loss
    with pytest.raises(ValueError, match="already is part 1 of 3"):
        shard(parts[1], 0, 2)


def test_word_dropout_shards_keep_the_global_masks():
    from gpurnn.tasks.classify import WordDropout

    rng = np.random.default_rng(3)
    xs = [rng.integers(1, 9, rng.integers(1, 6)) for _ in range(10)]
    whole = WordDropout(SentenceBatches(xs, [int(x[0] % 2) for x in xs], 4), 0.5, unk_id=0)
    parts = [shard(whole, rank, 2) for rank in range(2)]
    epochs = [list(source.iter_epoch(np.random.default_rng(5))) for source in (whole, *parts)]
    for batch, *pieces in zip(*epochs):
        assert sorted(map(tuple, sum((_sequences(p) for p in pieces), []))) == sorted(map(tuple, _sequences(batch)))
        assert np.array_equal(np.concatenate([p.targets for p in pieces]), batch.targets)


def _sequences(batch):
    return [batch.inputs[:n, b] for b, n in enumerate(batch.lengths) if n > 0]


def test_flat_buffer_round_trip_and_sum(backend):
    be = get_backend(backend)
    rng = np.random.default_rng(2)
    shapes = [(5, 3), (3, 3), (3, 4), (3,), (4,)]
    host = [Params(*(rng.standard_normal(s) for s in shapes)) for _ in range(2)]
    layout = FlatLayout(host[0])
    assert layout.size == 15 + 9 + 12 + 3 + 4 + 2
    flats = [be.to_host(layout.pack(g.map(be.asarray), 10.5 * (i + 1), 7 + i)) for i, g in enumerate(host)]
    assert np.array_equal(flats[0][:15], host[0].U.ravel()) and flats[0][-2:].tolist() == [10.5, 7]
    grads, loss_sum, count = layout.unpack(be.asarray(flats[0] + flats[1]))   # what the all-reduce gives
    assert (loss_sum, count) == (31.5, 15)
    for name, got in grads.items():
        assert got.shape == getattr(host[0], name).shape
        assert np.array_equal(be.to_host(got), getattr(host[0], name) + getattr(host[1], name)), name


def test_a_single_process_has_no_communicator(monkeypatch):
    for name in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE", "PMIX_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert not launched_as_ranks() and world() is None
    # the command line and the trainer import gpurnn.distributed; a fresh single process never loads MPI
    loaded = subprocess.run([sys.executable, "-c", "import sys, gpurnn.cli, gpurnn.train; print('mpi4py' in sys.modules)"],
                            capture_output=True, text=True, check=True, env={k: v for k, v in os.environ.items()
                                                                            if k not in SIZE_VARIABLES + ("PMIX_RANK",)})
    assert loaded.stdout.strip() == "False", loaded.stderr
    monkeypatch.setenv("PMI_SIZE", "1")
    assert not launched_as_ranks()
    monkeypatch.setenv("PMI_SIZE", "4")
    assert launched_as_ranks()
