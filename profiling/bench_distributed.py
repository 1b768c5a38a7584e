"""Throughput of data-parallel training: one process against N ranks on the same global batch.

    T=2; export OPENBLAS_NUM_THREADS=$T OMP_NUM_THREADS=$T NUMBA_NUM_THREADS=$T
    .venv/bin/python profiling/bench_distributed.py                       # 1 process × 2 threads
    T=1; ...; .venv/bin/mpiexec -n 2 .venv/bin/python profiling/bench_distributed.py   # 2 ranks × 1 thread

The character model of profiling/bench_train.py (hidden 256, 65 symbols, a global batch of 32
streams in chunks of 50, Adam, global-norm clipping), on a synthetic text; each rank reads
32/N streams. `--warmup` untimed steps, then `--steps` timed ones between two barriers.
Rank 0 prints one JSON line: the job's characters per second (all ranks' tokens over the
wall clock), ms per step, and the ms per step spent in the all-reduce (the `reduce` hook:
packing, the sum, unpacking; waiting for the slowest rank included).
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from gpurnn import init_params
from gpurnn.batches import TokenStreams
from gpurnn.distributed import world
from gpurnn.train import TrainConfig, Trainer


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--vocab", type=int, default=65)
    parser.add_argument("--batch", type=int, default=32, help="streams in all (the global batch)")
    parser.add_argument("--seq-len", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()
    comm = world()
    ranks = 1 if comm is None else comm.Get_size()
    ids = np.random.default_rng(0).integers(0, args.vocab, args.batch * args.seq_len * (args.warmup + args.steps) + 1)
    data = TokenStreams(ids, args.batch, args.seq_len)
    config = TrainConfig(backend="cpu", optimizer="adam", lr=2e-3, clip="norm", max_norm=5.0)
    trainer = Trainer(init_params(args.vocab, args.hidden, args.vocab, seed=0), config, comm=comm)
    trainer.fit(data, steps=args.warmup, progress=False)
    reduce_s = []
    if comm is not None:
        plain = trainer.reduce

        def timed(*values):
            start = time.perf_counter()
            result = plain(*values)
            reduce_s.append(time.perf_counter() - start)
            return result

        trainer.reduce = timed
        comm.Barrier()
    start = time.perf_counter()
    history = trainer.fit(data, steps=args.warmup + args.steps, progress=False)
    if comm is not None:
        comm.Barrier()
    wall = time.perf_counter() - start
    if comm is None or comm.Get_rank() == 0:
        print(json.dumps({"ranks": ranks, "threads": os.environ.get("OPENBLAS_NUM_THREADS"), "batch": args.batch,
                          "hidden": args.hidden, "chars_per_s": round(sum(s.tokens for s in history) * ranks / wall),
                          "ms_per_step": round(1e3 * wall / len(history), 2),
                          "ms_allreduce": round(1e3 * float(np.mean(reduce_s)), 3) if reduce_s else 0.0}))


if __name__ == "__main__":
    main()
