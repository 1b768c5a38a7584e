"""The tagger's spelling fields (gpurnn.data.features), word dropout toward the signature,
and `--features` end to end: train, `gpurnn tag`, `gpurnn eval`, `gpurnn.load(...).tag`."""
import numpy as np
import pytest
from test_cli import SHARED, metrics_of, needs_shared, run, slice_lines

import gpurnn
from gpurnn.batches import SentenceBatches
from gpurnn.data.conll import TaggedSentence
from gpurnn.data.features import FeatureEncoder, feature
from gpurnn.data.signatures import WordEncoder, signature
from gpurnn.data.word_dropout import WordDropout, frequency_dropout
from gpurnn.tasks.tagging import signature_dropout

SENTENCES = [["The", "dog", "is", "running"], ["the", "dogs", "ran"], ["A", "dog", "is", "sleeping"]]


def test_feature_values():
    assert [feature(f, "Running") for f in ("suffix3", "suffix1", "prefix2", "lower", "signature")] == \
        ["ing", "g", "ru", "running", signature("Running")]
    assert feature("suffix3", "is") == "^is" and feature("prefix2", "A") == "a$"


def test_encoder_offsets_unknown_values_and_meta_round_trip():
    enc = FeatureEncoder.build(SENTENCES, ["suffix3", "prefix1"])
    words = len(enc.words.vocab)
    ids = enc.encode(["The", "cat", "is", "running"])
    assert ids.shape == (4, 3) and len(enc) == words + len(enc.fields["suffix3"]) + len(enc.fields["prefix1"])
    assert ids[:, 0].tolist() == enc.words.encode(["The", "cat", "is", "running"]).tolist()
    suffix = enc.fields["suffix3"]
    assert ids[3, 1] == words + suffix.id("ing") and ids[1, 1] == words + suffix.unk_id     # "cat" never seen
    assert np.all((words + len(suffix) <= ids[:, 2]) & (ids[:, 2] < len(enc)))
    meta = {"task": "tag", **enc.to_meta()}
    again = FeatureEncoder.from_meta(gpurnn.data.Vocab.from_json(meta["vocab"]), meta)
    assert np.array_equal(again.encode(["A", "cat", "sleeping"]), enc.encode(["A", "cat", "sleeping"]))
    old = {"task": "tag", "vocab": enc.words.vocab.to_json()}                       # a checkpoint without fields
    plain = FeatureEncoder.from_meta(enc.words.vocab, old)
    assert plain.encode(["the", "cat"]).tolist() == enc.words.encode(["the", "cat"]).tolist() and len(plain) == words
    with pytest.raises(ValueError, match="features must be suffixK"):
        FeatureEncoder.build(SENTENCES, ["suffix"])


def test_word_dropout_reads_words_as_their_signatures():
    enc = FeatureEncoder.build(SENTENCES * 3, ["suffix2"], min_count=2, all_signatures=True)
    to_signature = enc.signature_ids()
    dog = enc.words.vocab.id("dog")
    assert enc.words.vocab.symbols[to_signature[dog]] == signature("dog")
    fields = np.arange(len(enc.words.vocab), len(enc))
    assert np.array_equal(to_signature[fields], fields)                               # fields stay as they are
    chance = np.where(np.arange(len(enc)) == to_signature, 0.0, 0.5)
    ids = [enc.encode(s) for s in SENTENCES * 20]
    source = WordDropout(SentenceBatches(ids, [np.zeros(len(x), np.int64) for x in ids], 8, shuffle=False),
                         chance, to_signature)

    def read(rng):
        return np.concatenate([b.inputs.reshape(-1, 2) for b in source.iter_epoch(rng)])

    plain, first = read(None), read(np.random.default_rng(1))
    assert np.array_equal(first, read(np.random.default_rng(1)))                      # the rng replays the masks
    assert np.array_equal(first[:, 1], plain[:, 1])                                   # fields never dropped
    dropped = first[:, 0] != plain[:, 0]
    assert np.array_equal(first[dropped, 0], to_signature[plain[dropped, 0]])
    own = plain[:, 0] != to_signature[plain[:, 0]]                                    # words with ids of their own
    assert not dropped[~own].any() and 0.35 < dropped[own].mean() < 0.65
    assert frequency_dropout([0, 1, 3], 1.0).tolist() == [0.0, 0.5, 0.25]
    tagged = signature_dropout(source.source, enc, [TaggedSentence(s, ["X"] * len(s)) for s in SENTENCES * 3], 0.5)
    assert tagged.p[dog] == pytest.approx(1 / (1 + 6)) and tagged.p[to_signature[dog]] == 0   # "dog" seen 6 times


@pytest.mark.parametrize("options,option", [
    (["--task", "charlm", "--features", "suffix2"], "--features"),
    (["--task", "classify", "--signature-dropout", "0.2"], "--signature-dropout"),
    (["--task", "tag", "--features", "suffix2,sufix3"], "--features"),
])
def test_bad_feature_options_are_one_line_errors(options, option, tmp_path):
    from typer.testing import CliRunner

    from gpurnn.cli import app

    result = CliRunner().invoke(app, ["train", *options, "--data", str(tmp_path / "absent"), "--out",
                                      str(tmp_path / "o")])
    assert result.exit_code == 2 and option in result.output and not (tmp_path / "o").exists()


@needs_shared
def test_tagging_with_features_on_an_ewt_slice(tmp_path):
    dev = SHARED / "en_ewt-ud-dev.conllu"
    train = slice_lines(dev, tmp_path / "train.conllu", 0, 8000)
    valid = slice_lines(dev, tmp_path / "valid.conllu", 8000, 11000)
    out = tmp_path / "run"
    m = metrics_of(run("train", "--task", "tag", "--data", train, "--valid", valid, "--out", out, "--hidden", "16",
                       "--epochs", "2", "--lr", "1e-2", "--bidirectional", "--features", "suffix2,suffix3,signature",
                       "--signature-dropout", "0.2",
                       "--backend", "cpu", "--no-progress"))
    assert m["valid/accuracy"] > 0.6
    assert metrics_of(run("eval", out, "--data", valid))["valid/accuracy"] == pytest.approx(m["valid/accuracy"])
    tagged = run("tag", out, "The cat sat on the mat .").splitlines()[0]
    assert tagged.startswith("The/") and tagged.count("/") == 7
    model = gpurnn.load(out)
    assert set(model.meta["features"]) == {"suffix2", "suffix3", "signature"}
    assert [t for _, t, _ in model.tag("The cat sat on the mat .")] == [w.split("/")[1] for w in tagged.split()]
    assert model.params.n_in > len(WordEncoder(model.vocab).vocab)
