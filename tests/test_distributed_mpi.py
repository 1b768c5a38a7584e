"""Data parallelism under a real `mpiexec` (the venv's, from the mpich wheel): 2 and 3 ranks
against one process on the concatenated batch (tests/mpi_scenarios.py), the command line's
run folder, resuming after the job is killed (bit for bit), and a failing rank ending the job."""
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from gpurnn.checkpoint import load_checkpoint
from gpurnn.cli import app

HERE = Path(__file__).resolve().parent


def find_mpiexec():
    """The mpiexec next to this Python (the venv's, from the mpich wheel), else on PATH."""
    beside = Path(sys.executable).parent / "mpiexec"
    return str(beside) if beside.is_file() else shutil.which("mpiexec")


MPIEXEC = find_mpiexec()
pytestmark = [pytest.mark.mpi, pytest.mark.skipif(
    MPIEXEC is None or importlib.util.find_spec("mpi4py") is None,
    reason="needs mpi4py and mpiexec: pip install -e '.[mpi]'")]


def mpi(ranks, *args, timeout=120, **popen):
    """`mpiexec -n ranks ARGS...` run to the end: (exit status, stdout + stderr)."""
    done = subprocess.run([MPIEXEC, "-n", str(ranks), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, **popen)
    return done.returncode, done.stdout + done.stderr


@pytest.mark.parametrize("ranks", [2, 3])
def test_ranks_match_one_process_on_the_whole_batch(ranks):
    code, output = mpi(ranks, sys.executable, HERE / "mpi_scenarios.py", "equivalence")
    assert code == 0 and "ok equivalence" in output, output
    assert {"streams:", "sentences:", "bucketed:"} <= set(output.split()), output


@pytest.mark.cuda
def test_nccl_on_the_gpus_matches_one_process():
    from gpurnn.allreduce import NCCLSum

    if not NCCLSum.usable():
        pytest.skip("CuPy finds no NCCL here: pip install nvidia-nccl-cu13")
    code, output = mpi(min(2, _gpus()), sys.executable, HERE / "mpi_scenarios.py", "nccl")
    assert code == 0 and "ok nccl" in output, output


def _gpus():
    from numba import cuda

    return len(cuda.gpus)


def test_a_failing_rank_ends_the_job_within_seconds():
    start = time.perf_counter()
    code, output = mpi(2, sys.executable, HERE / "mpi_scenarios.py", "fail", timeout=60)
    assert code != 0, output
    assert time.perf_counter() - start < 20
    assert "rank 1 of 2 failed: ValueError: inputs (token ids) must lie in [0, n)" in output, output


def gpurnn_train(out, steps, batch_size, *extra):
    return [Path(sys.executable).parent / "gpurnn", "train", "--task", "charlm", "--data", out.parent / "text.txt",
            "--out", out, "--hidden", "8", "--seq-len", "5", "--batch-size", batch_size, "--steps", steps,
            "--eval-every", "2", "--patience", "0", "--backend", "cpu", "--no-progress",
            "--layers", "1", "--schedule", "constant", *extra]     # not charlm's defaults: a killed run's cosine
                                                                    # horizon is its own --steps, 10**6 here


def arrays_of(path):
    ckpt = load_checkpoint(path)
    return {**dict(ckpt.params.items()), **ckpt.arrays}, ckpt.meta["trainer"]["step"]


def test_command_line_run_killed_resumed_and_matching_one_process(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "text.txt").write_text("".join(rng.choice(list("abcde fg\n"), 4000)))
    killed = tmp_path / "killed"
    job = subprocess.Popen([MPIEXEC, "-n", "2", *map(str, gpurnn_train(killed, 10**6, 2))], start_new_session=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.perf_counter() + 60
        while not (killed / "checkpoint.safetensors").is_file() and time.perf_counter() < deadline:
            time.sleep(0.05)
    finally:
        os.killpg(job.pid, signal.SIGKILL)
        job.wait()
    _, step = arrays_of(killed / "checkpoint.safetensors")
    print(f"killed at step {step} or later")
    total = step + 3
    code, output = mpi(2, *gpurnn_train(killed, total, 2, "--resume"))
    assert code == 0, output
    whole = tmp_path / "whole"
    code, output = mpi(2, *gpurnn_train(whole, total, 2))
    assert code == 0 and output.count("metric valid/loss_nats") == 1, output      # rank 0 alone reports
    assert sorted(p.name for p in whole.iterdir()) == [".lock", "best.safetensors", "checkpoint.safetensors",
                                                       "loss.png", "metrics.json", "metrics.jsonl"]
    resumed, resumed_step = arrays_of(killed / "checkpoint.safetensors")
    uninterrupted, whole_step = arrays_of(whole / "checkpoint.safetensors")
    assert resumed_step == whole_step == total
    assert resumed.keys() == uninterrupted.keys() and "carry" in resumed
    for name in resumed:
        assert np.array_equal(resumed[name], uninterrupted[name]), name                # bit for bit
    single = tmp_path / "single"
    result = CliRunner().invoke(app, list(map(str, gpurnn_train(single, total, 4)[1:])))
    assert result.exit_code == 0, result.output
    alone, _ = arrays_of(single / "checkpoint.safetensors")
    for name, value in uninterrupted.items():                                      # float32 parameters
        gap = np.abs(value - alone[name]).max() / max(np.abs(alone[name]).max(), 1e-30)
        assert gap <= 1e-5, (name, gap)
