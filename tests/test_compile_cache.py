"""A warm Numba cache never runs stale code: the CPU backend's cached functions and the CUDA
kernels are keyed on every source they compile from (`gpurnn.compile_cache`), not only on their
own file."""
import inspect
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import SIMULATOR

import gpurnn
from gpurnn import compile_cache
from gpurnn.backends import cpu, cpu_blas, cpu_loops

# one logistic forward loop (σ from gpurnn.cell, through cpu_blas) on a tiny problem
SCRIPT = """
import numpy as np
from gpurnn.backends import cpu_loops
rng = np.random.default_rng(0)
XP, W = rng.standard_normal((3, 2, 4)), 0.5 * rng.standard_normal((4, 4))
S = np.zeros((4, 2, 4))
cpu_loops.forward_loop(XP, 0, W, S, np.array([3, 2]), 1, False, np.zeros((0, 2, 4)))
print(float(S.sum()))
"""


def _cached(modules):
    return [f for module in modules for f in vars(module).values()
            if getattr(getattr(f, "_cache", None), "_cache_file", None) is not None]


def test_every_cached_cpu_function_is_keyed_on_every_source_it_compiles_from():
    cached = _cached((cpu, cpu_blas, cpu_loops))
    assert len(cached) >= 10
    for f in cached:
        assert Path(inspect.getfile(f.py_func)).resolve() in compile_cache.CPU_SOURCES, f
        assert f._cache._cache_file._source_stamp[2] == compile_cache.sources_digest(compile_cache.CPU_SOURCES), f


@pytest.mark.skipif(SIMULATOR, reason="the simulator keeps no disk cache")
def test_every_cached_cuda_kernel_is_keyed_on_every_kernel_source():
    """The module-level kernels and a persistent kernel built at run time (no GPU needed: the
    dispatchers compile on first launch)."""
    from gpurnn.kernels import launch_types  # noqa: F401  (imports every module-level kernel)
    from gpurnn.kernels import persistent_forward, persistent_plan
    import gpurnn.kernels as kernels

    modules = [m for name, m in vars(kernels).items() if not name.startswith("_") and inspect.ismodule(m)]
    persistent = persistent_forward.forward_kernel(persistent_plan.custom_plan("block", 5, 96, np.float32, rows=2),
                                                   np.float32)[0]
    cached = _cached(modules) + [persistent]
    assert len(cached) >= 15
    sources = compile_cache.cuda_sources()
    assert {Path(m.__file__).resolve() for m in modules} <= set(sources)
    for f in cached:
        assert Path(inspect.getfile(f.py_func)).resolve() in sources, f
        assert f._cache._cache_file._source_stamp[2] == compile_cache.sources_digest(sources), f


def test_a_warm_cache_recompiles_after_an_edit_to_a_file_the_loops_call(tmp_path):
    """Warm the cache, edit gpurnn/cell.py's σ (which `cpu_loops.forward_loop` compiles through
    cpu_blas, in another file), run again: the new σ runs, as from a cold cache."""
    package = tmp_path / "src" / "gpurnn"
    shutil.copytree(Path(gpurnn.__file__).parent, package, ignore=shutil.ignore_patterns("__pycache__"))
    env = dict(os.environ, PYTHONPATH=str(package.parent), NUMBA_CACHE_DIR=str(tmp_path / "cache"))

    def run(cache):
        out = subprocess.run([sys.executable, "-c", SCRIPT], env=dict(env, NUMBA_CACHE_DIR=str(tmp_path / cache)),
                             capture_output=True, text=True, check=True, cwd=tmp_path)
        return float(out.stdout)

    before = run("cache")
    assert any((tmp_path / "cache").rglob("*.nbi")), "the first run wrote a cache"
    cell = package / "cell.py"
    text = cell.read_text()
    assert text.count("math.exp(-a)") == 1
    cell.write_text(text.replace("math.exp(-a)", "math.exp(-2 * a)"))
    after, cold = run("cache"), run("cold")
    assert after == cold and not np.isclose(after, before)
