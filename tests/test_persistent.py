"""The persistent recurrent kernels (kernels/persistent_*.py) against the CPU backend.

Three places run them:
  - under the Numba CUDA simulator (`sim`): the block variant, and the cooperative variant
    with a one-block grid (the simulator runs blocks one after another, so a grid barrier
    across blocks cannot be checked there), tiny sizes;
  - in the normal process: the planner, argument errors, PTX for cc 9.0 and 8.0 with the
    launch signatures, and `ptxas -v` (registers, shared memory, no local memory);
  - on a real GPU (`cuda`): the issue's shapes and a multi-block cooperative grid.
"""
import re
import shutil
import subprocess
import sys
import types

import numpy as np
import pytest

from conftest import SIMULATOR
from gpurnn.backends import get_backend
from gpurnn.cell import activation_code
from gpurnn.kernels import persistent_backward as pb
from gpurnn.kernels import persistent_forward as pf
from gpurnn.kernels import persistent_plan as pp

TOL = {np.float32: (2e-5, 2e-5), np.float64: (1e-12, 1e-12)}   # atol, rtol


def case(rng, T, B, d, dtype):
    """Random XP, W (spectral radius ~1), s0, lengths (one 0, one T, the rest between), G
    zero past each length, g_last."""
    XP = rng.standard_normal((T, B, d)).astype(dtype)
    W = (rng.standard_normal((d, d)) / np.sqrt(d)).astype(dtype)
    s0 = (0.5 * rng.standard_normal((B, d))).astype(dtype)
    lengths = rng.integers(1, T + 1, B).astype(np.int64)
    lengths[0], lengths[-1] = T, 0
    G = rng.standard_normal((T, B, d)).astype(dtype)
    for b in range(B):
        G[lengths[b]:, b] = 0
    g_last = rng.standard_normal((B, d)).astype(dtype)
    return XP, W, s0, lengths, G, g_last


def assert_close(got, ref, dtype):
    atol, rtol = TOL[dtype]
    assert np.all(np.isfinite(got)), "an output element was never written (NaN poison left)"
    np.testing.assert_allclose(got, ref, atol=atol, rtol=rtol)


# ---------------------------------------------------------------- simulator: block and 1-block coop

def sim_plans(B, d, dtype, chains=1):
    """Block plans covering one and two sequences per block, W in shared memory only and
    partly in registers."""
    plans = {
        "block": pp.custom_plan("block", B, d, dtype, rows=1, chains=chains),
        "block-rows2-reg32": pp.custom_plan("block", B, d, dtype, rows=2, rreg=32, chains=chains),
    }
    if pp.pairs_possible(d, dtype):
        plans["block-pairs"] = pp.custom_plan("block", B, d, dtype, rows=2, rreg=16, chains=chains, pairs=True)
    return plans


@pytest.mark.sim
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("activation", ["tanh", "logistic", "relu"])
def test_forward_matches_cpu(activation, dtype):
    rng = np.random.default_rng(3)
    T, B, d = 5, 3, 36
    XP, W, s0, lengths, _, _ = case(rng, T, B, d, dtype)
    ref = get_backend("cpu").recurrence_forward(XP, W, s0, lengths, activation_code(activation))
    for the_plan in sim_plans(B, d, dtype).values():
        S = np.full((T + 1, B, d), np.nan, dtype)
        pf.persistent_forward(XP, W, s0, lengths, activation_code(activation), S, plan=the_plan)
        assert_close(S, ref, dtype)


@pytest.mark.sim
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("activation,truncate", [("tanh", None), ("logistic", None), ("relu", None),
                                                 ("tanh", 0), ("logistic", 2), ("relu", 2)])
def test_backward_matches_cpu(activation, truncate, dtype):
    rng = np.random.default_rng(4)
    T, B, d = 5, 3, 36
    XP, W, s0, lengths, G, g_last = case(rng, T, B, d, dtype)
    cpu = get_backend("cpu")
    code = activation_code(activation)
    S = cpu.recurrence_forward(XP, W, s0, lengths, code)
    chains = 1 if truncate is None else truncate + 1
    plans = sim_plans(B, d, dtype, chains)
    runs = [(plans["block"], G, g_last), (plans["block"], None, g_last), (plans["block"], G, None)]
    runs += [(plans[name], G, g_last) for name in plans if name != "block"]
    for the_plan, g, last in runs:
        ref_delta, ref_ds0 = cpu.recurrence_backward(g, last, S, W, lengths, code, truncate)
        delta = np.full((T, B, d), np.nan, dtype)
        ds0 = np.full((B, d), np.nan, dtype)
        pb.persistent_backward(g, last, S, W, lengths, code, truncate, delta, ds0, plan=the_plan)
        assert_close(delta, ref_delta, dtype)
        assert_close(ds0, ref_ds0, dtype)


@pytest.mark.sim
def test_odd_width_matches_cpu():
    """d = 33: a partial warp of units, no paired loads, W rows 16..32 in shared memory."""
    rng = np.random.default_rng(6)
    T, B, d, dtype = 4, 3, 33, np.float32
    XP, W, s0, lengths, G, g_last = case(rng, T, B, d, dtype)
    cpu = get_backend("cpu")
    the_plan = pp.custom_plan("block", B, d, dtype, rows=2, rreg=16, chains=2)
    S = np.full((T + 1, B, d), np.nan, dtype)
    pf.persistent_forward(XP, W, s0, lengths, 1, S, plan=pp.custom_plan("block", B, d, dtype, rows=2, rreg=16))
    assert_close(S, cpu.recurrence_forward(XP, W, s0, lengths, 1), dtype)
    delta, ds0 = np.full((T, B, d), np.nan, dtype), np.full((B, d), np.nan, dtype)
    pb.persistent_backward(G, g_last, S, W, lengths, 1, 1, delta, ds0, plan=the_plan)
    ref_delta, ref_ds0 = cpu.recurrence_backward(G, g_last, S, W, lengths, 1, 1)
    assert_close(delta, ref_delta, dtype)
    assert_close(ds0, ref_ds0, dtype)
    with pytest.raises(ValueError, match="even d"):
        pp.custom_plan("block", B, d, dtype, rows=1, pairs=True)


@pytest.mark.sim
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_one_block_cooperative_matches_cpu(dtype):
    """The cooperative kernels' indexing, partial sums and reduction with a one-block grid,
    where the simulator's grid.sync() is a block barrier."""
    rng = np.random.default_rng(5)
    T, B, d = 4, 3, 32
    XP, W, s0, lengths, G, g_last = case(rng, T, B, d, dtype)
    cpu = get_backend("cpu")
    the_plan = pp.custom_plan("coop", B, d, dtype, rows=4, pairs=pp.pairs_possible(d, dtype))
    assert the_plan.grid == 1
    for code in map(activation_code, ("tanh", "logistic", "relu")):
        S = np.full((T + 1, B, d), np.nan, dtype)
        pf.persistent_forward(XP, W, s0, lengths, code, S, plan=the_plan)
        assert_close(S, cpu.recurrence_forward(XP, W, s0, lengths, code), dtype)
        delta, ds0 = np.full((T, B, d), np.nan, dtype), np.full((B, d), np.nan, dtype)
        pb.persistent_backward(G, g_last, S, W, lengths, code, None, delta, ds0, plan=the_plan)
        ref_delta, ref_ds0 = cpu.recurrence_backward(G, g_last, S, W, lengths, code, None)
        assert_close(delta, ref_delta, dtype)
        assert_close(ds0, ref_ds0, dtype)


@pytest.mark.sim
def test_multi_block_cooperative_in_simulator():
    pytest.skip("the simulator runs one block at a time, so a grid-wide barrier across several "
                "blocks cannot be checked there; test_cooperative_multi_block_gpu runs it on a GPU")


# ---------------------------------------------------------------- planner and argument errors

def test_plan_picks_by_shape():
    assert pp.plan(1, 256, np.float32).variant == "block"          # W: 128 rows registers + smem
    assert pp.plan(32, 128, np.float32).rreg == 128                # all of W in registers
    assert pp.plan(1, 256, np.float64).variant == "coop"           # 512 KB: split over blocks
    assert pp.plan(64, 512, np.float32).variant == "coop"
    assert pp.plan(256, 1024, np.float32).variant == "step"        # grid too large
    assert pp.plan(8, 512, np.float32, direction="backward", truncate=3).variant == "step"
    assert pp.plan(1, 64, np.float32, direction="backward", truncate=20).variant == "step"


@pytest.mark.parametrize("B,d,dtype", [(1, 256, np.float32), (256, 64, np.float64), (7, 100, np.float32)])
def test_block_plan_fits_the_device(B, d, dtype):
    for chains in (1, 3):
        p = pp.plan(B, d, dtype, direction="backward", truncate=chains - 1)
        assert p.smem <= pp.H100.smem_per_block
        assert p.rreg * p.rows * p.chains <= pp.UNROLL_LIMIT
        assert p.grid * p.rows >= B and p.threads >= d


def test_force_and_errors():
    assert pp.plan(4, 64, np.float32, force="coop").variant == "coop"
    assert pp.plan(4, 512, np.float32, force="block").variant == "step"
    with pytest.raises(ValueError, match="force"):
        pp.plan(4, 64, np.float32, force="fast")
    with pytest.raises(ValueError, match="direction"):
        pp.plan(4, 64, np.float32, direction="sideways")
    with pytest.raises(TypeError, match="dtype"):
        pp.plan(4, 64, np.int32)


def test_launchers_reject_bad_plans_and_shapes():
    XP, W, s0 = np.zeros((3, 2, 8)), np.zeros((8, 8)), np.zeros((2, 8))
    lengths = np.full(2, 3, np.int64)
    with pytest.raises(ValueError, match="no persistent forward"):
        pf.persistent_forward(XP, W, s0, lengths, 0, np.zeros((4, 2, 8)), plan=pp.Plan("step", "why"))
    with pytest.raises(ValueError, match="out_S"):
        pf.persistent_forward(XP, W, s0, lengths, 0, np.zeros((3, 2, 8)),
                              plan=pp.custom_plan("block", 2, 8, np.float64, rows=1))
    with pytest.raises(ValueError, match="chains"):
        pb.persistent_backward(None, None, np.zeros((4, 2, 8)), W, lengths, 0, 2, XP, s0,
                               plan=pp.custom_plan("block", 2, 8, np.float64, rows=1))
    the_plan = pp.custom_plan("block", 2, 8, np.float64, rows=1)
    with pytest.raises(TypeError, match="W must be float64, got float32"):
        pf.persistent_forward(XP, W.astype(np.float32), s0, lengths, 0, np.zeros((4, 2, 8)), plan=the_plan)
    with pytest.raises(TypeError, match="lengths must be int64"):
        pf.persistent_forward(XP, W, s0, lengths.astype(np.int32), 0, np.zeros((4, 2, 8)), plan=the_plan)
    with pytest.raises(ValueError, match="W must be a C-contiguous"):
        pf.persistent_forward(XP, W.T, s0, lengths, 0, np.zeros((4, 2, 8)), plan=the_plan)


# ---------------------------------------------------------------- PTX and ptxas

PTX_CASES = {   # name: (plan, dtype, direction, truncate)
    "fwd-block-reg128-f32": (pp.plan(1, 256, np.float32), np.float32, "forward", None),
    "bwd-block-reg128-f32": (pp.plan(1, 256, np.float32, direction="backward"), np.float32, "backward", None),
    "bwd-block-trunc4-f32": (pp.plan(32, 128, np.float32, direction="backward", truncate=4),
                             np.float32, "backward", 4),
    "fwd-block-rows2-f64": (pp.plan(256, 64, np.float64), np.float64, "forward", None),
    "bwd-block-reg-f64": (pp.plan(32, 128, np.float64, direction="backward"), np.float64, "backward", None),
    "fwd-block-pairs-f32": (pp.custom_plan("block", 1, 256, np.float32, rows=1, rreg=64, pairs=True),
                            np.float32, "forward", None),
    "bwd-block-pairs-trunc-f32": (pp.custom_plan("block", 8, 128, np.float32, rows=2, rreg=16, chains=4, pairs=True),
                                  np.float32, "backward", 3),
    "bwd-block-cells2-f32": (pp.plan(128, 256, np.float32, direction="backward", cells=2),   # rows 2, 128 in regs
                             np.float32, "backward", None),
    "fwd-coop-f32": (pp.plan(64, 512, np.float32), np.float32, "forward", None),
    "bwd-coop-f32": (pp.plan(64, 512, np.float32, direction="backward"), np.float32, "backward", None),
}


def compile_ptx(name, cc, monkeypatch=None):
    """PTX of one case for compute capability `cc`, with the signature it is launched with.
    Device functions reached through `@overload` (cuda.cg's grid sync) ask the driver for
    the current device's compute capability when compiled; there is no driver here, so
    that query answers `cc` (through `monkeypatch`, or the caller patched it)."""
    from numba import cuda
    import numba.cuda.dispatcher as dispatcher

    if monkeypatch is not None:
        monkeypatch.setattr(dispatcher, "get_current_device", lambda: types.SimpleNamespace(compute_capability=cc))
    the_plan, dtype, direction, truncate = PTX_CASES[name]
    if direction == "forward":
        kernel, sig = pf.forward_kernel(the_plan, dtype)
    else:
        kernel, sig = pb.backward_kernel(the_plan, dtype, exact=truncate is None)
    ptx, _ = cuda.compile_ptx(kernel.py_func, sig, cc=cc)
    return ptx


CACHE_KEY = """
import hashlib, sys
import numpy as np
from numba.cuda.serialize import dumps
from gpurnn.kernels import persistent_backward as pb, persistent_forward as pf, persistent_plan as pp
plans = [pp.custom_plan("block", 5, 96, np.float32, rows=2, rreg=32), pp.custom_plan("coop", 5, 96, np.float32, rows=2),
         pp.custom_plan("coop", 5, 96, np.float32, rows=2, pairs=True)]
kernels = [pf.forward_kernel(p, np.float32)[0] for p in plans] + [pb.backward_kernel(p, np.float32)[0] for p in plans]
for k in kernels:
    print(hashlib.sha256(dumps(tuple(c.cell_contents for c in k.py_func.__closure__))).hexdigest())
"""


@pytest.mark.skipif(SIMULATOR, reason="the simulator keeps no disk cache")
def test_the_disk_cache_key_of_each_variant_is_its_own_and_the_same_in_every_process():
    """Numba's disk cache finds a kernel compiled by an earlier process by a hash of the
    kernel's closure (the variant's parameters and device functions): two processes must hash
    it alike, and two variants differently."""
    runs = [subprocess.run([sys.executable, "-c", CACHE_KEY], capture_output=True, text=True, check=True).stdout
            for _ in range(2)]
    assert runs[0] == runs[1]
    assert len(set(runs[0].split())) == 6
    assert type(pf.forward_kernel(pp.custom_plan("block", 5, 96, np.float32, rows=2), np.float32)[0]._cache).__name__ \
        == "CUDACache"                             # cache=True, not the NullCache of an uncached kernel


def ptxas_report(ptx, path, arch="sm_90"):
    """`ptxas -v -c` (relocatable, as the CUDA linker compiles the module Numba hands it) on the
    PTX; an older ptxas than NVVM's PTX ISA gets the ISA version it supports (it rejects any
    instruction that version lacks)."""
    run = None
    for _ in range(2):
        path.write_text(ptx)
        run = subprocess.run(["ptxas", "-v", "-c", f"-arch={arch}", str(path), "-o", "/dev/null"],
                             capture_output=True, text=True)
        older = re.search(r"current version is '(\d+\.\d+)'", run.stderr)
        if not older:
            break
        ptx = re.sub(r"^\.version \d+\.\d+", f".version {older.group(1)}", ptx, flags=re.M)
    assert run.returncode == 0, run.stderr
    return run.stderr


@pytest.mark.skipif(SIMULATOR, reason="PTX compilation needs the real Numba CUDA target, not the simulator")
@pytest.mark.parametrize("cc", [(9, 0), (8, 0)])
@pytest.mark.parametrize("name", ["fwd-block-reg128-f32", "bwd-coop-f32"])
def test_ptx_compiles(name, cc, monkeypatch):
    ptx = compile_ptx(name, cc, monkeypatch)
    assert f".target sm_{cc[0]}{cc[1]}" in ptx
    assert "bar.sync" in ptx
    if "coop" in name:
        assert "cudaCGSynchronize" in ptx      # the grid-wide barrier, hence a cooperative launch


@pytest.mark.skipif(SIMULATOR, reason="PTX compilation needs the real Numba CUDA target, not the simulator")
@pytest.mark.skipif(shutil.which("ptxas") is None, reason="ptxas (CUDA toolkit) is not on the PATH")
@pytest.mark.parametrize("name", list(PTX_CASES))
def test_ptxas_no_spills_no_local_memory(name, monkeypatch, tmp_path):
    """The hot kernels keep everything in registers and shared memory: no spills, and no
    stack frame (the register copy of W, indexed only with unrolled constants)."""
    report = ptxas_report(compile_ptx(name, (9, 0), monkeypatch), tmp_path / f"{name}.ptx")
    regs = int(re.search(r"Used (\d+) registers", report).group(1))
    assert "0 bytes spill stores" in report and "0 bytes spill loads" in report, report
    assert "0 bytes stack frame" in report, report
    assert regs <= 255


# ---------------------------------------------------------------- real GPU

ISSUE_ROWS = [(1000, 1, 256), (200, 8, 256), (100, 32, 128), (100, 64, 512), (50, 256, 1024)]


def run_gpu(T, B, d, dtype, the_plan_f, the_plan_b, truncate=None, seed=0):
    from numba import cuda

    rng = np.random.default_rng(seed)
    XP, W, s0, lengths, G, g_last = case(rng, T, B, d, dtype)
    cpu = get_backend("cpu")
    S_ref = cpu.recurrence_forward(XP, W, s0, lengths, 0)
    d_ref, ds0_ref = cpu.recurrence_backward(G, g_last, S_ref, W, lengths, 0, truncate)
    dev = {k: cuda.to_device(v) for k, v in dict(XP=XP, W=W, s0=s0, lengths=lengths, G=G, g_last=g_last).items()}
    S = cuda.to_device(np.full((T + 1, B, d), np.nan, dtype))
    pf.persistent_forward(dev["XP"], dev["W"], dev["s0"], dev["lengths"], 0, S, plan=the_plan_f)
    delta = cuda.to_device(np.full((T, B, d), np.nan, dtype))
    ds0 = cuda.to_device(np.full((B, d), np.nan, dtype))
    pb.persistent_backward(dev["G"], dev["g_last"], cuda.to_device(S_ref), dev["W"], dev["lengths"], 0,
                           truncate, delta, ds0, plan=the_plan_b)
    loose = {np.float32: 1e-4, np.float64: 1e-10}[dtype]     # T up to 1000 steps of rounding
    np.testing.assert_allclose(S.copy_to_host(), S_ref, atol=loose, rtol=loose)
    scale = np.abs(d_ref).max() + 1
    np.testing.assert_allclose(delta.copy_to_host(), d_ref, atol=loose * scale, rtol=loose)
    np.testing.assert_allclose(ds0.copy_to_host(), ds0_ref, atol=loose * scale, rtol=loose)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("T,B,d", ISSUE_ROWS)
def test_issue_shapes_gpu(T, B, d, dtype):
    f, b = pf.plan_forward(B, d, dtype), pb.plan_backward(B, d, dtype)
    if f.variant == "step" or b.variant == "step":
        pytest.skip(f"no persistent variant for B={B}, d={d}: {f.reason}; the step path runs it")
    run_gpu(T, B, d, dtype, f, b)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cooperative_multi_block_gpu(dtype):
    """d = 96 over 3 column groups × B = 5 over 3 batch groups of 2 (the last one padded):
    9 blocks, one grid barrier a step; float32 with paired state loads."""
    T, B, d = 30, 5, 96
    the_plan = pp.custom_plan("coop", B, d, dtype, rows=2, pairs=pp.pairs_possible(d, dtype))
    assert the_plan.grid == 9
    run_gpu(T, B, d, dtype, the_plan, the_plan)


@pytest.mark.cuda
def test_block_pairs_gpu():
    T, B, d = 200, 8, 256
    the_plan = pp.custom_plan("block", B, d, np.float32, rows=1, rreg=64, pairs=True)
    run_gpu(T, B, d, np.float32, the_plan, the_plan)


@pytest.mark.cuda
def test_truncated_gpu():
    T, B, d, tau = 60, 8, 128, 5
    run_gpu(T, B, d, np.float32, pf.plan_forward(B, d, np.float32),
            pb.plan_backward(B, d, np.float32, tau), truncate=tau)
