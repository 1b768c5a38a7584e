"""A few SGD training steps on the CUDA backend, each stage inside an NVTX range: the
workload profiling/nsys_profile.sh records (or `ncu --nvtx` where nsys is missing).

    python3 profiling/train_steps.py [T B d k STEPS]        (defaults 100 32 128 64 5)

Random token sequences (vocabulary k = n), parameters kept on the device across steps.
Ranges (domain "gpurnn"): "forward" (`gpurnn.forward`, states and logits), "backward"
(`gpurnn.bptt`: its own forward and the backward pass), "clip", "optimizer step".
"""
import sys

import numpy as np

import gpurnn
from gpurnn.backends import get_backend
from gpurnn.optim import make_optimizer
from gpurnn.profiling_ranges import nvtx_range


def main(T=100, B=32, d=128, k=64, steps=5, lr=0.1, max_norm=5.0):
    backend = get_backend("cuda")
    rng = np.random.default_rng(0)
    params = gpurnn.init_params(k, d, k, seed=0).map(backend.asarray)
    inputs = backend.asarray(rng.integers(0, k, (T, B)))
    targets = backend.asarray(rng.integers(0, k, (T, B)))
    optimizer = make_optimizer("sgd", params)
    for step in range(steps):
        with nvtx_range("forward"):
            gpurnn.forward(params, inputs, backend=backend)
        with nvtx_range("backward"):
            result = gpurnn.bptt(params, inputs, targets, backend=backend)
        with nvtx_range("clip"):
            grads, norm = gpurnn.clip_grad_norm(result.grads, max_norm)
        with nvtx_range("optimizer step"):
            optimizer.step(params, grads, lr)
        print(f"step {step}: loss/term {result.loss / result.count:.4f}  |g| {norm:.3f}", flush=True)


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:6]))
