"""Numbered CPU backend versions: validate each against the NumPy reference, then time it per phase.

    .venv/bin/python profiling/cpu/harness.py                 # every version, every bench row
    .venv/bin/python profiling/cpu/harness.py --versions v1 current --rows 3 --threads 1
    .venv/bin/python profiling/cpu/harness.py --versions v2 current --threads 2 --race

llm.c's dev/cuda idea on the CPU: each version is a backend object (`gpurnn.backends.base`)
that `gpurnn.bptt` runs as is. A version is timed only after its loss, gradients and ds0
agree with the brute-force per-term reference of `tests/helpers.py` (float64, every mode
on a small problem, relative error < 1e-9). Timings split one call into the phases of
`gpurnn/bptt.py` (median CPU seconds of the process over repeats, after a warm-up),
plus the whole `bptt` call in wall-clock seconds.

CPU time rather than wall time, and 1 BLAS thread by default: on a shared, loaded machine
it is the figure that stays put between runs (wall time with 2 spinning BLAS threads does not).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import scipy.linalg.cython_blas  # noqa: F401  (load SciPy's BLAS now, so the thread limit reaches it)
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "profiling"), str(ROOT / "profiling/cpu")]

import gpurnn  # noqa: E402
from bench_cpu import ROWS  # noqa: E402
from gpurnn.backends.cpu import CPUBackend  # noqa: E402
from tests import helpers  # noqa: E402
from v1_npdot import CPUBackend as V1  # noqa: E402
from v2_step_threads import StepThreadsBackend as V2  # noqa: E402

# v1 the first backend; v2 its loops rewritten, one multi-threaded BLAS call per step;
# current (v3) v2's loops on batch slices, one thread each (see each file's docstring).
VERSIONS = {"v1": V1, "v2": V2, "current": CPUBackend}
PHASES = ("project", "recurrence_forward", "output_affine", "softmax_xent", "dV", "G",
          "recurrence_backward", "dW", "dU", "db")


def validate(backend) -> float:
    """Largest relative error of loss, grads and ds0 against the float64 reference over modes."""
    worst = 0.0
    for seed, (output, truncate, tokens) in enumerate([("all", None, False), ("all", 2, True),
                                                       ("last", None, True), ("last", 3, False)]):
        case = helpers.make_case(seed, T=7, B=9, n=5, d=6, k=3, tokens=tokens, output=output,
                                 truncate=truncate, lengths=True, s0=True)
        got = gpurnn.bptt(case.params, case.inputs, case.targets, backend=backend, **case.kwargs())
        loss, grads, ds0 = helpers.reference_bptt(case)
        pairs = [(got.loss, loss), (got.ds0, ds0)] + [(getattr(got.grads, f), grads[f]) for f in helpers.FIELDS]
        worst = max(worst, *(helpers.relative_error(a, b) for a, b in pairs))
    return worst


def problem(T, B, n, d, k, seed=0):
    """float32 weights, dense inputs and targets of one bench row."""
    rng = np.random.default_rng(seed)
    bound = 1 / np.sqrt(d)
    shapes = {"U": (n, d), "W": (d, d), "V": (d, k), "b": (d,), "c": (k,)}
    params = gpurnn.Params(**{f: rng.uniform(-bound, bound, s).astype(np.float32) for f, s in shapes.items()})
    return params, rng.standard_normal((T, B, n)).astype(np.float32), rng.integers(0, k, (T, B))


CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}


def phase_times(be, params, x, targets, clock=time.process_time):
    """Seconds (of `clock`) of each phase of one bptt call, in `gpurnn/bptt.py`'s order."""
    (T, B, n), d = x.shape, params.hidden
    lengths, s0, flat_targets = np.full(B, T), np.zeros((B, d), np.float32), targets.reshape(-1)
    out = {}

    def run(name, fn, *args, **kw):
        start = clock()
        value = fn(*args, **kw)
        out[name] = clock() - start
        return value

    XP = run("project", be.project_inputs, x, params.U, params.b, lengths)
    S = run("recurrence_forward", be.recurrence_forward, XP, params.W, s0, lengths, 0)
    visible = S[1:].reshape(T * B, d)
    Z = run("output_affine", be.affine, visible, params.V, params.c)
    _, _, dZ = run("softmax_xent", be.softmax_xent, Z, flat_targets)
    run("dV", be.matmul, visible, dZ, trans_a=True)
    G = run("G", be.matmul, dZ, params.V, trans_b=True).reshape(T, B, d)
    delta, _ = run("recurrence_backward", be.recurrence_backward, G, None, S, params.W, lengths, 0, None)
    flat = delta.reshape(T * B, d)
    run("dW", be.matmul, S[:-1].reshape(T * B, d), flat, trans_a=True)
    run("dU", be.input_grad, x, delta, n, lengths)
    run("db", be.sum_rows, flat)
    return out


def profile(be, shape, repeats, clock):
    """Median phase times (of `clock`) and the median wall time of a whole bptt call (seconds)."""
    params, x, targets = problem(*shape)
    samples = [phase_times(be, params, x, targets, clock) for _ in range(repeats + 1)][1:]
    phases = {p: statistics.median(s[p] for s in samples) for p in PHASES}
    walls = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        gpurnn.bptt(params, x, targets, backend=be)
        walls.append(time.perf_counter() - start)
    return phases, statistics.median(walls[1:])


def race(backends, shape, repeats):
    """Whole bptt calls of every version in turn (interleaved, so all see the same load):
    {name: (min, median) wall seconds}."""
    params, x, targets = problem(*shape)
    walls = {name: [] for name in backends}
    for rep in range(repeats + 1):
        for name, be in backends.items():
            start = time.perf_counter()
            gpurnn.bptt(params, x, targets, backend=be)
            if rep:
                walls[name].append(time.perf_counter() - start)
    return {name: (min(w), statistics.median(w)) for name, w in walls.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", nargs="*", default=list(VERSIONS))
    parser.add_argument("--rows", type=int, nargs="*", default=range(len(ROWS)), help="indices into ROWS")
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--clock", choices=CLOCKS, default="cpu",
                        help="phase times in process CPU time (steady under load) or wall time (quiet machine)")
    parser.add_argument("--race", action="store_true", help="only interleaved wall times of whole calls")
    args = parser.parse_args()
    threadpool_limits(args.threads)
    backends = {}
    for name in args.versions:
        be = VERSIONS[name]()
        error = validate(be)
        print(f"## {name}: max relative error vs reference {error:.1e}" + ("" if error < 1e-9 else ", not timed"))
        if error < 1e-9:
            backends[name] = be
    if args.race:
        print("| row | " + " | ".join(f"{name} min / median wall ms" for name in backends) + " |")
        print("|---" * (len(backends) + 1) + "|")
        for i in args.rows:
            times = race(backends, ROWS[i], args.repeats)
            print(f"| {ROWS[i]} | " + " | ".join(f"{1e3 * a:.1f} / {1e3 * b:.1f}" for a, b in times.values()) + " |")
        return
    for name, be in backends.items():
        print(f"## {name}")
        print("| row | " + " | ".join(PHASES) + f" | sum ({args.clock} ms) | bptt wall ms |\n" + "|---" * (len(PHASES) + 3) + "|")
        for i in args.rows:
            phases, wall = profile(be, ROWS[i], args.repeats, CLOCKS[args.clock])
            cells = " | ".join(f"{1e3 * phases[p]:.2f}" for p in PHASES)
            print(f"| {ROWS[i]} | {cells} | {1e3 * sum(phases.values()):.2f} | {1e3 * wall:.2f} |")


if __name__ == "__main__":
    main()
