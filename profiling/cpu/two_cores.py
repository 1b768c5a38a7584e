"""How well a 2-layer bidirectional call's phases use two cores, on the bench rows' shapes.

    .venv/bin/python profiling/cpu/two_cores.py --batch 64 256 --rounds 15

For each batch size B (T = 100, d = 128, k = 64, the rows of `profiling/bench_cpu.py`):

  products   each pair of independent products of the backward pass (dW of the two cells;
             dU and dX of layer 1; dV and G of the head), one after the other on 2 BLAS
             threads (what `gpurnn.bptt` does now) against both at once on a thread each
             with BLAS held at 1 thread;
  loops      a layer's forward + backward loops (`cpu_loops`) of one cell alone, and of both
             cells at once on a thread each (what `cpu_threads.plan` runs), BLAS at 1 thread:
             at once / alone = 1 is perfect use of the second core, 2 none.

Wall-clock medians and minima over alternating rounds. Only meaningful on an otherwise idle
machine: a loaded one starves multi-threaded BLAS most (profiling/RESULTS.md).
"""
from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.linalg.cython_blas  # noqa: F401  (SciPy's BLAS, which the loops call: load it so the limit reaches it)
from threadpoolctl import threadpool_limits

from gpurnn.backends.cpu_loops import backward_loop, forward_loop

T, N, D, K = 100, 64, 128, 64
_pool = ThreadPoolExecutor(1)


def at_once(a, b):
    """a() and b() on a thread each, BLAS at 1 thread."""
    with threadpool_limits(1):
        later = _pool.submit(b)
        a()
        later.result()


def in_turn(a, b):
    """a() then b(), each on every BLAS thread."""
    a()
    b()


def product_pairs(B, rng):
    """{name: (a, b)}: the independent products of one backward call, paired as they could run."""
    R = T * B

    def f(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    S1, D1, S2, D2 = f(R, D), f(R, D), f(R, D), f(R, D)
    X, Delta, U = f(R, 2 * D), f(R, 2 * D), f(2 * D, 2 * D)
    H, dZ, V = f(R, 2 * D), f(R, K), f(2 * D, K)
    return {"dW fw & dW bw": (lambda: S1.T @ D1, lambda: S2.T @ D2),
            "dU & dX (layer 1)": (lambda: X.T @ Delta, lambda: Delta @ U.T),
            "dV & G (head)": (lambda: H.T @ dZ, lambda: dZ @ V.T)}


def cell_loops(B, rng):
    """(fw cell's loops, bw cell's loops): each a layer's forward then backward loop of one cell."""
    XP = (0.3 * rng.standard_normal((T, B, 2 * D))).astype(np.float32)
    G = rng.standard_normal((T, B, 2 * D)).astype(np.float32)
    H, DP = np.empty((T, B, 2 * D), np.float32), np.empty((T, B, 2 * D), np.float32)
    lengths, last = np.full(B, T, np.int64), np.empty((0, 2 * D), np.float32)

    def cell(j):
        W = (rng.uniform(-1, 1, (D, D)) / np.sqrt(D)).astype(np.float32)
        WT = np.ascontiguousarray(W.T)
        S, delta, ds0 = np.zeros((T + 1, B, D), np.float32), np.empty((T, B, D), np.float32), np.zeros((B, D), np.float32)

        def run():
            forward_loop(XP, j * D, W, S, lengths, 0, j == 1, H)
            backward_loop(G, j * D, last, S, WT, lengths, 0, j == 1, delta, DP, ds0)
        return run

    return cell(0), cell(1)


def timed(fn, samples):
    start = time.perf_counter()
    fn()
    samples.append(time.perf_counter() - start)


def measure(B, rounds, threads):
    """Rows (phase, variant, median ms, min ms) for batch size B."""
    rng = np.random.default_rng(0)
    cases = {(name, variant): (lambda a=a, b=b, v=fn: v(a, b))
             for name, (a, b) in product_pairs(B, rng).items()
             for variant, fn in (("in turn, 2 BLAS threads", in_turn), ("at once, 1 thread each", at_once))}
    fw, bw = cell_loops(B, rng)
    cases[("loops fw+bw", "one cell alone")] = lambda: at_once(fw, lambda: None)
    cases[("loops fw+bw", "both cells at once")] = lambda: at_once(fw, bw)
    samples = {key: [] for key in cases}
    with threadpool_limits(threads):
        for fn in cases.values():
            fn()
        for r in range(rounds):
            for key in (list(cases) if r % 2 == 0 else list(reversed(cases))):
                timed(cases[key], samples[key])
    return [(name, variant, 1e3 * statistics.median(s), 1e3 * min(s)) for (name, variant), s in samples.items()]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[32, 64, 256], help="batch sizes B")
    parser.add_argument("--rounds", type=int, default=15, help="alternating rounds")
    parser.add_argument("--threads", type=int, default=2, help="BLAS threads where not held at 1")
    args = parser.parse_args()
    print("| B | phase | variant | median ms | min ms |\n|---|---|---|---|---|")
    for B in args.batch:
        for name, variant, med, best in measure(B, args.rounds, args.threads):
            print(f"| {B} | {name} | {variant} | {med:.2f} | {best:.2f} |")


if __name__ == "__main__":
    main()
