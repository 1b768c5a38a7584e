"""Every CUDA kernel compiles to PTX for sm_90 and sm_80 with the argument types the backend
launches it with (`gpurnn.kernels.launch_types`), and, where `ptxas` is installed, the hot
kernels assemble for sm_90 without register spills.

No GPU is needed: numba-cuda's NVVM compiles PTX anywhere. This runs in the normal pytest
process (the simulator accepts code that real compilation rejects, which is why it exists).
"""
import functools
import re
import shutil
import subprocess

import pytest

from conftest import SIMULATOR
from gpurnn.kernels.launch_types import HOT, launched

pytestmark = pytest.mark.skipif(SIMULATOR, reason="PTX compilation needs the real Numba CUDA target, not the simulator")

DTYPES = ("float32", "float64")
TARGETS = ((9, 0), (8, 0))


@functools.cache
def _ptx(name, dtype, cc):
    from numba import cuda

    kernel, sig = launched(dtype)[name]
    ptx, _ = cuda.compile_ptx(kernel.py_func, sig, cc=cc)
    return ptx


@pytest.mark.parametrize("cc", TARGETS, ids=lambda cc: f"sm_{cc[0]}{cc[1]}")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(launched("float32")))
def test_compiles_to_ptx(name, dtype, cc):
    ptx = _ptx(name, dtype, cc)
    assert f".target sm_{cc[0]}{cc[1]}" in ptx
    assert ".entry" in ptx


def _ptxas(ptx, tmp_path, arch):
    source = tmp_path / "kernel.ptx"
    source.write_text(ptx)
    done = subprocess.run(["ptxas", "-v", f"-arch={arch}", str(source), "-o", str(tmp_path / "kernel.cubin")],
                          capture_output=True, text=True)
    return done.returncode, done.stderr + done.stdout


def ptxas_report(ptx, tmp_path, arch="sm_90"):
    """(registers, spill store bytes, spill load bytes, stack frame bytes) from `ptxas -v`.

    numba-cuda's NVVM may be newer than the installed ptxas and write a newer PTX ISA
    version than it reads (NVVM 13.5 writes 9.5, ptxas 13.0 reads up to 9.0); these
    kernels use no newer PTX feature, so the header is lowered to the version ptxas names.
    """
    code, log = _ptxas(ptx, tmp_path, arch)
    newest = re.search(r"Unsupported \.version [\d.]+; current version is '([\d.]+)'", log)
    if code and newest:
        code, log = _ptxas(re.sub(r"^\.version [\d.]+", f".version {newest.group(1)}", ptx, flags=re.M), tmp_path, arch)
    assert code == 0, log
    registers = int(re.search(r"Used (\d+) registers", log).group(1))
    frame, stores, loads = (int(x) for x in re.search(
        r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", log).groups())
    return registers, stores, loads, frame


@pytest.mark.skipif(shutil.which("ptxas") is None, reason="ptxas (CUDA toolkit) is not on PATH")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", HOT)
def test_hot_kernels_do_not_spill(name, dtype, tmp_path):
    registers, stores, loads, _ = ptxas_report(_ptx(name, dtype, (9, 0)), tmp_path)
    assert stores == 0 and loads == 0, f"{name} {dtype}: {registers} registers, spills {stores} B stored, {loads} B loaded"
    assert registers <= 255

