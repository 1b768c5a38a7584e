"""profiling/gpu_check.sh's control flow on a machine without a GPU: every selected stage ends
at once, still writing its log and its summary line, and $OUT stays within the 8 files the
device tool brings back."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "profiling" / "gpu_check.sh"
GPU_STAGES = ["smoke", "gputests", "bench", "persistent", "sanitize", "rest"]


def run_check(tmp_path, **env):
    out = tmp_path / "out"
    done = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OUT": str(out), "GPU_CHECK_SCRATCH": str(tmp_path / "scratch"),
                               "PYTHON": sys.executable, **env})
    return done, out


@pytest.mark.skipif(shutil.which("timeout") is None, reason="needs coreutils' timeout")
def test_without_a_gpu_each_stage_writes_its_log_and_summary_line(tmp_path):
    done, out = run_check(tmp_path, GPU_CHECK_STAGES=" ".join(GPU_STAGES))
    assert done.returncode == 0, done.stderr
    summary = (out / "summary.txt").read_text().splitlines()
    assert [line.split(":")[0] for line in summary] == GPU_STAGES
    assert all("FAILED rc=3" in line and "no usable GPU" in line for line in summary)
    files = sorted(p.name for p in out.iterdir())
    assert files == ["bench.log", "persistent.log", "sanitize.log", "smoke.log", "summary.txt", "tests.log"]
    assert len(files) <= 8
    assert "=== rest (limit" in (out / "tests.log").read_text()     # gputests and rest share tests.log


def test_a_spent_budget_skips_the_stage_with_a_summary_line(tmp_path):
    done, out = run_check(tmp_path, GPU_CHECK_STAGES="smoke bench", GPU_CHECK_SECONDS="4")
    assert done.returncode == 0, done.stderr
    assert (out / "summary.txt").read_text().splitlines() == [
        "smoke: SKIPPED (the run's 4 s are spent)", "bench: SKIPPED (the run's 4 s are spent)"]
