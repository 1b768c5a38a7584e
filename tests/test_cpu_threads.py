"""The CPU backend's time loops split over batch slices and threads (`gpurnn.backends.cpu_threads`).

The sliced run (2 BLAS threads allowed: two slices in two threads) must give what the
serial run (1 BLAS thread: one slice) gives, in every mode, lengths and s0 included, and
both must match the per-term NumPy reference. B = 11 gives uneven slices.
"""
import numpy as np
import pytest
from helpers import FIELDS, make_case, reference_bptt, relative_error
from threadpoolctl import threadpool_limits

import gpurnn
from gpurnn.backends import cpu_threads

SIZES = dict(T=9, B=11, n=5, d=23, k=4)


@pytest.fixture(autouse=True)
def split_small_problems(monkeypatch):
    """Split every batch of 2·MIN_ROWS rows or more, whatever its size (tests use small d)."""
    monkeypatch.setattr(cpu_threads, "MIN_STEP_WORK", 0)


def test_slices_cover_the_batch_and_follow_the_thread_limit():
    with threadpool_limits(2):
        parts = cpu_threads.slices(11, 23)
        assert [(p.start, p.stop) for p in parts] == [(0, 5), (5, 11)]
    with threadpool_limits(1):
        assert len(cpu_threads.slices(11, 23)) == 1
    with threadpool_limits(2):
        assert len(cpu_threads.slices(2 * cpu_threads.MIN_ROWS - 1, 23)) == 1, "slices keep MIN_ROWS rows"


@pytest.mark.parametrize("output", ["all", "last"])
@pytest.mark.parametrize("truncate", [None, 3])
@pytest.mark.parametrize("tokens", [True, False])
def test_sliced_loops_equal_serial_loops_and_reference(output, truncate, tokens):
    case = make_case(7, tokens=tokens, output=output, truncate=truncate, lengths=True, s0=True, **SIZES)
    runs = {}
    for threads in (1, 2):
        with threadpool_limits(threads):
            runs[threads] = gpurnn.bptt(case.params, case.inputs, case.targets, backend="cpu", **case.kwargs())
    serial, sliced = runs[1], runs[2]
    assert sliced.loss == pytest.approx(serial.loss, rel=1e-13)
    for name in FIELDS:
        np.testing.assert_allclose(getattr(sliced.grads, name), getattr(serial.grads, name), rtol=1e-12,
                                   atol=1e-14, err_msg=name)
    np.testing.assert_allclose(sliced.ds0, serial.ds0, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(sliced.s_last, serial.s_last)
    loss, grads, ds0 = reference_bptt(case)
    assert relative_error(sliced.loss, loss) < 1e-12
    assert max(relative_error(getattr(sliced.grads, f), grads[f]) for f in FIELDS) < 1e-10
    assert relative_error(sliced.ds0, ds0) < 1e-10


@pytest.mark.parametrize("output", ["all", "last"])
@pytest.mark.parametrize("tokens", [True, False])
def test_stepwise_numpy_loops_equal_compiled_loops(monkeypatch, output, tokens):
    """The exact loops with one NumPy GEMM per step (`stepwise_blas`) give the compiled loops' results."""
    case = make_case(8, tokens=tokens, output=output, truncate=None, lengths=True, s0=True, **SIZES)
    compiled = gpurnn.bptt(case.params, case.inputs, case.targets, backend="cpu", **case.kwargs())
    monkeypatch.setattr(cpu_threads, "STEPWISE_WORK", 0)
    stepwise = gpurnn.bptt(case.params, case.inputs, case.targets, backend="cpu", **case.kwargs())
    assert stepwise.loss == pytest.approx(compiled.loss, rel=1e-13)
    for name in FIELDS:
        np.testing.assert_allclose(getattr(stepwise.grads, name), getattr(compiled.grads, name), rtol=1e-12,
                                   atol=1e-14, err_msg=name)
    np.testing.assert_allclose(stepwise.ds0, compiled.ds0, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(stepwise.s_last, compiled.s_last, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("activation", ["tanh", "logistic"])
def test_a_large_step_takes_the_stepwise_loops_and_matches_the_reference(activation):
    """At a size that reaches `stepwise_blas` by itself (B·d² = 2²¹, nothing patched), the exact
    loops match the per-term NumPy reference, lengths and s0 included."""
    sizes = dict(T=4, B=8, n=5, d=512, k=4)
    assert cpu_threads.stepwise_blas(sizes["B"], sizes["d"])
    case = make_case(11, activation=activation, lengths=True, s0=True, **sizes)
    got = gpurnn.bptt(case.params, case.inputs, case.targets, backend="cpu", **case.kwargs())
    loss, grads, ds0 = reference_bptt(case)
    assert relative_error(got.loss, loss) < 1e-12
    assert max(relative_error(getattr(got.grads, f), grads[f]) for f in FIELDS) < 1e-10
    assert relative_error(got.ds0, ds0) < 1e-10
