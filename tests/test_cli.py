"""The command line end to end: small versions of the real tasks on slices of ../shared/data
(skipped when it is absent), resuming, the commands that use a model, and errors for
malformed files that name the file and the line."""
import json
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import gpurnn
from gpurnn.cli import app
from gpurnn.data import fixed_split, read_files_per_label

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"real data not present at {SHARED}")
runner = CliRunner()


def run(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def metrics_of(output):
    return {m[1]: float(m[2]) for m in re.finditer(r"^metric (\S+) (\S+)$", output, re.M)}


def slice_lines(src, dst, start, stop):
    lines = src.read_text(encoding="utf-8").splitlines(keepends=True)[start:stop]
    dst.write_text("".join(lines), encoding="utf-8")
    return dst


def test_help_everywhere():
    for command in ([], ["train"], ["eval"], ["sample"], ["complete"], ["tag"], ["classify"]):
        assert "Usage" in run(*command, "--help")


def test_autocomplete_train_resume_complete(tmp_path):
    words = tmp_path / "words.txt"
    words.write_text("\n".join(["process", "program", "progress", "project", "produce", "protect"] * 5))
    out = tmp_path / "run"
    common = ("train", "--task", "autocomplete", "--data", words, "--out", out, "--hidden", "16",
              "--backend", "cpu", "--no-progress")
    first = run(*common, "--steps", "4")
    assert {"valid/loss_nats", "valid/bits_per_char", "train/seconds"} <= set(metrics_of(first))
    for name in ("checkpoint.safetensors", "metrics.json", "loss.png"):
        assert (out / name).is_file()
    run(*common, "--steps", "8", "--resume")
    assert json.loads((out / "metrics.json").read_text())["metrics"]["train/steps"] == 8
    completions = run("complete", out, "pro", "--k", "2", "--max-len", "8")
    assert completions.startswith("pro: pro")
    assert metrics_of(run("eval", out, "--data", words))["valid/loss_nats"] > 0


@needs_shared
def test_charlm_on_shakespeare_slice(tmp_path):
    text = slice_lines(SHARED / "tinyshakespeare.txt", tmp_path / "shake.txt", 0, 600)
    out = tmp_path / "run"
    m = metrics_of(run("train", "--task", "charlm", "--data", text, "--out", out, "--hidden", "32",
                       "--batch-size", "8", "--seq-len", "25", "--steps", "60", "--lr", "1e-2",
                       "--backend", "cpu", "--no-progress"))
    assert m["valid/loss_nats"] < 3.2                        # below the uniform 4.2 over ~60 symbols
    assert run("sample", out, "--prime", "ROMEO:", "--length", "40").startswith("ROMEO:")
    assert metrics_of(run("eval", out, "--data", text))["valid/loss_nats"] == pytest.approx(m["valid/loss_nats"], rel=1e-6)


@needs_shared
def test_tagging_on_ewt_slice_prints_baseline(tmp_path):
    dev = SHARED / "en_ewt-ud-dev.conllu"
    train = slice_lines(dev, tmp_path / "train.conllu", 0, 12000)
    valid = slice_lines(dev, tmp_path / "valid.conllu", 12000, 16000)
    out = tmp_path / "run"
    run("train", "--task", "tag", "--data", train, "--valid", valid, "--out", out, "--hidden", "32",
        "--epochs", "3", "--lr", "1e-2", "--backend", "cpu", "--no-progress")
    m = metrics_of(run("eval", out, "--data", valid))
    assert {"valid/accuracy", "valid/accuracy_unseen_words", "valid/baseline_most_frequent_tag"} <= set(m)
    assert m["valid/accuracy"] > 0.6 and 0.5 < m["valid/baseline_most_frequent_tag"] < 0.95
    tagged = run("tag", out, "The cat sat on the mat .").splitlines()[0]
    assert tagged.startswith("The/") and tagged.count("/") == 7


@needs_shared
def test_polarity_slice_and_classify(tmp_path):
    pos = slice_lines(SHARED / "rt-polarity.pos", tmp_path / "p.txt", 0, 300)
    neg = slice_lines(SHARED / "rt-polarity.neg", tmp_path / "n.txt", 0, 300)
    out = tmp_path / "run"
    m = metrics_of(run("train", "--task", "classify", "--data", f"pos={pos}", "--data", f"neg={neg}", "--out", out,
                       "--hidden", "16", "--epochs", "2", "--backend", "cpu", "--no-progress"))
    assert m["test/sentences"] == 60
    model, sentences = gpurnn.load(out), read_files_per_label({"pos": pos, "neg": neg})
    test = [sentences[i] for i in fixed_split(len(sentences), seed=0, test_fraction=0.1)[1]]
    right = [next(iter(model.classify(s.words))) == s.label for s in test]    # scored again, one by one
    assert m["test/accuracy"] == pytest.approx(np.mean(right), abs=1e-6)
    assert m["test/baseline_majority"] == pytest.approx(np.mean([s.label == model.meta["majority"] for s in test]), abs=1e-6)
    again = tmp_path / "again"
    run("train", "--task", "classify", "--data", f"pos={pos}", "--data", f"neg={neg}", "--out", again,
        "--hidden", "16", "--epochs", "1", "--seed", "1", "--average", "0.9", "--backend", "cpu", "--no-progress")
    assert gpurnn.load(again).settings["average"] == 0.9
    whole = run("train", "--task", "classify", "--data", f"pos={pos}", "--data", f"neg={neg}", "--out",
                tmp_path / "whole", "--hidden", "8", "--epochs", "1", "--valid-fraction", "0", "--backend", "cpu",
                "--no-progress")      # all 540 training sentences (17 batches), no validation
    assert "17 batches per epoch" in whole and metrics_of(whole)["test/sentences"] == 60
    both = metrics_of(run("eval", out, "--data", f"pos={pos}", "--data", f"neg={neg}", "--ensemble", again))
    assert both["test/models"] == 2 and both["test/sentences"] == 60
    lines = run("classify", out, "a moving and funny film").splitlines()
    assert {line.split()[0] for line in lines} == {"pos", "neg"}
    assert sum(float(line.split()[1]) for line in lines) == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("task, name, text, where", [
    ("tag", "bad.conllu", "1\tThe\tthe\tDET\tDT\t_\t2\tdet\t_\t_\n2\tcat\n\n", "bad.conllu:2"),
    ("autocomplete", "bad.txt", "fine\ntwo words\n", "bad.txt:2"),
    ("classify", "bad.tsv", "pos\tgood\nno label column\n", "bad.tsv:2"),
])
def test_malformed_files_name_file_and_line(tmp_path, task, name, text, where):
    path = tmp_path / name
    path.write_text(text)
    result = runner.invoke(app, ["train", "--task", task, "--data", str(path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert where in result.output


def test_word_dropout_masks_some_words_and_replays_with_the_rng():
    from gpurnn.batches import SentenceBatches
    from gpurnn.tasks.classify import WordDropout

    source = SentenceBatches([np.arange(1, 41)] * 4, [1, 0, 1, 0], 2)
    wd = WordDropout(source, 0.5, unk_id=0)
    first = [b.inputs for b in wd.iter_epoch(np.random.default_rng(3))]
    again = [b.inputs for b in wd.iter_epoch(np.random.default_rng(3))]
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    dropped = np.mean([np.mean(x == 0) for x in first])
    assert 0.3 < dropped < 0.7
    assert all(np.array_equal(a.inputs, b.inputs) for a, b in zip(wd.iter_epoch(None), source.iter_epoch(None)))
    with pytest.raises(ValueError, match="word_dropout"):
        WordDropout(source, 1.0, 0)


@pytest.mark.slow
def test_demo_runs_offline(tmp_path, capsys):
    """`make demo` in miniature: stdlib docstring words, 20 steps, completions scored and printed."""
    from gpurnn.demo import PREFIXES, main

    main(["--steps", "20", "--hidden", "16", "--backend", "cpu", "--no-progress"], out=tmp_path / "demo")
    printed = capsys.readouterr().out
    assert all(f"\n{p}: " in printed for p in PREFIXES) and "metric valid/loss_nats" in printed
    scores = metrics_of(printed)
    assert 0.5 < scores["valid/baseline_top3_from_3"] < 1 and 0 <= scores["valid/top3_from_3"] < scores["valid/baseline_top3_from_3"]
    assert {"checkpoint.safetensors", "loss.png", "metrics.json"} <= {p.name for p in (tmp_path / "demo").iterdir()}
