"""Nothing lost, ever: every check (data, options, backend, memory) runs before the run folder
is touched; --overwrite keeps the earlier run until the new one has saved a checkpoint and puts
it back when the new one fails before; a run that fails to start leaves its folder as it found
it (no lock, no empty metrics.jsonl, no folder it created). Through the `gpurnn` app (typer's
CliRunner) and, for the failures a user meets first, the real entry point."""
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from gpurnn.backends import cuda_usable
from gpurnn.cli import app
from gpurnn.run_folder import REPLACED, RunFolder

runner = CliRunner()
WORDS = "\n".join(["process", "program", "progress", "project", "produce", "protect"] * 5)


def _train(tmp, *extra):
    return ["train", "--task", "autocomplete", "--data", str(tmp / "words.txt"), "--out", str(tmp / "run"),
            "--hidden", "4", "--steps", "2", "--backend", "cpu", "--no-progress", *extra]


def _snapshot(folder):
    """{relative path: bytes} of every file under `folder` (folders as None)."""
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None for p in sorted(folder.rglob("*"))}


@pytest.fixture
def earlier_run(tmp_path):
    (tmp_path / "words.txt").write_text(WORDS)
    result = runner.invoke(app, _train(tmp_path))
    assert result.exit_code == 0, result.output
    return tmp_path


FAILING_STARTS = [       # (arguments that fail only after the data are read, what the one line names)
    (["--hidden", "2000000"], "--hidden 2000000"),            # ~100 TB of parameters and Adam's state
    (["--data", "{tmp}/nope.txt"], "nope.txt"),
    (["--steps", "1", "--epochs", "1"], "--epochs"),
]
if not cuda_usable():
    FAILING_STARTS.append((["--backend", "cuda"], "--backend"))


@pytest.mark.parametrize("extra, names", FAILING_STARTS, ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_overwrite_that_fails_a_check_keeps_the_earlier_run(earlier_run, extra, names):
    tmp = earlier_run
    before = _snapshot(tmp)
    extra = [a.format(tmp=tmp) for a in extra]
    result = runner.invoke(app, _train(tmp, "--overwrite", *extra))
    assert result.exit_code == 2, result.output
    assert len(result.stderr.splitlines()) == 1 and names in result.stderr, result.stderr
    assert _snapshot(tmp) == before


def test_a_run_that_fails_after_claiming_puts_the_earlier_run_back(earlier_run, monkeypatch):
    """A failure inside the claimed folder before the first checkpoint (here a MemoryError from
    the first step) restores the earlier run byte for byte, and leaves a new folder as nothing."""
    from gpurnn.train import Trainer

    def out_of_memory(self, *args, **kwargs):
        (self.out_dir / "metrics.jsonl").write_text("")        # what a started log leaves
        raise MemoryError("Unable to allocate 1.00 TiB for an array with shape (512, 524288)")

    monkeypatch.setattr(Trainer, "fit", out_of_memory)
    tmp = earlier_run
    before = _snapshot(tmp)
    result = runner.invoke(app, _train(tmp, "--overwrite"))
    assert result.exit_code == 2 and result.stderr.startswith("error: Unable to allocate"), result.output
    assert _snapshot(tmp) == before

    fresh = runner.invoke(app, _train(tmp, "--out", str(tmp / "new" / "run")))
    assert fresh.exit_code == 2 and not (tmp / "new").exists()


def test_overwrite_replaces_once_the_new_run_has_saved(earlier_run):
    tmp = earlier_run
    result = runner.invoke(app, _train(tmp, "--overwrite", "--steps", "3"))
    assert result.exit_code == 0, result.output
    assert "metric train/steps 3" in result.stdout and not (tmp / "run" / REPLACED).exists()


def test_a_killed_replacement_is_settled_by_the_next_claim(earlier_run):
    """A run killed after moving the earlier run aside and before saving: the next claim puts
    the earlier run back (and the next --overwrite replaces it as usual)."""
    tmp, out = earlier_run, earlier_run / "run"
    before = _snapshot(out)
    (out / REPLACED).mkdir()
    for item in list(out.iterdir()):
        if item.name not in (REPLACED, ".lock"):
            item.rename(out / REPLACED / item.name)
    (out / "metrics.jsonl").write_text('{"kind": "step"}\n')    # the killed run's log
    with RunFolder(out, resume=True).claim():
        pass
    assert _snapshot(out) == before


def test_real_entry_point_overwrite_with_a_huge_model(earlier_run):
    tmp = earlier_run
    before = _snapshot(tmp)
    done = subprocess.run([sys.executable, "-m", "gpurnn", *_train(tmp, "--overwrite", "--hidden", "2000000")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == "" and "Traceback" not in done.stderr
    assert len(done.stderr.splitlines()) == 1 and "--hidden 2000000" in done.stderr
    assert _snapshot(tmp) == before


def test_ctrl_c_while_the_data_are_read_exits_130_and_changes_nothing(earlier_run, monkeypatch):
    from gpurnn.tasks import get_task

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(type(get_task("autocomplete")), "prepare", interrupted)
    before = _snapshot(earlier_run)
    result = runner.invoke(app, _train(earlier_run, "--overwrite"))
    assert result.exit_code == 130 and "Traceback" not in result.output, result.output
    assert _snapshot(earlier_run) == before


def test_resume_with_other_data_is_refused_before_the_folder_is_touched(earlier_run):
    tmp = earlier_run
    (tmp / "other.txt").write_text("\n".join(["xylophone", "zebra", "quartz"] * 10))
    before = _snapshot(tmp / "run")
    args = _train(tmp, "--resume", "--steps", "4")
    args[args.index("--data") + 1] = str(tmp / "other.txt")
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "another vocabulary than the run's" in result.stderr, result.output
    assert _snapshot(tmp / "run") == before
