"""Training throughput of a streaming character model: gpurnn's Trainer, and the same loop in PyTorch.

    .venv/bin/python profiling/bench_train.py                          # gpurnn, CPU backend
    .venv/bin/python profiling/bench_train.py --backend cuda --batch 128
    /work/torchenv/bin/python profiling/bench_train.py --torch        # torch.nn.RNN + nn.Linear, same model

Both train the char-LM peer's configuration by default (hidden 256, 32 streams, chunks of 50,
Adam 2e-3, global-norm clipping at 5) on a synthetic text over `--vocab` symbols (the cost
does not depend on the text): `--warmup` untimed steps, then `--steps` timed ones. Torch reads
one-hot inputs (the same model as gpurnn's row lookup of U), carries the hidden state between
chunks and detaches it, as PyTorch's word_language_model does. The thread count is the
environment's (OPENBLAS_NUM_THREADS / OMP_NUM_THREADS; torch takes `--threads`).

gpurnn's report splits each step into `bptt` (forward + backward) and the trainer's own share
(normalisation, global norm, clipping, the optimizer update, bookkeeping).
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np


def parse():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--torch", action="store_true", help="time the PyTorch loop instead (run with torch's python)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (torch only)")
    parser.add_argument("--backend", default="cpu", help="gpurnn backend: cpu | cuda | auto")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--vocab", type=int, default=65)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=40)
    return parser.parse_args()


def synthetic_ids(args):
    return np.random.default_rng(0).integers(0, args.vocab, args.batch * args.seq_len * (args.warmup + args.steps) + 1)


def bench_gpurnn(args) -> dict:
    import gpurnn.train as train_module
    from gpurnn import init_params
    from gpurnn.batches import TokenStreams
    from gpurnn.train import TrainConfig, Trainer

    data = TokenStreams(synthetic_ids(args), args.batch, args.seq_len)
    config = TrainConfig(backend=args.backend, optimizer="adam", lr=2e-3, clip="norm", max_norm=5.0)
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
    step_s, bptt_s = wall / len(history), sum(inner) / len(inner)
    return {"side": "gpurnn", "backend": trainer.backend.name, "chars_per_s": sum(s.tokens for s in history) / wall,
            "ms_per_step": 1e3 * step_s, "ms_bptt": 1e3 * bptt_s, "ms_trainer": 1e3 * (step_s - bptt_s)}


def bench_torch(args) -> dict:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    n, B, k = args.vocab, args.batch, args.seq_len
    ids = torch.from_numpy(synthetic_ids(args))
    L = (len(ids) - 1) // B
    X, Y = ids[: B * L].reshape(B, L).T.contiguous(), ids[1: B * L + 1].reshape(B, L).T.contiguous()
    rnn, linear = torch.nn.RNN(n, args.hidden), torch.nn.Linear(args.hidden, n)
    params = [*rnn.parameters(), *linear.parameters()]
    opt = torch.optim.Adam(params, lr=2e-3)
    h, start, chunks = torch.zeros(1, B, args.hidden), None, 0
    for j, pos in enumerate(range(0, L - k + 1, k)):
        if j == args.warmup:
            start = time.perf_counter()
        out, h = rnn(torch.nn.functional.one_hot(X[pos:pos + k], n).float(), h)
        loss = torch.nn.functional.cross_entropy(linear(out).reshape(-1, n), Y[pos:pos + k].reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
        h = h.detach()
        chunks += j >= args.warmup
    wall = time.perf_counter() - start
    return {"side": "torch", "threads": torch.get_num_threads(), "chars_per_s": chunks * B * k / wall,
            "ms_per_step": 1e3 * wall / chunks}


def main():
    args = parse()
    result = bench_torch(args) if args.torch else bench_gpurnn(args)
    result.update(hidden=args.hidden, batch=args.batch, seq_len=args.seq_len, steps=args.steps)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
