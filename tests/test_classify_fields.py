"""Context fields beside each word (the word bigram and negation scope of gpurnn.data.features) and `--features`
for classify end to end: train, `gpurnn eval`, `gpurnn classify`, `gpurnn.load(...).classify`."""
import numpy as np
import pytest
from test_cli import SHARED, metrics_of, needs_shared, run, slice_lines

import gpurnn
from gpurnn.batches import SentenceBatches
from gpurnn.data.features import FeatureEncoder, field_values
from gpurnn.data.word_dropout import WordDropout

SENTENCES = [["Not", "good", "."], ["not", "good", "at", "all"], ["good", "fun", "."]]


def test_bigram_values_ids_and_unknowns():
    assert field_values("bigram", ["Not", "good"]) == ["<s> not", "not good"]
    assert field_values("suffix2", ["Not", "good"]) == ["ot", "od"]
    assert field_values("negated", "it isn't very good , but no .".split()) == \
        ["-", "-", "very", "good", "-", "-", "-", "-"]                            # to the clause's end
    enc = FeatureEncoder.build(SENTENCES, ["bigram", "suffix2"], min_count=2)
    bigrams = enc.fields["bigram"]
    assert set(bigrams.symbols) == {"<unk>", "<s> not", "not good"}              # the pairs seen twice
    assert "at" in enc.fields["suffix2"]                                           # spelling: every value
    words, suffix_at = len(enc.words.vocab), enc.offsets["suffix2"]
    ids = enc.encode(["not", "good", "fun", "good"])
    assert ids.shape == (4, 3) and ids[:, 0].tolist() == enc.words.encode(["not", "good", "fun", "good"]).tolist()
    assert ids[:, 1].tolist() == [words + bigrams.id("<s> not"), words + bigrams.id("not good"),
                                  words + bigrams.unk_id, words + bigrams.unk_id]   # "good fun" seen once
    assert ids[:, 2].tolist() == [suffix_at + enc.fields["suffix2"].id(s) for s in ("ot", "od", "un", "od")]
    unknown = enc.unknown_ids()
    assert unknown[ids].tolist() == [[enc.words.vocab.unk_id, words + bigrams.unk_id, suffix_at]] * 4
    meta = {"task": "classify", **enc.to_meta()}
    again = FeatureEncoder.from_meta(enc.words.vocab, meta)
    assert np.array_equal(again.encode(["good", "not", "good"]), enc.encode(["good", "not", "good"]))
    with pytest.raises(ValueError, match="lower, bigram or negated, got 'trigram'"):
        FeatureEncoder.build(SENTENCES, ["trigram"])


def test_word_dropout_reads_each_field_as_its_own_unknown():
    enc = FeatureEncoder.build(SENTENCES * 2, ["bigram"], min_count=2)
    ids = [enc.encode(s) for s in SENTENCES * 20]
    source = WordDropout(SentenceBatches(ids, [0] * len(ids), 8, shuffle=False), 0.5, enc.unknown_ids())
    plain = np.concatenate([b.inputs.reshape(-1, 2) for b in source.iter_epoch(None)])
    dropped = np.concatenate([b.inputs.reshape(-1, 2) for b in source.iter_epoch(np.random.default_rng(0))])
    changed = dropped != plain
    assert changed[:, 0].any() and changed[:, 1].any()
    assert set(dropped[changed[:, 0], 0]) == {enc.words.vocab.unk_id}
    assert set(dropped[changed[:, 1], 1]) == {enc.offsets["bigram"] + enc.fields["bigram"].unk_id}


@pytest.mark.parametrize("options", [["--task", "charlm", "--features", "bigram"],
                                     ["--task", "classify", "--features", "bigram,trigram"]])
def test_bad_features_are_one_line_errors(options, tmp_path):
    from typer.testing import CliRunner

    from gpurnn.cli import app

    result = CliRunner().invoke(app, ["train", *options, "--data", str(tmp_path / "absent"), "--out",
                                      str(tmp_path / "o")])
    assert result.exit_code == 2 and "--features" in result.output and not (tmp_path / "o").exists()
    assert "Traceback" not in result.output


@needs_shared
def test_classifier_with_bigrams_on_a_polarity_slice(tmp_path):
    pos = slice_lines(SHARED / "rt-polarity.pos", tmp_path / "p.txt", 0, 150)
    neg = slice_lines(SHARED / "rt-polarity.neg", tmp_path / "n.txt", 0, 150)
    out = tmp_path / "run"
    m = metrics_of(run("train", "--task", "classify", "--data", f"pos={pos}", "--data", f"neg={neg}", "--out", out,
                       "--hidden", "8", "--pool", "max", "--features", "bigram,lower", "--epochs", "1",
                       "--backend", "cpu", "--no-progress"))
    model = gpurnn.load(out)
    assert list(model.meta["features"]) == ["bigram", "lower"]
    assert model.params.n_in == len(FeatureEncoder.from_meta(model.vocab, model.meta)) > len(model.vocab)
    again = metrics_of(run("eval", out, "--data", f"pos={pos}", "--data", f"neg={neg}"))
    assert again["test/accuracy"] == pytest.approx(m["test/accuracy"]) and m["test/sentences"] == 30
    sentence = "a gorgeous , witty , seductive movie ."
    printed = dict(line.split() for line in run("classify", out, sentence).splitlines())
    assert {k: round(v, 4) for k, v in model.classify(sentence).items()} == {k: float(v) for k, v in printed.items()}
