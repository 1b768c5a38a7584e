"""`gpurnn train --task sequences`, `eval` and `predict` end to end on slices of the UEA data
sets in ../shared/data (skipped when absent), the standardisation's round trip through the
checkpoint, and one-line errors for malformed files."""
import numpy as np
import pytest
from test_cli import SHARED, metrics_of, needs_shared, run, runner

from gpurnn.bptt import output_logits
from gpurnn.checkpoint import load_checkpoint
from gpurnn.cli import app
from gpurnn.data.measurements import Standardizer, read_measurements, stratified_split


def ts_slice(src, dst, every):
    """The header of a .ts file and every `every`-th sequence of it."""
    lines = src.read_text().splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.strip().lower() == "@data") + 1
    dst.write_text("".join(lines[:start] + lines[start::every]))
    return dst


@needs_shared
@pytest.mark.parametrize("name,every,pool", [("JapaneseVowels", 9, "max"), ("BasicMotions", 4, "mean")])
def test_train_eval_predict_on_a_slice(tmp_path, name, every, pool):
    train = ts_slice(SHARED / f"{name}_TRAIN.ts", tmp_path / "train.ts", every)
    test = ts_slice(SHARED / f"{name}_TEST.ts", tmp_path / "test.ts", 2 * every)
    out = tmp_path / "run"
    trained = metrics_of(run("train", "--task", "sequences", "--data", train, "--test", test, "--pool", pool,
                             "--out", out, "--hidden", "8", "--epochs", "3", "--patience", "0",
                             "--recurrent-init", "orthogonal", "--backend", "cpu", "--no-progress"))
    truth = read_measurements(test)
    assert 0 <= trained["test/accuracy"] <= 1 and trained["test/sequences"] == len(truth.series)
    assert 0 < trained["test/baseline_majority"] < 1
    assert metrics_of(run("eval", out, "--data", test, "--backend", "cpu"))["test/accuracy"] == trained["test/accuracy"]
    predicted = run("predict", out, test, "--backend", "cpu").splitlines()
    assert len(predicted) == len(truth.series) and set(predicted) <= set(truth.classes)
    assert np.mean([p == t for p, t in zip(predicted, truth.labels)]) == pytest.approx(trained["test/accuracy"], abs=1e-6)
    # eval on the training file scores its held-out validation part (one sequence per class at least)
    held = metrics_of(run("eval", out, "--data", train, "--backend", "cpu"))["valid/sequences"]
    assert len(truth.classes) <= held < len(read_measurements(train).series) / 2


@needs_shared
def test_standardisation_round_trips_through_the_checkpoint(tmp_path):
    train = ts_slice(SHARED / "BasicMotions_TRAIN.ts", tmp_path / "train.ts", 4)
    out = tmp_path / "run"
    run("train", "--task", "sequences", "--data", train, "--out", out, "--hidden", "4", "--epochs", "1",
        "--pool", "last", "--seed", "3", "--valid-fraction", "0.2", "--backend", "cpu", "--no-progress")
    ckpt = load_checkpoint(out / "checkpoint.safetensors")
    data = read_measurements(train)
    kept, _ = stratified_split(data.labels, 0.2, seed=3)
    fitted = Standardizer.fit([data.series[i] for i in kept])          # the training part only
    stored = Standardizer.from_json(ckpt.meta["standardize"])
    np.testing.assert_allclose(stored.mean, fitted.mean, rtol=1e-15)
    np.testing.assert_allclose(stored.std, fitted.std, rtol=1e-15)
    inputs = np.stack([stored(x) for x in data.series], axis=1)        # equal lengths: (T, B, n)
    logits, _ = output_logits(ckpt.params, inputs, activation=ckpt.activation, output="last", backend="cpu")
    expected = [ckpt.meta["classes"][i] for i in logits.argmax(axis=1)]
    assert run("predict", out, train, "--backend", "cpu").splitlines() == expected


@needs_shared
def test_bad_ts_file_is_one_line_with_file_and_line(tmp_path):
    train = ts_slice(SHARED / "BasicMotions_TRAIN.ts", tmp_path / "train.ts", 4)
    lines = train.read_text().splitlines()
    lines[-1] = lines[-1].replace(",", ",oops,", 1)
    bad = tmp_path / "bad.ts"
    bad.write_text("\n".join(lines) + "\n")
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "--task", "sequences", "--data", str(bad), "--out", str(out)])
    assert result.exit_code == 2 and not out.exists()
    assert result.output.strip() == f"error: {bad}:{len(lines)}: channel 1: 'oops' is not a number " \
                                    "(expected comma-separated decimal numbers)"
