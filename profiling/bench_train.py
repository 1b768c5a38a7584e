"""Throughput of the trainer's step, and how much of it lies outside `bptt` (the trainer's own cost:
normalisation, global norm, clipping, the optimizer update, bookkeeping).

    .venv/bin/python profiling/bench_train.py                       # char LM, hidden 256, B 32, k 50, Adam, clip 5
    .venv/bin/python profiling/bench_train.py --backend cuda --batch 128

Streams of token ids (a synthetic text over `--vocab` symbols: the cost does not depend on
the text) are trained for `--warmup` untimed steps, then `--steps` timed ones; a callback
times each step's `bptt` by wrapping it. Prints characters per second and the split.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

import gpurnn.train as train_module
from gpurnn import init_params
from gpurnn.batches import TokenStreams
from gpurnn.train import TrainConfig, Trainer


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="cpu")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--vocab", type=int, default=65)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=50)
    parser.add_argument("--optimizer", default="adam")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()

    ids = np.random.default_rng(0).integers(0, args.vocab, args.batch * args.seq_len * (args.warmup + args.steps) + 1)
    data = TokenStreams(ids, args.batch, args.seq_len)
    config = TrainConfig(backend=args.backend, optimizer=args.optimizer, lr=2e-3, clip="norm", max_norm=5.0)
    trainer = Trainer(init_params(args.vocab, args.hidden, args.vocab, seed=0), config)
    trainer.fit(data, steps=args.warmup, progress=False)

    inner, real_bptt = [], train_module.bptt

    def timed_bptt(*a, **k):
        start = time.perf_counter()
        result = real_bptt(*a, **k)
        inner.append(time.perf_counter() - start)
        return result

    train_module.bptt = timed_bptt
    try:
        start = time.perf_counter()
        history = trainer.fit(data, steps=args.warmup + args.steps, progress=False)
        wall = time.perf_counter() - start
    finally:
        train_module.bptt = real_bptt
    tokens = sum(s.tokens for s in history)
    step_s, bptt_s = wall / len(history), sum(inner) / len(inner)
    result = {"backend": trainer.backend.name, "hidden": args.hidden, "batch": args.batch, "seq_len": args.seq_len,
              "optimizer": args.optimizer, "steps": len(history), "chars_per_s": tokens / wall,
              "ms_per_step": 1e3 * step_s, "ms_bptt": 1e3 * bptt_s, "ms_trainer": 1e3 * (step_s - bptt_s),
              "trainer_fraction": (step_s - bptt_s) / step_s}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
