"""Registers, spills and stack frame of every CUDA kernel, from `ptxas -v` (no GPU needed).

    .venv/bin/python profiling/ptx_report.py [--arch sm_90]

Compiles each kernel with the argument types the backend launches it with
(`gpurnn.kernels.launch_types`) and prints one row per kernel and dtype.
"""
import pathlib
import sys
import tempfile

import typer
from numba import cuda

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests"))
from test_ptx import ptxas_report  # noqa: E402  (the tests' parser of ptxas -v)

from gpurnn.kernels.launch_types import HOT, launched  # noqa: E402


def main(arch: str = "sm_90"):
    cc = (int(arch[3]), int(arch[4:]))
    print(f"{'kernel':<14} {'dtype':<8} {'regs':>4} {'spill st':>8} {'spill ld':>8} {'stack':>5}  hot")
    for dtype in ("float32", "float64"):
        for name, (kernel, sig) in sorted(launched(dtype).items()):
            ptx, _ = cuda.compile_ptx(kernel.py_func, sig, cc=cc)
            with tempfile.TemporaryDirectory() as tmp:
                regs, stores, loads, frame = ptxas_report(ptx, pathlib.Path(tmp), arch)
            print(f"{name:<14} {dtype:<8} {regs:>4} {stores:>8} {loads:>8} {frame:>5}  {'*' if name in HOT else ''}")


if __name__ == "__main__":
    typer.run(main)
