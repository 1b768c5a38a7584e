"""The public API for data and trained models: gpurnn.data's names, text and sentences to ids and
batches, and gpurnn.load giving back a model that answers as gpurnn.generate does."""
import subprocess
import sys

import numpy as np
import pytest

import gpurnn
import gpurnn.data as data
from gpurnn.checkpoint import save_checkpoint
from gpurnn.generate import Reader, beam_complete, class_probabilities, sample, tag


def test_import_gpurnn_stays_light():
    code = ("import sys, gpurnn; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'matplotlib', 'typer', 'scipy'}))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"


def test_gpurnn_data_exports_its_readers():
    assert set(data.__all__) >= {"Vocab", "encode_text", "read_conllu", "tagged_batches", "labelled_batches",
                                 "read_files_per_label", "WordEncoder", "DataError"}
    assert all(hasattr(data, name) for name in data.__all__)


def test_encode_text_with_its_own_or_a_given_vocabulary():
    ids, vocab = data.encode_text("abca")
    assert vocab.decode(ids) == list("abca") and ids.dtype == np.int64
    again, same = data.encode_text("abz", vocab)
    assert same is vocab and again[2] == vocab.unk_id
    with pytest.raises(ValueError, match="text"):
        data.encode_text("")


def test_tagged_and_labelled_batches():
    sentences = [data.TaggedSentence(["the", "cat"], ["DET", "NOUN"]), data.TaggedSentence(["a"], ["DET"])]
    encoder = data.WordEncoder.build([s.words for s in sentences], min_count=1)
    tags = data.Vocab(["DET", "NOUN"], unk=None)
    (batch,) = data.tagged_batches(sentences, encoder, tags, 2, shuffle=False).iter_epoch(None)
    assert batch.inputs[:, 0].tolist() == encoder.encode(["the", "cat"]).tolist()
    assert batch.targets.tolist() == [[0, 0], [1, -1]] and batch.lengths.tolist() == [2, 1]
    labelled = [data.LabelledSentence(["good", "film"], "pos"), data.LabelledSentence(["bad"], "neg")]
    vocab = data.Vocab.build(w for s in labelled for w in s.words)
    (last,) = data.labelled_batches(labelled, vocab, ["neg", "pos"], 2, shuffle=False).iter_epoch(None)
    (mean,) = data.labelled_batches(labelled, vocab, ["neg", "pos"], 2, every_step=True, shuffle=False).iter_epoch(None)
    assert last.targets.tolist() == [1, 0] and mean.targets.tolist() == [[1, 0], [1, -1]]
    with pytest.raises(ValueError, match="missing \\['neg'\\]"):
        data.labelled_batches(labelled, vocab, ["pos"], 2)


def save_model(path, task, vocab, **meta):
    params = gpurnn.init_params(len(vocab), 8, meta.pop("n_out", len(vocab)), seed=1, dtype="float64")
    save_checkpoint(path / "checkpoint.safetensors", params,
                    meta={"task": task, "vocab": vocab.to_json(), "config": {"activation": "relu"}, **meta})
    return params


def test_load_a_run_folder_and_use_it_as_generate_does(tmp_path):
    vocab = data.word_vocab(["cat", "car", "dog"])
    params = save_model(tmp_path, "autocomplete", vocab)
    model = gpurnn.load(tmp_path)
    reader = Reader(params, vocab, activation="relu")
    assert model.task == "autocomplete" and model.activation == "relu" and model.vocab == vocab
    assert model.settings == {"activation": "relu"} and "vocab" not in model.meta
    assert model.complete("ca", k=2) == beam_complete(reader, "ca", k=2)
    assert model.sample("c", 12, seed=4) == sample(reader, "c", 12, seed=4)
    out = model.forward(vocab.encode("cat"))
    np.testing.assert_allclose(out.logits, reader.run(vocab.encode("cat").reshape(-1, 1))[0])
    with pytest.raises(ValueError, match="tag needs a model trained for tag, this one is for 'autocomplete'"):
        model.tag("the cat")


def test_load_a_tagger_and_a_classifier(tmp_path):
    encoder = data.WordEncoder.build([["the", "cat", "the"]], min_count=1)
    params = save_model(tmp_path, "tag", encoder.vocab, tags=["DET", "NOUN", "VERB"], n_out=3)
    tagged = gpurnn.load(tmp_path / "checkpoint.safetensors").tag("the Cat sat")
    tags, probs = tag(Reader(params, encoder.vocab, activation="relu"), encoder.encode(["the", "Cat", "sat"]),
                      ["DET", "NOUN", "VERB"])
    assert tagged == list(zip(["the", "Cat", "sat"], tags, probs.tolist()))
    vocab = data.Vocab.build(["good", "bad"])
    (tmp_path / "c").mkdir()
    params = save_model(tmp_path / "c", "classify", vocab, labels=["neg", "pos"], pool="mean", n_out=2)
    found = gpurnn.load(tmp_path / "c").classify("Good bad")
    p = class_probabilities(Reader(params, vocab, activation="relu"), vocab.encode(["good", "bad"]), pool="mean")
    assert found == pytest.approx({"neg": p[0], "pos": p[1]}) and list(found.values()) == sorted(p, reverse=True)
    with pytest.raises(ValueError, match="at least one word"):
        gpurnn.load(tmp_path / "c").classify("  ")
