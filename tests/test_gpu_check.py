"""profiling/gpu_check.sh's control flow on a machine without a GPU: every selected stage ends
at once, still writing its log and its summary line, and $OUT stays within the 8 files the
device tool brings back; and bench_gpu.py's per-variant error records."""
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


def test_bench_gpu_records_a_failing_variant_and_goes_on(monkeypatch):
    """bench_gpu's rows keep each variant's error in place of its time (the run goes on)."""
    monkeypatch.syspath_prepend(str(ROOT / "profiling"))
    import bench_gpu

    def fake_events():
        return (lambda: None), (lambda: None), (lambda: 1.5)

    def broken():
        raise RuntimeError("no kernel image for this card")

    row = {}
    assert bench_gpu.timed(row, "gpurnn_numba", fake_events, broken, 1, 3) is None
    assert row == {"gpurnn_numba_error": "RuntimeError: no kernel image for this card"}
    assert bench_gpu.timed(row, "torch", fake_events, lambda: "loss", 1, 3) == "loss"
    assert row["torch_ms"] == 1.5 and row["torch_samples"] == [1.5, 1.5, 1.5]
    assert bench_gpu.fmt(row, "gpurnn_numba_ms", 7) == "  error"
    assert bench_gpu.fmt(row, "torch_ms", 7) == "   1.50"
    assert bench_gpu.fmt(row, "ratio_torch_over_gpurnn", 7) == "      -"
