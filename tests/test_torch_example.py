"""examples/torch_word_language_model.py (PyTorch's word_language_model loop with nn.RNN swapped
for gpurnn.torch.RNN) on a tiny text: it trains to nn.RNN's numbers, and with --truncate."""
import importlib.util
import pathlib

import numpy as np
import pytest

pytest.importorskip("torch", reason="gpurnn.torch needs the [torch] extra (part of [test])")

EXAMPLE = pathlib.Path(__file__).parent.parent / "examples" / "torch_word_language_model.py"
SENTENCES = ["the cat sat on the mat", "a dog ran to the cat", "the mat was red and the dog was not",
             "on the red mat a cat sat", "the dog and the cat ran"]


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("torch_word_language_model", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def corpus(tmp_path):
    rng = np.random.default_rng(0)
    for name, lines in (("train", 40), ("valid", 8), ("test", 8)):
        text = "\n".join(SENTENCES[i] for i in rng.integers(0, len(SENTENCES), lines))
        (tmp_path / f"{name}.txt").write_text(text + "\n")
    return tmp_path


def _args(corpus, *extra):
    return ["--data", str(corpus), "--emsize", "8", "--nhid", "8", "--batch_size", "4", "--eval_batch_size", "2",
            "--bptt", "6", "--epochs", "2", "--lr", "2", "--log-interval", "10", *extra]


def test_trains_to_nn_rnn_numbers(example, corpus, capsys):
    ours = example.main(_args(corpus, "--dtype", "float64"))
    theirs = example.main(_args(corpus, "--dtype", "float64", "--torch-rnn"))
    assert len(ours[0]) == len(theirs[0]) > 10
    np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-9)          # every training batch's loss
    np.testing.assert_allclose(ours[1] + [ours[2]], theirs[1] + [theirs[2]], rtol=1e-9)
    assert ours[0][-1] < ours[0][0]
    assert "| end of training | test loss" in capsys.readouterr().out


def test_truncated_training_runs_and_differs(example, corpus):
    exact = example.main(_args(corpus, "--epochs", "1"))
    truncated = example.main(_args(corpus, "--epochs", "1", "--truncate", "1"))
    assert np.isfinite(truncated[0]).all() and truncated[0][-1] < truncated[0][0]
    assert truncated[0][0] == exact[0][0] and truncated[0][1] != exact[0][1]   # same start, other gradients


def test_missing_data_is_named(example, tmp_path):
    with pytest.raises(SystemExit, match="--data: .*train.txt is missing"):
        example.main(_args(tmp_path))
