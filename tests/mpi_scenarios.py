"""Run under `mpiexec -n N python tests/mpi_scenarios.py SCENARIO` by tests/test_distributed_mpi.py.

equivalence: for streams (carried states), shuffled sentences with lengths (the last batch
    leaving ranks without a sentence) and bucketed float32 classification, N ranks with B
    sequences each train K steps; rank 0 checks their parameters and streams' states
    against one process with batch N·B (float64: 1e-12 relative, float32: 1e-5); then the
    ranks stop together at a deadline (`max_seconds`) though their clocks differ, and
    ranks started from different parameters must be told so by the fingerprint check.
fail: rank 1's data holds a token id out of range; its error must end the whole job.
nccl (a real GPU, one rank per GPU): the CUDA backend sums through NCCL, the gradients on
    the device; N ranks against one process on the whole batch, float64.
Prints `ok SCENARIO` on rank 0 when every check passed.
"""
import sys
import time

import numpy as np
from mpi4py import MPI

from gpurnn.batches import SentenceBatches, TokenStreams
from gpurnn.arrays import to_host
from gpurnn.model import init_params
from gpurnn.train import TrainConfig, Trainer

comm = MPI.COMM_WORLD
N, B = comm.Get_size(), 2


def sentences(count, n_in, seed, per_step=True):
    rng = np.random.default_rng(seed)
    xs = [rng.integers(0, n_in, rng.integers(1, 7)) for _ in range(count)]
    ys = [rng.integers(0, 5, len(x)) for x in xs] if per_step else [int(rng.integers(0, 5)) for _ in xs]
    return xs, ys


def relative_gap(a, b) -> float:
    return max(float(np.abs(x - y).max() / max(np.abs(y).max(), 1e-300)) for x, y in zip(a, b))


def compare(name, make_data, config, dtype, tol, steps=None, epochs=None):
    """N ranks on shards of make_data(N·B) against one process on all of it."""
    params = init_params(6, 8, 6, seed=3, dtype=dtype)
    trainer = Trainer(params, config, comm=comm)
    trainer.fit(make_data(N * B), steps=steps, epochs=epochs, progress=False)
    carry = trainer.parallel.gather_rows(trainer.carry)
    if comm.Get_rank() != 0:
        return
    single = Trainer(params, config)
    single.fit(make_data(N * B), steps=steps, epochs=epochs, progress=False)
    gap = relative_gap(trainer.host_params(), single.host_params())
    if "streams" in name:                               # the states carried to the next chunk
        gap = max(gap, relative_gap([carry], [to_host(single.carry)]))
    assert trainer.step_count == single.step_count, (name, trainer.step_count, single.step_count)
    assert gap <= tol, f"{name}: {N} ranks differ from one process by {gap:.3g} relative (tolerance {tol})"
    print(f"{name}: {N} ranks x {B} vs 1 x {N * B}: relative gap {gap:.2e}", flush=True)


def equivalence():
    ids = np.random.default_rng(0).integers(0, 6, 400)
    f64 = TrainConfig(backend="cpu", lr=0.05, max_norm=0.5, seed=1)           # clipping on the global norm acts
    compare("streams", lambda batch: TokenStreams(ids, batch, 5), f64, "float64", 1e-12, steps=5)
    xs, ys = sentences(5 * B * N + 1, 6, seed=2)                                # last batch: one sentence
    compare("sentences", lambda batch: SentenceBatches(xs, ys, batch), f64, "float64", 1e-12, epochs=2)
    xs, labels = sentences(4 * B * N + N - 1, 6, seed=4, per_step=False)
    last = TrainConfig(backend="cpu", output="last", optimizer="sgd", lr=0.1, seed=5)
    compare("bucketed", lambda batch: SentenceBatches(xs, labels, batch, bucket=True), last, "float32", 1e-5,
            epochs=2)
    slower = [lambda stats: time.sleep(0.002 * comm.Get_rank())]              # the ranks' clocks disagree
    timed = Trainer(init_params(6, 8, 6, seed=3), f64, comm=comm, callbacks=slower)
    timed.fit(TokenStreams(ids, N * B, 5), steps=10**6, max_seconds=0.3, progress=False)
    assert len(set(comm.allgather(timed.step_count))) == 1, "a deadline stopped the ranks at different steps"
    mismatched = Trainer(init_params(6, 8, 6, seed=comm.Get_rank()), f64, comm=comm)
    try:
        mismatched.fit(TokenStreams(ids, N * B, 5), steps=1, progress=False)
    except RuntimeError as error:
        assert "ranks [1" in str(error) and "disagree with rank 0" in str(error), error
    else:
        raise AssertionError("ranks with different parameters were not detected")


def fail():
    ids = np.random.default_rng(0).integers(0, 6, 400)
    if comm.Get_rank() == 1:
        ids[200] = 99                                   # in rank 1's first chunk, out of range for n_in = 6
    trainer = Trainer(init_params(6, 8, 6, seed=3), TrainConfig(backend="cpu"), comm=comm)
    trainer.fit(TokenStreams(ids, N * B, 5), steps=50, progress=False)


def nccl():
    ids = np.random.default_rng(0).integers(0, 6, 400)
    config = TrainConfig(backend="cuda", lr=0.05, max_norm=0.5, seed=1)
    probe = Trainer(init_params(6, 8, 6, seed=3), config, comm=comm)
    assert probe.parallel.transport.name == "nccl", probe.parallel.transport.name
    compare("nccl streams", lambda batch: TokenStreams(ids, batch, 5), config, "float64", 1e-12, steps=5)


if __name__ == "__main__":
    {"equivalence": equivalence, "fail": fail, "nccl": nccl}[sys.argv[1]]()
    if comm.Get_rank() == 0:
        print(f"ok {sys.argv[1]}", flush=True)
