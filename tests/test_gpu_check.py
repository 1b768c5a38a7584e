"""profiling/gpu_check.sh's control flow on a machine without a GPU (a dry run, seconds): each
selected stage still writes its log and its one summary line, $OUT stays within the 8 files the
device tool brings back, and each simulated failure (GPU_CHECK_SIMULATE) loses only what it
should, summary.txt saying why; the sanitizer stage's caps; bench_gpu.py's per-variant error
records."""
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import real_gpu

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "profiling" / "gpu_check.sh"
GPU_STAGES = ["smoke", "bench", "persistent", "gputests", "sanitize", "rest"]
pytestmark = pytest.mark.skipif(shutil.which("timeout") is None, reason="needs coreutils' timeout")
no_gpu_here = pytest.mark.skipif(real_gpu(), reason="a dry run: on a GPU machine the GPU stages would run for real")


def run_check(tmp_path, **env):
    out = tmp_path / "out"
    done = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OUT": str(out), "GPU_CHECK_SCRATCH": str(tmp_path / "scratch"),
                               "PYTHON": sys.executable, **env})
    assert done.returncode == 0, done.stderr
    return out, (out / "summary.txt").read_text().splitlines()


@no_gpu_here
def test_without_a_gpu_each_gpu_stage_is_skipped_with_its_log_and_summary_line(tmp_path):
    out, summary = run_check(tmp_path, GPU_CHECK_STAGES=" ".join(GPU_STAGES))
    assert [line.split(":")[0] for line in summary] == GPU_STAGES
    assert all(line.endswith(": SKIPPED (no usable GPU (see versions.log))") for line in summary)
    files = sorted(p.name for p in out.iterdir())
    assert files == ["bench.log", "persistent.log", "sanitize.log", "smoke.log", "summary.txt", "tests.log",
                     "versions.log"]
    assert "CUDA backend sees a real GPU: False" in (out / "versions.log").read_text()   # probed once, there
    assert "=== rest: SKIPPED" in (out / "tests.log").read_text()     # gputests and rest share tests.log


def test_a_spent_budget_skips_the_stage_with_a_summary_line(tmp_path):
    _, summary = run_check(tmp_path, GPU_CHECK_STAGES="smoke bench", GPU_CHECK_SECONDS="4")
    assert summary == ["smoke: SKIPPED (the run's 4 s are spent)", "bench: SKIPPED (the run's 4 s are spent)"]


def test_without_nvvm_versions_says_so_in_one_line_and_the_kernel_stages_are_skipped(tmp_path):
    out, summary = run_check(tmp_path, GPU_CHECK_STAGES="versions smoke persistent", GPU_CHECK_SIMULATE="nvvm-missing")
    versions, smoke, persistent = summary
    assert versions.startswith("versions: ok (") and "; kernels do not compile: " in versions and "libnvvm" in versions
    why = versions.split("; ", 1)[1].removesuffix(": the GPU stages are skipped")
    assert smoke == f"smoke: SKIPPED ({why})" and persistent == f"persistent: SKIPPED ({why})"
    assert "tiny kernel: FAILED" in (out / "versions.log").read_text()


@no_gpu_here
def test_when_pip_fails_the_source_copy_is_probed_and_run(tmp_path):
    shadow = tmp_path / "shadow" / "gpurnn"      # another gpurnn first on the path: the checkout is not importable
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('not the gpurnn under test')\n")
    out, summary = run_check(tmp_path, GPU_CHECK_STAGES="install versions smoke", GPU_CHECK_SIMULATE="pip-fails",
                             PYTHONPATH=str(tmp_path / "shadow"))
    copy = tmp_path / "scratch" / "src"
    assert summary[0].startswith("install: ok (") and summary[0].endswith(
        f"; pip could not install gpurnn: every later stage runs in a source copy at {copy}")
    assert f"gpurnn from {copy}; CUDA backend sees a real GPU: False" in (out / "versions.log").read_text()
    assert (copy / "gpurnn" / "kernels" / "persistent_forward.py").is_file()
    assert summary[2] == "smoke: SKIPPED (no usable GPU (see versions.log))"


def test_the_probe_sets_cuda_home_to_a_toolkit_where_cuda_pathfinder_finds_no_nvvm(tmp_path, monkeypatch):
    """What the GPU image needs: numba-cuda's NVVM search (cuda-pathfinder) fails, a system
    toolkit has libNVVM and libdevice, CUDA_HOME is unset; a root lacking either is passed over."""
    monkeypatch.syspath_prepend(str(ROOT / "profiling"))
    import gpu_probe
    from cuda import pathfinder

    def not_found(name):
        raise pathfinder.DynamicLibNotFoundError(f"{name}: not found")

    half, whole = tmp_path / "half", tmp_path / "whole"
    for root in (half, whole):
        (root / "nvvm" / "lib64").mkdir(parents=True)
        (root / "nvvm" / "lib64" / "libnvvm.so.4").touch()
    (whole / "nvvm" / "libdevice").mkdir()
    (whole / "nvvm" / "libdevice" / "libdevice.10.bc").touch()
    monkeypatch.setattr(pathfinder, "load_nvidia_dynamic_lib", not_found)
    monkeypatch.setattr(gpu_probe, "system_roots", lambda: [tmp_path / "absent", half, whole])
    for name in ("CUDA_HOME", "CUDA_PATH"):
        monkeypatch.setenv(name, "restored after the test")
        monkeypatch.delenv(name)
    where, home = gpu_probe.find_toolkit()
    assert home == whole and os.environ["CUDA_HOME"] == str(whole)
    assert where == f"CUDA_HOME={whole}, set here (cuda-pathfinder: DynamicLibNotFoundError: nvvm: not found)"
    assert gpu_probe.find_toolkit() == (f"CUDA_HOME={whole} as set", None)     # set: left alone


def test_a_hanging_smoke_family_loses_only_itself(tmp_path):
    start = time.monotonic()
    out, summary = run_check(tmp_path, GPU_CHECK_STAGES="smoke", GPU_CHECK_SIMULATE="gpu,hang:block",
                             GPU_CHECK_SMOKE="block step", GPU_CHECK_SMOKE_TIMEOUT="10")
    assert time.monotonic() - start < 60
    assert len(summary) == 1 and summary[0].startswith("smoke: FAILED rc=1 (")
    assert summary[0].endswith("timed out after 10 s: block")   # step, ending on its own, well within
    log = (out / "smoke.log").read_text()
    assert "block: TIMED OUT after 10 s" in log
    assert any(line.startswith(("step: ok", "step: FAILED")) for line in log.splitlines())   # step ran to its end


def test_the_sanitizer_caps_fit_the_stage_and_leave_nothing_running(tmp_path):
    """A compute-sanitizer that never ends (its checked process neither): each tool stops at its
    cap, the two caps within SANITIZE_SECONDS, and the checked process is gone afterwards."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "compute-sanitizer"
    fake.write_text('#!/bin/sh\nsleep 300 &\necho $! >> "$FAKE_PIDS"\nwait\n')
    fake.chmod(0o755)
    pids = tmp_path / "pids"
    start = time.monotonic()
    done = subprocess.run(["bash", str(ROOT / "profiling" / "sanitize.sh")], capture_output=True, text=True,
                          timeout=60, start_new_session=True,
                          env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_PIDS": str(pids),
                               "SANITIZE_SECONDS": "12", "SANITIZE_LOG_DIR": str(tmp_path / "logs")})
    assert time.monotonic() - start <= 12
    assert done.returncode == 1
    assert done.stdout.splitlines()[-1] == "verdict: memcheck TIMED OUT, racecheck TIMED OUT"
    assert not [pid for pid in map(int, pids.read_text().split()) if running(pid)]


def running(pid):
    """Whether process `pid` exists and is not a zombie (ended, not yet reaped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_bench_gpu_alternates_the_calls_and_records_a_failing_one(monkeypatch):
    """bench_gpu times the calls of a row in turns; a failing call keeps its error in place of
    its time and the others go on."""
    monkeypatch.syspath_prepend(str(ROOT / "profiling"))
    import bench_gpu

    order = []

    def events():
        return (lambda: None), (lambda: None), (lambda: 1.5)

    def call_of(key, result):
        return lambda: (order.append(key), result)[1]

    def broken():
        raise RuntimeError("no kernel image for this card")

    row = {}
    calls = {"gpurnn_cublas": (events, call_of("gpurnn_cublas", "ours")), "gpurnn_numba": (events, broken),
             "torch": (events, call_of("torch", "loss"))}
    assert bench_gpu.alternating(row, calls, 1, 3) == {"gpurnn_cublas": "ours", "torch": "loss"}
    assert order == ["gpurnn_cublas"] * 2 + ["torch"] * 2 + ["gpurnn_cublas", "torch"] * 3
    assert row["gpurnn_numba_error"] == "RuntimeError: no kernel image for this card"
    assert row["torch_ms"] == 1.5 and row["torch_samples"] == [1.5, 1.5, 1.5]
    assert bench_gpu.fmt(row, "gpurnn_numba_ms", 7) == "  error"
    assert bench_gpu.fmt(row, "torch_ms", 7) == "   1.50"
    assert bench_gpu.fmt(row, "ratio_torch_over_gpurnn", 7) == "      -"


def test_bench_gpu_says_tf32_is_off_only_where_every_setting_says_so(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "profiling"))
    import bench_gpu

    off = {"CUPY_TF32": "unset", "torch.backends.cudnn.allow_tf32": False,
           "torch.backends.cudnn.rnn.fp32_precision": "ieee",
           "torch.backends.cuda.matmul.fp32_precision": "AttributeError: no such setting in this torch"}
    assert bench_gpu.tf32_verdict(off) == "TF32 off"
    assert bench_gpu.tf32_verdict({**off, "torch.backends.cudnn.rnn.fp32_precision": "tf32"}) == \
        "TF32 NOT off: torch.backends.cudnn.rnn.fp32_precision"
