"""Using a model: sampling, completion with log-probabilities, beam search, tagging, classifying."""
import math

import numpy as np
import pytest
from scipy.special import log_softmax, softmax

import gpurnn
from gpurnn.data.vocab import Vocab
from gpurnn.data.words import STOP, word_vocab
from gpurnn.generate import (Reader, beam_complete, class_probabilities, complete, pooled_probabilities, sample,
                             tag)

WORDS = ["cat", "car", "cart", "dog"]


@pytest.fixture
def reader():
    vocab = word_vocab(WORDS)
    return Reader(gpurnn.init_params(len(vocab), 8, len(vocab), seed=3, dtype="float64"), vocab)


def logp_of(reader, prefix, completion):
    """log p(completion, <stop> | <stop> prefix) from one forward pass over the whole word."""
    v = reader.vocab
    ids = np.concatenate(([v.id(STOP)], v.encode(prefix + completion)))
    logits, _ = reader.run(ids.reshape(-1, 1))
    lp = log_softmax(logits[:, 0], axis=1)
    targets = list(v.encode(completion)) + [v.id(STOP)]
    return sum(lp[len(prefix) + i, t] for i, t in enumerate(targets))


def test_stepping_equals_one_pass(reader):
    ids = reader.vocab.encode("cart")
    logits, _ = reader.run(ids.reshape(-1, 1))
    z, s = reader.state(ids[:2])
    for t in range(2, 4):
        z, s = reader.step(ids[t:t + 1], s)
    np.testing.assert_allclose(z[0], logits[-1, 0], rtol=1e-12)


def test_sample_is_seeded_and_greedy_at_zero(reader):
    a = sample(reader, "ca", 20, temperature=1.0, seed=5)
    assert a == sample(reader, "ca", 20, temperature=1.0, seed=5) and a != sample(reader, "ca", 20, seed=6)
    assert sample(reader, "ca", 10, temperature=0) == sample(reader, "ca", 10, temperature=0, seed=9)
    with pytest.raises(ValueError, match="prime"):
        sample(reader, "", 5)
    with pytest.raises(ValueError, match="temperature"):
        sample(reader, "c", 5, temperature=-1)


def test_complete_returns_its_log_probability(reader):
    word, lp = complete(reader, "ca", max_len=40)
    assert word.startswith("ca")
    if len(word) < 2 + 40:                      # ended with <stop>
        assert lp == pytest.approx(logp_of(reader, "ca", word[2:]), rel=1e-9)


def test_beam_search_finds_the_most_probable_short_words(reader):
    """Exhaustive check over every completion of up to 3 characters: with a wide beam and
    max_len 3, the beam's best k are exactly the k best words."""
    letters = [s for s in reader.vocab.symbols if s not in ("<unk>", STOP)]
    candidates = [""] + letters + [a + b for a in letters for b in letters] + \
                 [a + b + c for a in letters for b in letters for c in letters]
    exact = sorted(((c, logp_of(reader, "c", c)) for c in candidates), key=lambda x: -x[1])[:3]
    found = beam_complete(reader, "c", k=3, beam=len(letters) ** 3, max_len=3)
    assert [w for w, _ in found] == ["c" + w for w, _ in exact]
    np.testing.assert_allclose([lp for _, lp in found], [lp for _, lp in exact], rtol=1e-9)
    with pytest.raises(ValueError, match="k <= beam"):
        beam_complete(reader, "c", k=4, beam=2)


def test_tag_and_classify_shapes():
    vocab = Vocab(["<unk>", "the", "cat"])
    r = Reader(gpurnn.init_params(3, 6, 4, seed=0), vocab)
    tags, probs = tag(r, vocab.encode(["the", "cat", "sat"]), ["A", "B", "C", "D"])
    assert len(tags) == 3 and set(tags) <= {"A", "B", "C", "D"} and np.all((probs > 0.25) & (probs <= 1))
    for pool in ("last", "mean"):
        p = class_probabilities(r, vocab.encode(["the", "cat"]), pool=pool)
        assert p.shape == (4,) and math.isclose(p.sum(), 1.0, rel_tol=1e-9)


def test_pooled_probabilities_respect_lengths():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4, 2, 3))
    lengths = np.array([4, 2])
    last = pooled_probabilities(logits, lengths, "last")
    np.testing.assert_allclose(last[1], softmax(logits[1, 1]))
    mean = pooled_probabilities(logits, lengths, "mean")
    np.testing.assert_allclose(mean[1], softmax(logits[:2, 1], axis=1).mean(axis=0))
    with pytest.raises(ValueError, match="pool"):
        pooled_probabilities(logits, lengths, "max")
