"""Run folders and how runs end: an existing run is refused unless --resume or --overwrite; a
resumed run keeps its settings (refusing changed ones, applying the adjustable ones) and its
whole history; a finished run stays as it is; one run at a time per folder (the second is
refused naming the first's pid, a dead run's lock is taken over); SIGINT/SIGTERM in the first
epoch save a checkpoint to resume from, and two interrupts and two resumes give one curve."""
import json
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from typer.testing import CliRunner

from gpurnn.checkpoint import load_checkpoint
from gpurnn.cli import app

runner = CliRunner()


def invoke(*args, code=0):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.output + repr(result.exception)
    return result


def history(out):
    data = json.loads((out / "metrics.json").read_text())
    return data, [s["step"] for s in data["train"]], [e["step"] for e in data["valid"]]


def test_run_folder_resume_and_finished_run(tmp_path):
    words = tmp_path / "words.txt"
    words.write_text("\n".join(["process", "program", "progress", "project", "produce", "protect"] * 5))
    out = tmp_path / "run"
    common = ("train", "--task", "autocomplete", "--data", words, "--out", out, "--hidden", "8", "--backend", "cpu",
              "--no-progress", "--eval-every", "2", "--patience", "0", "--checkpoint-every", "3")
    first = invoke(*common, "--steps", "4").stdout
    assert re.search(r"^step 2 epoch \d+: train/loss \d\.\d+ valid/loss \d\.\d+ tokens/s [\d,]+$", first, re.M)
    assert "stopped: 4 steps done (--steps 4)" in first and re.search(r"^metric valid/loss_nats \S+$", first, re.M)
    data, steps, evals = history(out)
    assert steps == [1, 2, 3, 4] and evals == [2, 4] and data["stop"] == "steps"
    assert data["model"] == {"inputs": 15, "hidden": 8, "outputs": 15, "layers": 1, "bidirectional": False}
    assert data["settings"]["batch_size"] == 32 and data["config"]["checkpoint_every"] == 3
    meta = load_checkpoint(out / "checkpoint.safetensors").meta
    assert meta["settings"]["seq_len"] == 50 and meta["model"] == data["model"]

    files = {p.name: p.read_bytes() for p in out.iterdir()}
    refused = invoke(*common, "--steps", "4", code=2)
    assert "already holds a run" in refused.stderr and "--resume" in refused.stderr
    finished = invoke(*common, "--steps", "4", "--resume")
    assert "finished: it has done 4 steps of --steps 4" in finished.stdout and "Nothing changed" in finished.stdout
    changed = invoke(*common, "--steps", "6", "--resume", "--hidden", "16", "--activation", "relu", code=2)
    assert "--hidden 16 (run: 8), --activation relu (run: tanh)" in changed.stderr
    assert len(changed.stderr.splitlines()) == 1
    batch = invoke(*common, "--steps", "6", "--resume", "--batch-size", "4", code=2)
    assert "--batch-size 4 (run: 32) (the position in the epoch" in batch.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == files        # refusals changed nothing

    resumed = invoke(*common, "--steps", "6", "--resume", "--lr", "0.01").stdout
    assert "resume: --lr 0.01 (the run had 0.005)" in resumed
    data, steps, evals = history(out)
    assert steps == [1, 2, 3, 4, 5, 6] and evals == [2, 4, 6] and data["config"]["lr"] == 0.01
    assert [s["lr"] for s in data["train"]] == [0.005] * 4 + [0.01] * 2

    invoke(*common, "--steps", "2", "--overwrite")
    assert history(out)[1:] == ([1, 2], [2])


def test_early_stopping_says_why_and_stays_finished(tmp_path):
    """SGD at lr 1e-30 leaves float32 weights as they are: the second evaluation is no lower."""
    words = tmp_path / "words.txt"
    words.write_text("\n".join(["alpha", "beta", "gamma", "delta"] * 5))
    out = tmp_path / "run"
    common = ("train", "--task", "autocomplete", "--data", words, "--out", out, "--hidden", "4", "--backend", "cpu",
              "--no-progress", "--steps", "10", "--eval-every", "1", "--patience", "1", "--optimizer", "sgd",
              "--lr", "1e-30")
    first = invoke(*common).stdout
    loss = json.loads((out / "metrics.json").read_text())["valid"][0]["loss"]
    assert f"stopped early at step 2: no lower valid/loss in 1 evaluations; the best, step 1 (valid/loss {loss:.4f})" \
        in first
    again = invoke(*common, "--resume").stdout
    assert f"finished: it stopped early at step 2 (best step 1, valid/loss {loss:.4f})" in again


def test_tensorboard_event_files(tmp_path):
    pytest.importorskip("tensorboardX", reason="the [tensorboard] extra (tensorboardX) is not installed")
    from tensorboardX.proto.event_pb2 import Event

    words = tmp_path / "words.txt"
    words.write_text("\n".join(["alpha", "beta", "gamma", "delta"] * 5))
    out = tmp_path / "run"
    invoke("train", "--task", "autocomplete", "--data", words, "--out", out, "--hidden", "4", "--backend", "cpu",
           "--no-progress", "--steps", "2", "--eval-every", "1", "--tensorboard")
    (events,) = (out / "tensorboard").iterdir()
    raw, tags = events.read_bytes(), set()
    while raw:                                # TFRecord: length (8 bytes), CRC (4), event, CRC (4)
        n = int.from_bytes(raw[:8], "little")
        tags |= {v.tag for v in Event.FromString(raw[12:12 + n]).summary.value}
        raw = raw[16 + n:]
    assert {"train/loss", "train/grad_norm", "valid/loss"} <= tags


def test_progress_bar_shows_epoch_and_validation_loss(capsys):
    from gpurnn.batches import TokenStreams
    from gpurnn.model import init_params
    from gpurnn.train import TrainConfig, Trainer

    ids = np.arange(200) % 5
    trainer = Trainer(init_params(5, 4, 5), TrainConfig(backend="cpu", eval_every=2))
    trainer.fit(TokenStreams(ids, 2, 10), steps=4, valid=TokenStreams(ids[:50], 2, 10), progress=True)
    bar = capsys.readouterr().err               # the valid loss shown is the one before the last step
    assert re.search(r"4/4 .*epoch=1, loss=\d\.\d{3}, tok_s=[\d,]+, valid=\d\.\d{3}\]", bar), bar


def _text(path, chars=200_000):
    """A text whose first epoch, at batch 1 and chunks of 5, is far longer than the test."""
    words = np.random.default_rng(0).choice(["the", "cat", "sat", "on", "a", "mat"], chars // 4)
    path.write_text(" ".join(words))
    return path


def _start(*args):
    return subprocess.Popen([sys.executable, "-m", "gpurnn", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for_steps(log, more_than, proc, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and sum('"kind": "step"' in line for line in log.read_text().splitlines()) > more_than:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError(f"no step after {more_than} within {timeout} s")


def test_interrupts_save_one_run_at_a_time_and_resumes_continue_the_curve(tmp_path):
    text, out = _text(tmp_path / "text.txt"), tmp_path / "run"
    common = ("train", "--task", "charlm", "--data", text, "--out", out, "--hidden", "8", "--batch-size", "1",
              "--seq-len", "5", "--backend", "cpu", "--no-progress")
    first = _start(*common, "--steps", "10000000")
    _wait_for_steps(out / "metrics.jsonl", 0, first)
    for extra in ((), ("--resume",)):          # while it runs, no other run may use the folder
        busy = invoke(*common, "--steps", "10", *extra, code=2)
        assert f"in use by another training run (pid {first.pid})" in busy.stderr
    first.send_signal(signal.SIGINT)
    stdout, stderr = first.communicate(timeout=120)
    assert first.returncode == 130, stderr
    assert "interrupted by SIGINT after step" in stdout and "--resume" in stdout
    ckpt = load_checkpoint(out / "checkpoint.safetensors").meta["trainer"]
    assert ckpt["epoch"] == 0 and ckpt["step"] > 0 and (out / "loss.png").is_file()
    assert history(out)[1] == list(range(1, ckpt["step"] + 1))

    second = _start(*common, "--steps", "10000000", "--resume")
    _wait_for_steps(out / "metrics.jsonl", ckpt["step"], second)
    second.send_signal(signal.SIGTERM)
    stdout, stderr = second.communicate(timeout=120)
    assert second.returncode == 143 and "interrupted by SIGTERM" in stdout, stderr
    interrupted_at = load_checkpoint(out / "checkpoint.safetensors").meta["trainer"]["step"]
    assert interrupted_at > ckpt["step"]

    killed = subprocess.run([sys.executable, "-c", "import fcntl, os, signal, sys; "
                             "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); fcntl.flock(fd, fcntl.LOCK_EX); "
                             "os.write(fd, str(os.getpid()).encode()); os.kill(os.getpid(), signal.SIGKILL)",
                             str(out / ".lock")])
    assert killed.returncode == -signal.SIGKILL
    last = invoke(*common, "--steps", interrupted_at + 3, "--resume").stdout
    assert re.search(r"took over .* from pid \d+, which ended", last)
    assert f"stopped: {interrupted_at + 3} steps done" in last and "metric valid/loss_nats" in last
    data, steps, _ = history(out)
    assert steps == list(range(1, interrupted_at + 4)) and data["stop"] == "steps"
