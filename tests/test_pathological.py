"""The pathological problems' generators produce the documented sequences and statistics."""
import numpy as np
import pytest

import gpurnn
from gpurnn.pathological import Adding, Memorization, TemporalOrder, make_problem


def test_adding_markers_and_target_formula():
    task = Adding(bins=20)
    sample = task.generate(50, 4000, np.random.default_rng(0))
    x = sample.inputs
    assert x.shape == (50, 4000, 2)
    assert (x[:, :, 1].sum(axis=0) == 2).all()                        # exactly two markers
    first, second = sample.markers.T
    assert first.min() == 0 and first.max() == 4                      # [0, T/10)
    assert second.min() == 5 and second.max() == 24                   # [T/10, T/2)
    cols = np.arange(4000)
    np.testing.assert_array_equal(x[first, cols, 1], 1)
    np.testing.assert_allclose(sample.values, x[first, cols, 0] + x[second, cols, 0])
    np.testing.assert_array_equal(sample.targets, np.minimum((sample.values * 10).astype(int), 19))
    assert 0 <= x[:, :, 0].min() and x[:, :, 0].max() <= 1
    assert sample.values.mean() == pytest.approx(1.0, abs=0.03)
    assert sample.values.var() == pytest.approx(1 / 6, abs=0.02)


def test_adding_error_is_the_squared_error_of_the_predicted_mean():
    task = Adding(bins=4)
    sample = task.generate(10, 3, np.random.default_rng(1))
    logits = np.zeros((10, 3, 4))
    logits[-1, :, 1] = 50.0                                             # all mass on bin 1: centre 0.75
    np.testing.assert_allclose(task.errors(logits, sample), (0.75 - sample.values) ** 2)


@pytest.mark.parametrize("symbols", [2, 3])
def test_temporal_order_positions_symbols_and_classes(symbols):
    task = TemporalOrder(symbols)
    T, B = 100, 3000
    sample = task.generate(T, B, np.random.default_rng(2))
    x = sample.inputs
    assert (x[0] == 6).all() and (x[-1] == 7).all()
    relevant = (x >= 4) & (x <= 5)
    assert (relevant.sum(axis=0) == symbols).all()
    windows = {2: [(10, 19), (40, 49)], 3: [(10, 19), (30, 39), (60, 69)]}[symbols]
    for i, (lo, hi) in enumerate(windows):
        assert sample.markers[:, i].min() == lo and sample.markers[:, i].max() == hi
    bits = x[sample.markers.T, np.arange(B)].T - 4                      # (B, m), X=0 Y=1
    np.testing.assert_array_equal(sample.targets, bits @ (2 ** np.arange(symbols - 1, -1, -1)))
    assert np.bincount(sample.targets, minlength=2 ** symbols).min() > B / 2 ** symbols * 0.8
    assert task.n_out == 2 ** symbols and x.max() < task.n_in


def test_temporal_order_short_windows_stay_inside():
    for symbols in (2, 3):
        task = TemporalOrder(symbols)
        starts = [lo for lo, _ in task.positions(10)]
        assert all(1 <= lo < hi <= 9 for lo, hi in task.positions(10))
        assert starts == sorted(set(starts))


def test_memorization_layout():
    task = Memorization(bits=5)
    sample = task.generate(20, 50, np.random.default_rng(3))
    x, y = sample.inputs, sample.targets
    assert x.shape == y.shape == (30, 50)
    assert set(np.unique(x[:5])) <= {0, 1}
    assert (x[5:24] == 2).all() and (x[24] == 3).all() and (x[25:] == 2).all()
    np.testing.assert_array_equal(y[25:], x[:5])
    assert (y[:25] == -1).all()


def test_evaluate_counts_wrong_sequences():
    """An untrained model is far from solving; a perfect oracle logit scores 0 errors."""
    task = make_problem("temporal-order-2")
    params = gpurnn.init_params(task.n_in, 4, task.n_out, dtype="float64")
    result = task.evaluate(params, 12, sequences=300, chunk=128, backend="cpu")
    assert result.sequences == 300 and 0.3 < result.error <= 1 and not result.solved
    sample = task.generate(12, 5, np.random.default_rng(0))
    oracle = np.zeros((12, 5, 4))
    oracle[-1, np.arange(5), sample.targets] = 1
    assert task.errors(oracle, sample).sum() == 0


def test_generators_are_seeded_and_check_arguments():
    a = make_problem("adding").generate(20, 3, np.random.default_rng(7))
    b = make_problem("adding").generate(20, 3, np.random.default_rng(7))
    np.testing.assert_array_equal(a.inputs, b.inputs)
    with pytest.raises(ValueError, match="length"):
        make_problem("temporal-order-3").generate(5, 2, np.random.default_rng(0))
    with pytest.raises(ValueError, match="batch"):
        make_problem("memorization").generate(5, 0, np.random.default_rng(0))
    with pytest.raises(ValueError, match="problem"):
        make_problem("parity")
    with pytest.raises(ValueError, match="symbols"):
        TemporalOrder(4)
    with pytest.raises(ValueError, match="bins"):
        Adding(bins=1)
    with pytest.raises(ValueError, match="bits"):
        Memorization(bits=0)


def test_memorization_errors_need_every_bit_right():
    task = Memorization(bits=5)
    sample = task.generate(3, 4, np.random.default_rng(4))
    logits = np.zeros((13, 4, 2))
    logits[-5:][np.arange(5)[:, None], np.arange(4)[None, :], sample.targets[-5:]] = 1.0
    assert task.errors(logits, sample).tolist() == [0, 0, 0, 0]
    logits[-1, 2] = logits[-1, 2, ::-1]                                  # one wrong bit in sequence 2
    assert task.errors(logits, sample).tolist() == [0, 0, 1, 0]


def test_adding_evaluates_dense_inputs_through_forward():
    task = Adding()
    params = gpurnn.init_params(task.n_in, 4, task.n_out, dtype="float64")
    result = task.evaluate(params, 10, sequences=200, backend="cpu")
    assert 0.05 < result.error < 1.0 and result.threshold == 0.04 and not result.solved
