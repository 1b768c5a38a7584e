"""What the command line shows: characters a model never saw are reported once and never
sampled; without a terminal (a log file) training prints lines, not a progress bar."""
import re

from typer.testing import CliRunner

from gpurnn.checkpoint import save_checkpoint
from gpurnn.cli import app
from gpurnn.model import init_params
from gpurnn.report import EvalLog

runner = CliRunner()


def test_unseen_characters_are_noted_once_and_never_sampled(tmp_path):
    """The model's bias makes `<unk>` by far its most probable output; sampling skips it."""
    symbols = ["<unk>", *"abc "]
    params = init_params(len(symbols), 4, len(symbols))
    params.c[0] = 50.0
    model = save_checkpoint(tmp_path / "char.safetensors", params,
                            meta={"task": "charlm", "vocab": {"symbols": symbols, "unk": "<unk>"}})
    result = runner.invoke(app, ["sample", str(model), "--prime", "abé é", "--length", "200"])
    assert result.exit_code == 0, result.output
    assert "<unk>" not in result.stdout and len(result.stdout) == len("abé é") + 200 + 1
    assert result.stderr == "note: 1 symbol of the prime never seen in training, read as <unk>: 'é'\n"
    greedy = runner.invoke(app, ["sample", str(model), "--prime", "ab", "--temperature", "0", "--length", "20"])
    assert greedy.exit_code == 0 and "<unk>" not in greedy.stdout and greedy.stderr == ""


def test_a_charlm_validation_text_with_unseen_characters_is_noted(tmp_path):
    (tmp_path / "train.txt").write_text("the cat sat on the mat. " * 40)
    (tmp_path / "valid.txt").write_text("the caté sat on the mat. " * 4)
    result = runner.invoke(app, ["train", "--task", "charlm", "--data", str(tmp_path / "train.txt"), "--valid",
                                 str(tmp_path / "valid.txt"), "--out", str(tmp_path / "run"), "--hidden", "4",
                                 "--batch-size", "2", "--seq-len", "10", "--steps", "1", "--backend", "cpu"])
    assert result.exit_code == 0, result.output
    notes = [line for line in result.stdout.splitlines() if line.startswith("note:")]
    assert notes == [f"note: 1 symbol of --valid {tmp_path / 'valid.txt'} never seen in training, read as <unk>: 'é'"]


def test_without_a_terminal_training_prints_lines(tmp_path):
    """CliRunner's stderr is no terminal, as a log file is: evaluations print a line each, no bar."""
    (tmp_path / "words.txt").write_text("\n".join(["alpha", "beta", "gamma", "delta"] * 5))
    result = runner.invoke(app, ["train", "--task", "autocomplete", "--data", str(tmp_path / "words.txt"), "--out",
                                 str(tmp_path / "run"), "--hidden", "4", "--steps", "4", "--eval-every", "2",
                                 "--backend", "cpu"])
    assert result.exit_code == 0, result.output
    assert len(re.findall(r"^step [24] epoch \d+: train/loss \S+ valid/loss \S+ tokens/s", result.stdout, re.M)) == 2
    assert "\r" not in result.output


def test_eval_log_prints_a_line_per_interval_between_evaluations():
    from gpurnn.train_config import EvalStats, StepStats

    lines = []
    log = EvalLog(lines.append, every_seconds=0)
    for step in (1, 2):
        log.on_step(None, StepStats(step, 0, 1.5 * step, 10, 10, 1.0, 0.1, 0.01, 1000.0))
    log.on_eval(None, EvalStats(2, 2.5, 10))
    assert lines == ["step 1 epoch 1: train/loss 1.5000 tokens/s 1,000", "step 2 epoch 1: train/loss 3.0000 tokens/s 1,000",
                     "step 2 epoch 1: train/loss - valid/loss 2.5000 tokens/s 1,000"]
