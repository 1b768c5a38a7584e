"""Every user error on the command line: one line on stderr naming the option or file, exit
status 2, no traceback, no folder left behind. The table runs in-process (typer's CliRunner);
a few cases run through the real entry point (`python -m gpurnn`) in a subprocess."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from gpurnn.checkpoint import save_checkpoint
from gpurnn.cli import app
from gpurnn.model import init_params

runner = CliRunner()
WORDS = "\n".join(["process", "program", "progress", "project", "produce", "protect"] * 5)
TRAIN = ("train", "--task", "autocomplete", "--data", "{words}", "--out", "{tmp}/run", "--backend", "cpu")


def _files(tmp):
    """A word list, a one-line text, a single word, a model, that model cut in half, one with a cut vocabulary."""
    (tmp / "words.txt").write_text(WORDS)
    (tmp / "one.txt").write_text("a short line\n")
    (tmp / "word.txt").write_text("hello\n")
    symbols = ["<unk>", "<stop>", *"abcdefgh"]
    params = init_params(len(symbols), 4, len(symbols))
    meta = {"task": "autocomplete", "vocab": {"symbols": symbols, "unk": "<unk>"}}
    good = save_checkpoint(tmp / "model.safetensors", params, meta=meta)
    (tmp / "half.safetensors").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    save_checkpoint(tmp / "cut.safetensors", params, meta={**meta, "vocab": {"symbols": symbols[:3], "unk": "<unk>"}})
    (tmp / "empty").mkdir()
    return tmp


TRAIN_CASES = [                      # (extra arguments to TRAIN, what the one line must name)
    (["--hidden", "-5"], "--hidden"),
    (["--hidden", "0"], "--hidden"),
    (["--lr", "nan"], "--lr"),
    (["--lr", "0"], "--lr"),
    (["--seq-len", "0"], "--seq-len"),
    (["--max-norm", "-1"], "--max-norm"),
    (["--average", "1"], "--average"),               # a decay: 1 would never move from the start
    (["--activation", "foo"], "--activation"),
    (["--optimizer", "adamw"], "--optimizer"),
    (["--valid-fraction", "1.5"], "--valid-fraction"),
    (["--word-dropout", "inf"], "--word-dropout"),
    (["--truncate", "-2"], "--truncate"),
    (["--batch-size", "0"], "--batch-size"),
    (["--epochs", "0"], "--epochs"),
    (["--steps", "-1"], "--steps"),
    (["--resume", "--overwrite"], "--overwrite"),
    (["--schedule", "weekly"], "--schedule"),
    (["--layers", "0"], "--layers"),
    (["--dropout", "1"], "--dropout"),
    (["--dropout", "0.2"], "--layers 2"),            # one layer: nothing between layers
    (["--bidirectional"], "--bidirectional"),       # an autocomplete model must not read ahead
    (["--signatures"], "--signatures"),             # a classify option
]
USE_CASES = [                        # (command line, what the one line must name)
    (["sample", "{tmp}/nope/"], "CHECKPOINT"),
    (["sample", "{tmp}/half.safetensors"], "half.safetensors"),
    (["sample", "{tmp}/cut.safetensors"], "vocabulary"),
    (["sample", "{tmp}/model.safetensors", "--prime", ""], "--prime"),
    (["sample", "{tmp}/model.safetensors", "--length", "-3"], "--length"),
    (["sample", "{tmp}/model.safetensors", "--temperature", "nan"], "--temperature"),
    (["tag", "{tmp}/model.safetensors", ""], "SENTENCE"),
    (["classify", "{tmp}/model.safetensors", "  "], "SENTENCE"),
    (["classify", "{tmp}/model.safetensors", "a fine film"], "'autocomplete' model"),
    (["complete", "{tmp}/model.safetensors", "pro", "--k", "0"], "--beam"),
    (["eval", "{tmp}/nope", "--data", "{words}"], "CHECKPOINT"),
    (["train", "--task", "charlm", "--data", "{tmp}/one.txt", "--out", "{tmp}/run"], "one.txt"),
    (["train", "--task", "charlm", "--data", "{tmp}/missing.txt", "--out", "{tmp}/run"], "missing.txt"),
    (["train", "--task", "autocomplete", "--data", "{tmp}/word.txt", "--out", "{tmp}/run"], "--valid-fraction"),
    (["train", "--task", "autocomplete", "--data", "{words}", "--out", "{tmp}/empty", "--resume"], "--resume"),
    (["train", "--task", "autocomplete", "--data", "{words}", "--out", "{tmp}/model.safetensors"], "--out"),
    (["diagnose", "--out", "{tmp}/figures", "--page", "{tmp}/one.txt"], "--page"),      # no tables in it
    (["diagnose", "--out", "{tmp}/figures", "--page", "{tmp}/missing.md"], "--page"),
]


def _expand(args, tmp):
    return [a.format(tmp=tmp, words=tmp / "words.txt") for a in args]


@pytest.mark.parametrize("args, names", [(list(TRAIN) + extra, name) for extra, name in TRAIN_CASES] + USE_CASES,
                         ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_user_error_is_one_line_exit_2_and_leaves_nothing(tmp_path, args, names):
    before = sorted(p.relative_to(tmp_path) for p in _files(tmp_path).rglob("*"))
    result = runner.invoke(app, _expand(args, tmp_path))
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and names in lines[0], result.stderr
    assert "Traceback" not in result.output and result.stdout == ""
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_unwritable_out_is_refused_before_any_work(tmp_path):
    """As root every folder is writable, but /proc takes no new folders."""
    target = Path("/proc/gpurnn-run") if os.geteuid() == 0 else tmp_path / "locked" / "run"
    if os.geteuid() != 0:
        (tmp_path / "locked").mkdir(mode=0o555)
    _files(tmp_path)
    result = runner.invoke(app, _expand(list(TRAIN[:5]) + ["--out", str(target)], tmp_path))
    assert result.exit_code == 2 and len(result.stderr.splitlines()) == 1
    assert f"--out {target}: cannot write" in result.stderr and not target.exists()


def test_debug_shows_the_traceback(tmp_path):
    result = runner.invoke(app, ["--debug", "sample", str(tmp_path / "x.safetensors"), "--prime", ""])
    assert result.exit_code == 2 and "--prime" in result.stderr    # a usage error stays one line
    _files(tmp_path)
    result = runner.invoke(app, ["--debug", "sample", str(tmp_path / "half.safetensors")])
    assert isinstance(result.exception, ValueError)                 # raised, not turned into a line


@pytest.mark.parametrize("args, names", [
    (["train", "--task", "autocomplete", "--data", "{words}", "--out", "{tmp}/run", "--hidden", "-5"], "--hidden"),
    (["sample", "{tmp}/nope/"], "CHECKPOINT"),
    (["train", "--task", "charlm", "--data", "{tmp}/one.txt", "--out", "{tmp}/run"], "--batch-size"),
])
def test_real_entry_point(tmp_path, args, names):
    _files(tmp_path)
    done = subprocess.run([sys.executable, "-m", "gpurnn", *_expand(args, tmp_path)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert len(done.stderr.splitlines()) == 1 and names in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "run").exists()


def test_data_items_after_data_read_as_more_data(tmp_path):
    """`--data pos=A neg=B` works as `--data pos=A --data neg=B` (train and eval)."""
    pos, neg = tmp_path / "p.txt", tmp_path / "n.txt"
    pos.write_text("\n".join(f"a good fine film {i}" for i in range(30)))
    neg.write_text("\n".join(f"a bad dull film {i}" for i in range(30)))
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "--task", "classify", "--data", f"pos={pos}", f"neg={neg}", "--out", str(out),
                                 "--hidden", "4", "--epochs", "1", "--backend", "cpu", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "metric test/accuracy " in result.stdout and "metric test/sentences 6" in result.stdout
    again = runner.invoke(app, ["eval", str(out), "--data", f"pos={pos}", f"neg={neg}"])
    assert again.exit_code == 0 and "metric test/sentences 6" in again.stdout
    assert np.isclose(_metric(again.stdout, "test/accuracy"), _metric(result.stdout, "test/accuracy"))


def _metric(output, name):
    return float(next(line.split()[2] for line in output.splitlines() if line.startswith(f"metric {name} ")))
