"""Stacked and bidirectional models from the command line: a 2-layer bidirectional tagger with
dropout and a bidirectional classifier (pool "last") on slices of ../shared/data (skipped when
it is absent), trained, resumed settings kept, and scored the same one sentence at a time."""
import json

import numpy as np
import pytest

import gpurnn
from gpurnn.data import fixed_split, read_files_per_label
from test_cli import SHARED, metrics_of, needs_shared, run, slice_lines


@needs_shared
def test_bidirectional_two_layer_tagger(tmp_path):
    dev = SHARED / "en_ewt-ud-dev.conllu"
    train = slice_lines(dev, tmp_path / "train.conllu", 0, 8000)
    valid = slice_lines(dev, tmp_path / "valid.conllu", 8000, 9000)
    out = tmp_path / "run"
    run("train", "--task", "tag", "--data", train, "--valid", valid, "--out", out, "--hidden", "8", "--layers", "2",
        "--bidirectional", "--dropout", "0.2", "--epochs", "1", "--lr", "1e-2", "--backend", "cpu", "--no-progress")
    steps = json.loads((out / "metrics.json").read_text())["metrics"]["train/steps"]
    run("train", "--task", "tag", "--data", train, "--valid", valid, "--out", out, "--resume", "--epochs", "2",
        "--backend", "cpu", "--no-progress")                  # the run's own layers, directions and dropout
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["metrics"]["train/steps"] == 2 * steps
    assert summary["model"]["layers"] == 2 and summary["model"]["bidirectional"] is True
    assert summary["settings"]["dropout"] == 0.2
    model = gpurnn.load(out)
    assert model.params.layers == 2 and model.params.bidirectional
    assert "layers.1.bw.W" in model.params.names()
    tagged = run("tag", out, "The cat sat on the mat .").splitlines()[0]
    assert tagged.startswith("The/") and tagged.count("/") == 7
    m = metrics_of(run("eval", out, "--data", valid))
    assert 0 < m["valid/accuracy"] <= 1


@needs_shared
def test_bidirectional_classifier_scores_as_it_trains(tmp_path):
    pos = slice_lines(SHARED / "rt-polarity.pos", tmp_path / "p.txt", 0, 100)
    neg = slice_lines(SHARED / "rt-polarity.neg", tmp_path / "n.txt", 0, 100)
    out = tmp_path / "run"
    m = metrics_of(run("train", "--task", "classify", "--data", f"pos={pos}", "--data", f"neg={neg}", "--out", out,
                       "--hidden", "8", "--bidirectional", "--pool", "last", "--epochs", "1", "--backend", "cpu",
                       "--no-progress"))
    model, sentences = gpurnn.load(out), read_files_per_label({"pos": pos, "neg": neg})
    test = [sentences[i] for i in fixed_split(len(sentences), seed=0, test_fraction=0.1)[1]]
    right = [next(iter(model.classify(s.words))) == s.label for s in test]    # one by one: final_logits
    assert m["test/accuracy"] == pytest.approx(np.mean(right), abs=1e-6)
