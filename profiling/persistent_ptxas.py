"""`ptxas -v` figures of the persistent kernels for sm_90 (no GPU needed).

    .venv/bin/python profiling/persistent_ptxas.py

One row per case of tests/test_persistent.py's PTX_CASES: registers, spills, stack frame,
and the plan's dynamic shared memory. Compiled as the CUDA linker compiles Numba's module
(`ptxas -c`, relocatable: the cooperative kernels call cudadevrt's grid barrier).
"""
import pathlib
import sys
import tempfile
from unittest import mock

import numba.cuda.dispatcher as dispatcher

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests"))
from test_persistent import PTX_CASES, compile_ptx, ptxas_report  # noqa: E402  (the tests' helpers)


def main():
    print(f"{'case':<26} {'variant':<6} {'rows':>4} {'chains':>6} {'rreg':>4} {'pairs':<5} {'smem B':>7}  ptxas -v -c -arch=sm_90")
    with tempfile.TemporaryDirectory() as tmp, mock.patch.object(dispatcher, "get_current_device") as device:
        device.return_value.compute_capability = (9, 0)
        for name, (plan, *_rest) in PTX_CASES.items():
            report = ptxas_report(compile_ptx(name, (9, 0), None), pathlib.Path(tmp) / f"{name}.ptx")
            facts = " | ".join(line.split("info    : ")[-1].strip() for line in report.splitlines()
                               if "Used" in line or "spill" in line)
            print(f"{name:<26} {plan.variant:<6} {plan.rows:>4} {plan.chains:>6} {plan.rreg:>4} {str(plan.pairs):<5} "
                  f"{plan.smem:>7}  {facts}", flush=True)


if __name__ == "__main__":
    main()
