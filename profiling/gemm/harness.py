"""Numbered Numba GEMM versions: validate each against NumPy first, then (on a GPU) time them
against cuBLAS through CuPy. llm.c's dev/cuda layout.

    NUMBA_ENABLE_CUDASIM=1 .venv/bin/python profiling/gemm/harness.py --check-only   # here
    python3 profiling/gemm/harness.py                                                # on a GPU

Check: odd shapes, random float32 inputs, the output poisoned with NaN before each run (an
unwritten element fails), ‖C − ref‖/‖ref‖ against a float64 reference must be < 1e-5.
Time: CUDA events, 2 warm-up runs, median of `repeats`, on the products the engine does for
(T·B, d) = (12800, 1024): X W (12800×1024 · 1024×1024) and a (256×1024 · 1024×1024) step.
"""
import argparse
import importlib
import pathlib
import statistics
import sys

import numpy as np
from numba import cuda

sys.path.insert(0, str(pathlib.Path(__file__).parent))
VERSIONS = ("v1_naive", "v2_tiled", "v3_register_blocked")
CHECK_SHAPES = [(5, 7, 3), (17, 33, 65)]
TIME_SHAPES = [(12800, 1024, 1024), (256, 1024, 1024), (1024, 12800, 1024)]


def check(version, shapes):
    launch = importlib.import_module(version).launch
    rng = np.random.default_rng(0)
    worst = 0.0
    for M, K, N in shapes:
        A, B = rng.standard_normal((M, K)).astype(np.float32), rng.standard_normal((K, N)).astype(np.float32)
        C = cuda.to_device(np.full((M, N), np.nan, np.float32))
        launch(cuda.to_device(A), cuda.to_device(B), C)
        ref = A.astype(np.float64) @ B
        err = np.linalg.norm(C.copy_to_host() - ref) / np.linalg.norm(ref)
        assert np.isfinite(err) and err < 1e-5, f"{version} {M}x{K}x{N}: relative error {err}"
        worst = max(worst, err)
    return worst


def time_all(repeats):
    import cupy as cp

    rows = []
    for M, K, N in TIME_SHAPES:
        A = cp.random.standard_normal((M, K), dtype=cp.float32)
        B = cp.random.standard_normal((K, N), dtype=cp.float32)
        C = cp.empty((M, N), cp.float32)
        views = [cuda.as_cuda_array(x, sync=False) for x in (A, B, C)]
        calls = {v: (lambda launch=importlib.import_module(v).launch: launch(*views)) for v in VERSIONS}
        calls["cublas"] = lambda: cp.matmul(A, B, out=C)
        for name, call in calls.items():
            for _ in range(2):
                call()
            times = []
            for _ in range(repeats):
                start, stop = cp.cuda.Event(), cp.cuda.Event()
                start.record()
                call()
                stop.record()
                stop.synchronize()
                times.append(cp.cuda.get_elapsed_time(start, stop))
            ms = statistics.median(times)
            rows.append((M, K, N, name, ms, 2 * M * K * N / (ms * 1e-3) / 1e12))
    print(f"{'M':>6} {'K':>6} {'N':>6} {'version':<22} {'ms':>8} {'TFLOP/s':>8}")
    for M, K, N, name, ms, tf in rows:
        print(f"{M:>6} {K:>6} {N:>6} {name:<22} {ms:>8.3f} {tf:>8.2f}")
    return rows


def main():
    parser = argparse.ArgumentParser(description="Numba GEMM versions: check against NumPy, time against cuBLAS")
    parser.add_argument("--check-only", action="store_true", help="validate only (the simulator can do this)")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    for version in VERSIONS:
        print(f"{version}: max relative error {check(version, CHECK_SHAPES):.2e}")
    if not args.check_only:
        time_all(args.repeats)


if __name__ == "__main__":
    main()
