"""Data readers: vocabularies, char text, word lists, CoNLL-U, labelled sentences; malformed
files raise errors naming the file and the line."""
import importlib.util
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from gpurnn.data.conll import read_conllu
from gpurnn.data.errors import DataError
from gpurnn.data.sentences import fixed_split, read_files_per_label, read_label_column
from gpurnn.data.signatures import WordEncoder, signature
from gpurnn.data.text import char_vocab, read_text, split_text
from gpurnn.data.vocab import UNK, Vocab
from gpurnn.data.words import STOP, docstring_words, encode_words, read_words, word_vocab

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"real data not present at {SHARED}")
needs_conllu = pytest.mark.skipif(importlib.util.find_spec("conllu") is None,
                                  reason="the conllu package is not installed (a bare GPU image)")

CONLLU = "# sent_id = 1\n1\tThe\tthe\tDET\tDT\t_\t2\tdet\t_\t_\n2\tcat\tcat\tNOUN\tNN\t_\t0\troot\t_\t_\n\n"


def write(tmp_path, name, text, mode="w"):
    path = tmp_path / name
    path.write_bytes(text) if mode == "wb" else path.write_text(text)
    return path


def test_vocab_roundtrip_and_unknown():
    v = Vocab.build("abracadabra")
    assert v.symbols[0] == UNK and v.symbols[1] == "a"
    ids = v.encode("abz")
    assert ids.dtype == np.int64 and ids[2] == v.unk_id
    assert v.decode(v.encode("cab")) == list("cab")
    assert Vocab.from_json(v.to_json()) == v
    with pytest.raises(ValueError, match="not in the vocabulary"):
        Vocab(["x"], unk=None).id("y")


def test_text_and_split(tmp_path):
    path = write(tmp_path, "t.txt", "hello\nworld\n")
    text = read_text(path)
    assert text == "hello\nworld\n"
    ids = char_vocab(text).encode(text)
    train, valid = split_text(ids, 0.25)
    assert len(train) == 9 and len(valid) == 3


def test_bad_bytes_name_file_and_line(tmp_path):
    path = write(tmp_path, "t.txt", b"fine\nbad \xff here\n", "wb")
    with pytest.raises(DataError, match=r"t\.txt:2: not valid utf-8"):
        read_text(path)


def test_empty_and_missing_files(tmp_path):
    with pytest.raises(DataError, match="empty"):
        read_text(write(tmp_path, "e.txt", ""))
    with pytest.raises(DataError, match="cannot read"):
        read_text(tmp_path / "missing.txt")


def test_words_with_stop_on_both_ends(tmp_path):
    words = read_words(write(tmp_path, "w.txt", "cat\n\ndog\n"))
    assert words == ["cat", "dog"]
    vocab = word_vocab(words)
    (x, _), (y, _) = encode_words(words, vocab)
    assert vocab.decode(x) == [STOP, "c", "a", "t"]
    assert vocab.decode(y) == ["c", "a", "t", STOP]


def test_word_list_with_two_words_on_a_line(tmp_path):
    with pytest.raises(DataError, match=r"w\.txt:2: expected one word per line"):
        read_words(write(tmp_path, "w.txt", "cat\nhot dog\n"))


def test_docstring_words_are_running_text(tmp_path):
    (tmp_path / "a.py").write_text('"""Return the value; the getValue of my_name.\n\nReturn it."""\n')
    (tmp_path / "b.py").write_text('def f():\n    """The VALUE of the thing."""\n')
    assert docstring_words(min_len=3, min_count=1, modules_dir=tmp_path) == [
        "return", "the", "value", "the", "return", "the", "the", "thing"]
    assert docstring_words(min_len=3, min_count=2, modules_dir=tmp_path) == ["return", "the", "the", "return",
                                                                             "the", "the"]
    words = docstring_words()
    assert len(words) > 50_000 and len(set(words)) > 2000
    assert Counter(words).most_common(1)[0][0] == "the"
    assert {"return", "function", "string"} <= set(words) and "eturn" not in words
    assert all(w.isalpha() and w.islower() for w in words)


@needs_conllu
def test_conllu_reads_words_and_upos(tmp_path):
    text = CONLLU.replace("1\tThe", "1-2\tThecat\t_\t_\t_\t_\t_\t_\t_\t_\n1\tThe")
    (sentence,) = read_conllu(write(tmp_path, "a.conllu", text))
    assert sentence.words == ["The", "cat"] and sentence.tags == ["DET", "NOUN"]


@needs_conllu
@pytest.mark.parametrize("bad, line, message", [
    ("2\tcat\tcat\n", 3, "expected 10 tab-separated"),
    ("x\tcat\tcat\tNOUN\tNN\t_\t0\troot\t_\t_\n", 3, "malformed CoNLL-U line"),
    ("2\tcat\tcat\t_\tNN\t_\t0\troot\t_\t_\n", 3, "word .cat. has no UPOS tag"),
])
def test_conllu_errors_name_file_and_line(tmp_path, bad, line, message):
    text = CONLLU.replace("2\tcat\tcat\tNOUN\tNN\t_\t0\troot\t_\t_\n", bad)
    with pytest.raises(DataError, match=rf"b\.conllu:{line}: {message}"):
        read_conllu(write(tmp_path, "b.conllu", text))


def test_signatures_and_word_encoder():
    assert signature("Wrestling") == "<unk|Xx|||ing>"
    assert signature("1990s") == "<unk|x|d||s>"
    assert signature("NASA") == "<unk|XX|||>"
    assert signature("well-known") == "<unk|x||h|>"
    enc = WordEncoder.build([["the", "the", "running", "Paris"]])
    ids = enc.encode(["the", "jumping", "Berlin", "%%%"])
    assert enc.known("the") and not enc.known("jumping")
    assert ids[1] == enc.vocab.id("<unk|x|||ing>") and ids[2] == enc.vocab.id("<unk|Xx|||>")
    assert ids[3] == enc.vocab.unk_id                   # a signature never seen in training


def test_labelled_sentences_two_layouts(tmp_path):
    pos, neg = write(tmp_path, "p.txt", "Good film\n"), write(tmp_path, "n.txt", "bad\n\nawful one\n")
    s = read_files_per_label({"pos": pos, "neg": neg})
    assert [(x.words, x.label) for x in s] == [(["good", "film"], "pos"), (["bad"], "neg"), (["awful", "one"], "neg")]
    t = read_label_column(write(tmp_path, "c.tsv", "pos\tgood film\nneg\tbad\n"))
    assert t[1].label == "neg" and t[0].words == ["good", "film"]


def test_label_column_error_names_line(tmp_path):
    with pytest.raises(DataError, match=r"c\.tsv:2: expected 'label"):
        read_label_column(write(tmp_path, "c.tsv", "pos\tgood\nno tab here\n"))


def test_fixed_split_is_the_seeded_permutation():
    train, test = fixed_split(10662)
    order = np.random.default_rng(0).permutation(10662)
    assert len(test) == 1066 and np.array_equal(np.concatenate((train, test)), order)


@needs_shared
def test_real_files_read():
    assert len(read_conllu(SHARED / "en_ewt-ud-dev.conllu")) == 2001
    s = read_files_per_label({"pos": SHARED / "rt-polarity.pos", "neg": SHARED / "rt-polarity.neg"})
    assert len(s) == 10662 and s[0].label == "pos" and s[-1].label == "neg"
    assert len(read_text(SHARED / "tinyshakespeare.txt")) == 1115394


def test_conllu_is_imported_only_to_read_conllu(tmp_path, monkeypatch):
    """The rest of gpurnn works without the conllu package (a bare GPU image); reading
    CoNLL-U then says what to install."""
    monkeypatch.setitem(sys.modules, "conllu", None)
    monkeypatch.setitem(sys.modules, "conllu.exceptions", None)
    with pytest.raises(ModuleNotFoundError, match=r"needs the conllu package \(pip install conllu\)"):
        read_conllu(write(tmp_path, "a.conllu", CONLLU))
