"""Every kernel family of the CUDA backend once, at small sizes, checked against the CPU backend.

    python3 profiling/gpu_smoke.py [--jobs N] [--timeout S] [FAMILY ...]      (a GPU; profiling/gpu_check.sh)

Families, in the order a short GPU slot values them (all by default; name some to run those):

  step        the step path through bptt (gather_rows, cuBLAS, softmax_xent, sum_rows,
              bucket_keys/bucket_sum, step_forward/step_backward fused and with a separate
              product, sum_chains for truncation), token and dense inputs, outputs all/last
  block       persistent block kernels: forward, exact and truncated backward (W rows in registers)
  optin       a block kernel asking for more than 48 KB of dynamic shared memory (the opt-in)
  coop        the cooperative kernels: 9 blocks, a grid barrier per step (cudadevrt linked)
  cells       a layer's two directions in one launch: paired block (exact, truncated) and
              cooperative (2 × 9 blocks, one grid) kernels, each cell equal to its launch alone;
              the backend's routes; a 2-layer bidirectional bptt (paired persistent and
              paired step paths) against the CPU
  pairs       paired 8-byte state loads, block and cooperative
  default     bptt through the default backend (the planner's own choice at B = 8, d = 256)
  numba-gemm  the step path on the tiled Numba GEMM instead of cuBLAS
  trainer     three Trainer steps (Adam kernels, clipping) against the CPU trainer
  stream      bptt inside `with cupy.cuda.Stream()` equals bptt on the default stream

Each family runs in a process of its own, N at a time (default: one per core), each under
its own timeout (default 120 s), so a hang or a sticky CUDA error (an illegal address spoils
the process's context) loses that family alone; each family's output is printed, its lines
marked `[family]`, as it ends, then its `FAMILY: ok | FAILED | TIMED OUT` line. Kernels
come from Numba's disk cache (NUMBA_CACHE_DIR) where an earlier process compiled them.
`--jobs 0` runs the families one after another in this process (profiling/sanitize.sh, under
compute-sanitizer): a family's failure is caught and printed with its message, and the next one
runs. Each process's last lines give its compiled persistent kernels' registers per thread, the
block size they allow and their local memory (the figures `persistent_plan.launch_blocker`
checks). The last line is `verdict:`; exit status 1 when a family failed. GPU_SMOKE_NO_POOL=1
turns CuPy's memory pool off (memcheck then sees each array's own bounds).
GPU_CHECK_SIMULATE=hang:FAMILY (the dry run, tests/test_gpu_check.py) makes that family hang.
"""
import argparse
import os
import subprocess
import sys
import time
import traceback
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))   # siblings, also under python -P / PYTHONSAFEPATH

import numpy as np  # noqa: E402

import persistent_smoke as ps  # noqa: E402
from gpurnn.kernels import persistent_plan as pp  # noqa: E402

F32 = np.float32


def compare(label, got, want, tol):
    """got and want BPTTResults: the loss, every gradient and ds0 within `tol` (relative)."""
    errors = {"loss": abs(got.loss - want.loss) / max(abs(want.loss), 1e-30)}
    for (name, a), b in zip(got.grads.items(), want.grads):
        errors[f"d{name}"] = float(np.max(np.abs(np.asarray(a) - b)) / (np.max(np.abs(b)) + 1e-30))
    errors["ds0"] = float(np.max(np.abs(np.asarray(got.ds0) - want.ds0)) / (np.max(np.abs(want.ds0)) + 1e-30))
    worst = max(errors, key=errors.get)
    ok = got.count == want.count and all(e < tol for e in errors.values())
    print(f"{label:<44} worst {worst} {errors[worst]:.1e}  {'ok' if ok else 'MISMATCH'}", flush=True)
    return ok


def bptt_case(backend, *, T=13, B=6, n=9, d=40, k=7, tokens=True, output="all", truncate=None, dtype=F32, seed=0,
              layers=1, bidirectional=False):
    """The same random problem on `backend` and on the CPU: (ours, the CPU's)."""
    import gpurnn

    rng = np.random.default_rng(seed)
    params = gpurnn.init_params(n, d, k, seed=seed, dtype=dtype, layers=layers, bidirectional=bidirectional)
    inputs = rng.integers(0, n, (T, B)) if tokens else rng.standard_normal((T, B, n)).astype(dtype)
    lengths = rng.integers(1, T + 1, B)
    lengths[0] = T
    targets = rng.integers(-1, k, (T, B) if output == "all" else (B,))
    cells = layers * (2 if bidirectional else 1)
    s0 = (0.5 * rng.standard_normal((B, d) if cells == 1 else (cells, B, d))).astype(dtype)
    kwargs = dict(lengths=lengths, s0=s0, output=output, truncate=truncate)
    return (gpurnn.bptt(params, inputs, targets, **kwargs, backend=backend),
            gpurnn.bptt(params, inputs, targets, **kwargs, backend="cpu"))


def step_family(gemm="cublas"):
    from gpurnn.backends.cuda import CUDABackend

    ok = []
    for product in ("fused", "gemm"):
        be = CUDABackend(gemm=gemm, persistent=False, step_product=product)
        for tokens, output, truncate, dtype in ((True, "all", None, F32), (False, "last", None, np.float64),
                                                (True, "all", 2, F32)):
            got, want = bptt_case(be, tokens=tokens, output=output, truncate=truncate, dtype=dtype)
            label = f"{gemm} step-{product} {'tokens' if tokens else 'dense'} {output} τ={truncate} {np.dtype(dtype)}"
            ok.append(compare(label, got, want, 1e-4 if dtype == F32 else 1e-10))
    return all(ok)


def persistent_runs(*cases):
    """persistent_smoke.run for each (label, d, forward plan, backward plan, truncate)."""
    return all([ps.run(label, d, F32, fplan, bplan, truncate) for label, d, fplan, bplan, truncate in cases])


def block_family():
    d, B = 96, ps.B
    fwd = pp.custom_plan("block", B, d, F32, rows=2, rreg=32)
    trunc = pp.custom_plan("block", B, d, F32, rows=2, rreg=32, chains=ps.TAU + 1)
    return persistent_runs(("block fwd + truncated bwd", d, fwd, trunc, ps.TAU),
                           ("block fwd + exact bwd", d, fwd, fwd, None))


def optin_family():
    the_plan = pp.custom_plan("block", ps.B, 256, F32, rows=1, rreg=64)
    print(f"block d=256 rreg=64: {the_plan.smem} bytes of dynamic shared memory (default limit "
          f"{pp.DEFAULT_DYNAMIC_SMEM})", flush=True)
    return persistent_runs(("block opt-in fwd + exact bwd", 256, the_plan, the_plan, None))


def coop_family():
    the_plan = pp.custom_plan("coop", ps.B, 96, F32, rows=2)
    print(f"coop: grid {the_plan.grid} blocks × {the_plan.threads} threads", flush=True)
    return persistent_runs(("coop fwd + exact bwd", 96, the_plan, the_plan, None))


def pairs_family():
    block = pp.custom_plan("block", ps.B, 256, F32, rows=1, rreg=64, pairs=True)
    trunc = pp.custom_plan("block", ps.B, 128, F32, rows=2, rreg=16, chains=ps.TAU + 1, pairs=True)
    coop = pp.custom_plan("coop", ps.B, 96, F32, rows=2, pairs=True)
    fwd128 = pp.custom_plan("block", ps.B, 128, F32, rows=2, rreg=16, pairs=True)
    return persistent_runs(("block pairs fwd + exact bwd", 256, block, block, None),
                           ("block pairs fwd + truncated bwd", 128, fwd128, trunc, ps.TAU),
                           ("coop pairs fwd + exact bwd", 96, coop, coop, None))


def cells_family():
    from gpurnn.backends import cuda_recurrence
    from gpurnn.backends.cuda import CUDABackend

    d = 96
    block = pp.custom_plan("block", ps.B, d, F32, rows=2, rreg=32, cells=2)
    trunc = pp.custom_plan("block", ps.B, d, F32, rows=2, rreg=32, chains=ps.TAU + 1, cells=2)
    coop = pp.custom_plan("coop", ps.B, d, F32, rows=2, cells=2)
    print(f"cells coop: grid {coop.grid} blocks × {coop.cells} cells × {coop.threads} threads", flush=True)
    ok = [ps.run_cells("cells block fwd + truncated bwd", d, F32, block, trunc, ps.TAU),
          ps.run_cells("cells block fwd + exact bwd", d, F32, block, block, None),
          ps.run_cells("cells coop fwd + exact bwd", d, F32, coop, coop, None)]
    be = CUDABackend()
    for B, d_, truncate in ((8, 96, None), (32, 512, None), (64, 512, None), (8, 96, 3)):
        for direction in ("forward", "backward"):
            way = cuda_recurrence.route(be, direction, B, d_, F32, truncate if direction == "backward" else None, 2)
            path = "step" if way.plan is None else f"{way.plan.variant} × {way.plan.cells}"
            print(f"route {direction} B={B} d={d_} τ={truncate}: {path}: {way.reason}", flush=True)
    for persistent in (True, False):
        label = f"2-layer bidirectional {'persistent' if persistent else 'step'} τ=None"
        ok.append(compare(label, *bptt_case(CUDABackend(persistent=persistent), d=96, layers=2, bidirectional=True,
                                            tokens=False), 1e-4))
    return all(ok)


def default_family():
    from gpurnn.kernels import persistent_forward as pf

    print(f"plan at B=8, d=256: {pf.plan_forward(8, 256, F32)}", flush=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ok = [compare("default backend B=8 d=256 f32", *bptt_case("cuda", B=8, d=256, n=30, k=20), 1e-4),
              compare("default backend B=8 d=256 τ=3", *bptt_case("cuda", B=8, d=256, n=30, k=20, truncate=3), 1e-4)]
    for w in caught:
        print(f"warning: {w.category.__name__}: {w.message}", flush=True)
    return all(ok)


def trainer_family():
    import gpurnn
    from gpurnn.batches import TokenStreams
    from gpurnn.train import TrainConfig, Trainer

    ids = np.random.default_rng(1).integers(0, 11, 2000)
    finals = {}
    for backend in ("cuda", "cpu"):
        config = TrainConfig(optimizer="adam", lr=1e-2, clip="norm", max_norm=1.0, backend=backend, seed=0)
        trainer = Trainer(gpurnn.init_params(11, 32, 11, seed=0, dtype="float64"), config)
        trainer.fit(TokenStreams(ids, batch_size=4, seq_len=10), steps=3, progress=False)
        finals[backend] = trainer.host_params()
    err = max(float(np.max(np.abs(a - b))) for a, b in zip(finals["cuda"], finals["cpu"]))
    print(f"{'trainer 3 Adam steps, clip norm, float64':<44} max param diff {err:.1e}  "
          f"{'ok' if err < 1e-8 else 'MISMATCH'}", flush=True)
    return err < 1e-8


def stream_family():
    import cupy as cp

    import gpurnn

    params = gpurnn.init_params(9, 64, 7, seed=3, dtype="float32").map(cp.asarray)
    rng = np.random.default_rng(3)
    inputs, targets = cp.asarray(rng.integers(0, 9, (20, 4))), cp.asarray(rng.integers(0, 7, (20, 4)))
    want = gpurnn.bptt(params, inputs, targets, backend="cuda")
    with cp.cuda.Stream(non_blocking=True):
        got = gpurnn.bptt(params, inputs, targets, backend="cuda")
        dW = cp.asnumpy(got.grads.W)
    err = float(np.max(np.abs(dW - cp.asnumpy(want.grads.W))))
    ok = err == 0.0 and got.loss == want.loss
    print(f"{'bptt on a non-blocking CuPy stream':<44} dW diff {err:.1e}  {'ok' if ok else 'MISMATCH'}", flush=True)
    return ok


FAMILIES = {"step": step_family, "block": block_family, "optin": optin_family, "coop": coop_family,
            "cells": cells_family, "pairs": pairs_family, "default": default_family,
            "numba-gemm": lambda: step_family("numba"),
            "trainer": trainer_family, "stream": stream_family}


def kernel_figures():
    """Registers per thread, the block size they allow, local memory: each compiled persistent kernel."""
    from gpurnn.kernels import persistent_backward as pb
    from gpurnn.kernels import persistent_forward as pf

    for direction, cache in (("forward", pf._cache), ("backward", pb._cache)):
        for key, dispatcher in cache.items():
            for kernel in dispatcher.overloads.values():
                print(f"figures {direction} {key}: {kernel.regs_per_thread} registers/thread, at most "
                      f"{kernel.max_threads_per_block} threads/block, {kernel.local_mem_per_thread} B local/thread",
                      flush=True)


def simulated_hang(name):
    """GPU_CHECK_SIMULATE=hang:NAME: family NAME never ends (the dry run's stand-in for a hung kernel)."""
    if f"hang:{name}" in os.environ.get("GPU_CHECK_SIMULATE", "").split(","):
        print(f"{name}: hanging (GPU_CHECK_SIMULATE)", flush=True)
        time.sleep(3600)


def in_process(names):
    """Run the families one after another here; the names of those that failed."""
    from numba import cuda

    from gpurnn.backends.cuda_memory import cupy_module

    if os.environ.get("GPU_SMOKE_NO_POOL") == "1" and cupy_module():
        cupy_module().cuda.set_allocator(None)
    failed = []
    for name in names:
        start = time.perf_counter()
        print(f"--- {name}", flush=True)
        try:
            simulated_hang(name)
            print(getattr(cuda.get_current_device(), "name", "simulator"), flush=True)
            ok = FAMILIES[name]()
        except Exception as error:       # logged with its message; the next family still runs
            traceback.print_exc(limit=4, file=sys.stdout)
            print(f"{name}: ERROR {type(error).__name__}: {str(error)[:300]}", flush=True)
            ok = False
        print(f"{name}: {'ok' if ok else 'FAILED'} ({time.perf_counter() - start:.1f} s)", flush=True)
        if not ok:
            failed.append(name)
    try:
        kernel_figures()
    except Exception as error:
        print(f"figures: ERROR {type(error).__name__}: {error}", flush=True)
    return failed


def family_process(name, timeout):
    """Run family `name` in a child process (in this process group: a stage's timeout reaches
    it) under `timeout` seconds: (state, seconds, its output)."""
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, __file__, "--jobs", "0", name], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, errors="replace")
    try:
        output, _ = child.communicate(timeout=timeout)
        state = "ok" if child.returncode == 0 else f"FAILED rc={child.returncode}"
    except subprocess.TimeoutExpired:
        child.kill()
        output, _ = child.communicate()
        state = f"TIMED OUT after {timeout:g} s"
    return state, time.perf_counter() - start, output


def in_processes(names, jobs, timeout):
    """Each family in its own process, `jobs` at a time; the names of those that failed, and
    of those that timed out."""
    def run(name):
        state, seconds, output = family_process(name, timeout)
        block = "".join(f"[{name}] {line}\n" for line in output.splitlines())
        print(f"{block}{name}: {state} ({seconds:.1f} s)", flush=True)
        return state

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        states = dict(zip(names, pool.map(run, names)))
    return ([n for n, s in states.items() if s.startswith("FAILED")],
            [n for n, s in states.items() if s.startswith("TIMED OUT")])


def main(names, jobs, timeout):
    unknown = sorted(set(names) - set(FAMILIES))
    if unknown:
        sys.exit(f"unknown families {unknown}; choose from {list(FAMILIES)}")
    names = names or list(FAMILIES)
    hung = []
    if jobs == 0:
        failed = in_process(names)
    else:
        print(f"{len(names)} families, {jobs} processes at a time, {timeout:g} s each", flush=True)
        failed, hung = in_processes(names, jobs, timeout)
    bad = len(failed) + len(hung)
    print(f"verdict: {len(names) - bad}/{len(names)} families ok" + (f"; failed: {' '.join(failed)}" if failed else "")
          + (f"; timed out after {timeout:g} s: {' '.join(hung)}" if hung else ""), flush=True)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="every kernel family of the CUDA backend once, against the CPU")
    parser.add_argument("families", nargs="*", help=f"of {', '.join(FAMILIES)} (default: all)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="families run at once, each in its own process (0: one after another, here)")
    parser.add_argument("--timeout", type=float, default=120, help="seconds each family's process may take")
    args = parser.parse_args()
    main(args.families, min(args.jobs, len(args.families or FAMILIES)), args.timeout)
