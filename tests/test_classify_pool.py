"""How a classifier reads a sentence's class (`gpurnn.generate.sentence_probabilities`): the
mean of the steps' probabilities, the final states, or the max over the states; and, on a
slice of rt-polarity (skipped when ../shared/data is absent), a bidirectional max-pool
classifier with spelling signatures trained, scored and scored again one sentence at a time."""
import numpy as np
import pytest
from scipy.special import softmax

import gpurnn
from gpurnn.data import fixed_split, read_files_per_label
from gpurnn.generate import pooled_probabilities, sentence_probabilities
from test_cli import SHARED, metrics_of, needs_shared, run, slice_lines


@pytest.mark.parametrize("bidirectional", [False, True])
def test_sentence_probabilities_read_each_pool_over_real_steps(bidirectional):
    params = gpurnn.init_params(7, 5, 3, bidirectional=bidirectional, seed=2, dtype="float64")
    inputs = np.random.default_rng(0).integers(0, 7, size=(6, 2))
    lengths = np.array([6, 3])
    states = np.asarray(gpurnn.forward(params, inputs, lengths=lengths, backend="cpu").states)   # (T,B,D·d)
    V, c = params.V, params.c
    top = np.stack([states[:n, b].max(axis=0) for b, n in enumerate(lengths)])   # real steps only
    np.testing.assert_allclose(sentence_probabilities(params, inputs, lengths, "max"), softmax(top @ V + c, axis=1))
    logits = np.asarray(gpurnn.forward(params, inputs, lengths=lengths, backend="cpu").logits)
    np.testing.assert_allclose(sentence_probabilities(params, inputs, lengths, "mean"),
                               pooled_probabilities(logits, lengths, "mean"))
    d = params.hidden
    final = [np.concatenate([states[n - 1, b, :d], states[0, b, d:]]) for b, n in enumerate(lengths)]
    np.testing.assert_allclose(sentence_probabilities(params, inputs, lengths, "last"),
                               softmax(np.stack(final) @ V + c, axis=1))
    with pytest.raises(ValueError, match="pool must be one of"):
        sentence_probabilities(params, inputs, lengths, "sum")


@needs_shared
def test_bidirectional_max_pool_classifier_with_signatures(tmp_path):
    pos = slice_lines(SHARED / "rt-polarity.pos", tmp_path / "p.txt", 0, 150)
    neg = slice_lines(SHARED / "rt-polarity.neg", tmp_path / "n.txt", 0, 150)
    out = tmp_path / "run"
    m = metrics_of(run("train", "--task", "classify", "--data", f"pos={pos}", "--data", f"neg={neg}", "--out", out,
                       "--hidden", "8", "--bidirectional", "--pool", "max", "--signatures", "--epochs", "1",
                       "--backend", "cpu", "--no-progress"))
    model, sentences = gpurnn.load(out), read_files_per_label({"pos": pos, "neg": neg})
    assert model.meta["pool"] == "max" and model.settings["output"] == "max"
    assert any(s.startswith("<unk|") for s in model.vocab.symbols)          # rare words' signatures
    test = [sentences[i] for i in fixed_split(len(sentences), seed=0, test_fraction=0.1)[1]]
    right = [next(iter(model.classify(s.words))) == s.label for s in test]    # one by one
    assert m["test/accuracy"] == pytest.approx(np.mean(right), abs=1e-6) and m["test/sentences"] == 30
    lines = run("classify", out, "an unforgettably tender film").splitlines()
    assert {line.split()[0] for line in lines} == {"pos", "neg"}
