"""Which loop runs the CPU backend's recurrences (`gpurnn.backends.cpu_threads.plan`), and
every choice computing the same thing.

The sliced run (2 BLAS threads allowed: two slices in two threads) must give what the
serial run (1 BLAS thread: one slice) gives, in every mode, lengths and s0 included, and
both must match the per-term NumPy reference. B = 11 gives uneven slices. A bidirectional
layer under each plan (stepwise, slices, cells at once, serial) must give what the layer
run cell by cell with reversed copies (`layer_by_cell`, what the CUDA backend runs) gives.
"""
import numpy as np
import pytest
from helpers import FIELDS, make_case, reference_bptt, relative_error
from threadpoolctl import threadpool_limits

import gpurnn
from gpurnn.backends import cpu, cpu_threads, get_backend, layer_by_cell

SIZES = dict(T=9, B=11, n=5, d=23, k=4)


@pytest.fixture(autouse=True)
def split_small_problems(monkeypatch):
    """Split every batch of 2·MIN_ROWS rows or more, whatever its size (tests use small d)."""
    monkeypatch.setattr(cpu_threads, "MIN_STEP_WORK", 0)


def test_plan_names_each_choice(monkeypatch):
    monkeypatch.undo()                                    # the real thresholds
    with threadpool_limits(2):
        assert cpu_threads.plan(8, 512, 1, None, 100).kind == "stepwise"           # B·d² = 2²¹, exact
        sliced = cpu_threads.plan(8, 512, 1, 3, 100)                                # the same, truncated
        assert (sliced.kind, len(sliced.parts), sliced.concurrent, sliced.hold_blas) == ("compiled", 2, True, True)
        assert cpu_threads.plan(32, 64, 1, None, 100)[1:4] == ([slice(0, 32)], False, False)   # B·d² ≤ 2¹⁸
        assert cpu_threads.plan(16, 160, 1, None, 100)[1:4] == ([slice(0, 16)], False, True)    # < 2¹⁹
        assert cpu_threads.plan(32, 128, 1, None, 100)[1:4] == ([slice(0, 16), slice(16, 32)], True, True)  # 2¹⁹
        for B, d, truncate in ((32, 128, None), (256, 128, None), (8, 512, 3)):   # two cells at once
            assert cpu_threads.plan(B, d, 2, truncate, 100)[:4] == ("compiled", [slice(0, B)], True, True)
        assert not cpu_threads.plan(3, 4, 2, None, 5).concurrent                 # too little work to hand over
    with threadpool_limits(1):
        assert not cpu_threads.plan(32, 128, 2, None, 100).concurrent
        assert cpu_threads.plan(256, 128, 2, None, 100).kind == "stepwise"
    assert all(cpu_threads.plan(B, 64, D, t, 100).reason for B in (1, 64, 4096) for D in (1, 2) for t in (None, 2))


# the thresholds each plan needs at the test's tiny sizes, and the BLAS threads it runs on
PLANS = {"cells at once": ({"CELLS_AT_ONCE_WORK": 0}, 2), "stepwise": ({"STEPWISE_WORK": 0}, 1),
         "cells at once, sliced": ({"CELLS_AT_ONCE_WORK": 0, "MIN_STEP_WORK": 0}, 4), "one thread": ({}, 2)}


@pytest.mark.parametrize("plan", PLANS)
@pytest.mark.parametrize("truncate", [None, 2])
@pytest.mark.parametrize("last", [False, True])
def test_every_plan_runs_a_bidirectional_layer_as_cell_by_cell(monkeypatch, plan, truncate, last):
    monkeypatch.setattr(cpu_threads, "MIN_STEP_WORK", 1 << 40)
    thresholds, threads = PLANS[plan]
    for name, value in thresholds.items():
        monkeypatch.setattr(cpu_threads, name, value)
    monkeypatch.setattr(cpu_threads, "_threads", lambda: threads)
    be = get_backend("cpu")
    rng = np.random.default_rng(3)
    T, B, d = 6, 9, 5
    XP, G = rng.standard_normal((2, T, B, 2 * d))
    Ws = list(rng.standard_normal((2, d, d)) * 0.5)
    s0s = list(rng.standard_normal((2, B, d)))
    lengths = np.array([6, 0, 3, 6, 1, 5, 6, 2, 4])
    G[np.arange(T)[:, None] >= lengths[None, :]] = 0
    g_last = rng.standard_normal((B, 2 * d)) if last else None
    chosen = cpu_threads.plan(B, d, 2, truncate, T)
    assert (chosen.kind == "stepwise", len(chosen.parts), chosen.concurrent) == {
        "cells at once": (False, 1, True), "stepwise": (truncate is None, 1, False),
        "cells at once, sliced": (False, 2, True), "one thread": (False, 1, False)}[plan]
    H, Ss = be.layer_forward(XP, Ws, s0s, lengths, 0)
    back = be.layer_backward(G, g_last, Ss, Ws, lengths, 0, truncate)
    want_H, want_Ss = layer_by_cell.layer_forward(be, XP, Ws, s0s, lengths, 0)
    want = layer_by_cell.layer_backward(be, G, g_last, want_Ss, Ws, lengths, 0, truncate)
    np.testing.assert_allclose(H, want_H, rtol=1e-14, atol=1e-15)
    for got_S, want_S in zip(Ss, want_Ss):
        np.testing.assert_allclose(got_S, want_S, rtol=1e-14, atol=1e-15)
    for got, expected in zip((back[0], *back[1], *back[2]), (want[0], *want[1], *want[2])):
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-13)


def test_slices_cover_the_batch_and_follow_the_thread_limit():
    with threadpool_limits(2):
        parts = cpu_threads.plan(11, 23, 1, 3, 100).parts
        assert [(p.start, p.stop) for p in parts] == [(0, 5), (5, 11)]
    with threadpool_limits(1):
        assert len(cpu_threads.plan(11, 23, 1, 3, 100).parts) == 1
    with threadpool_limits(2):
        assert len(cpu_threads.plan(2 * cpu_threads.MIN_ROWS - 1, 23, 1, 3, 100).parts) == 1, "slices keep MIN_ROWS rows"


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
    # The slices' GEMMs have fewer rows than the whole batch's, and OpenBLAS may pick another
    # kernel (another order of the d-term sums) for them: each state can move by a few ulps per
    # step, and σ and W (spectral radius ~1) carry it on without growth over T = 9 steps.
    np.testing.assert_allclose(sliced.s_last, serial.s_last, rtol=1e-13, atol=1e-15)
    loss, grads, ds0 = reference_bptt(case)
    assert relative_error(sliced.loss, loss) < 1e-12
    assert max(relative_error(getattr(sliced.grads, f), grads[f]) for f in FIELDS) < 1e-10
    assert relative_error(sliced.ds0, ds0) < 1e-10


@pytest.mark.parametrize("output", ["all", "last"])
@pytest.mark.parametrize("tokens", [True, False])
def test_stepwise_numpy_loops_equal_compiled_loops(monkeypatch, output, tokens):
    """The exact loops with one NumPy GEMM per step (`plan`'s stepwise) give the compiled loops' results."""
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
    """At a size that `plan` runs stepwise by itself (B·d² = 2²¹, nothing patched), the exact
    loops match the per-term NumPy reference, lengths and s0 included."""
    sizes = dict(T=4, B=8, n=5, d=512, k=4)
    assert cpu_threads.plan(sizes["B"], sizes["d"], 1, None, 100).kind == "stepwise"
    case = make_case(11, activation=activation, lengths=True, s0=True, **sizes)
    got = gpurnn.bptt(case.params, case.inputs, case.targets, backend="cpu", **case.kwargs())
    loss, grads, ds0 = reference_bptt(case)
    assert relative_error(got.loss, loss) < 1e-12
    assert max(relative_error(getattr(got.grads, f), grads[f]) for f in FIELDS) < 1e-10
    assert relative_error(got.ds0, ds0) < 1e-10


def test_products_plan_needs_two_large_products_and_two_threads():
    large = cpu_threads.PRODUCTS_AT_ONCE_WORK
    with threadpool_limits(2):
        assert cpu_threads.products_plan([large, large]).concurrent
        assert not cpu_threads.products_plan([large, large - 1]).concurrent
        assert not cpu_threads.products_plan([large]).concurrent
    with threadpool_limits(1):
        assert not cpu_threads.products_plan([large, large]).concurrent


def test_products_at_once_equal_products_in_turn(monkeypatch):
    """A 2-layer bidirectional bptt whose independent products (the cells' dW, dU with dX, the
    head's dV with G) run on a thread each gives what it gives with them one after another."""
    params = gpurnn.init_params(5, 6, 3, layers=2, bidirectional=True, seed=1, dtype="float64")
    rng = np.random.default_rng(4)
    x, targets, lengths = rng.standard_normal((7, 9, 5)), rng.integers(0, 3, (7, 9)), np.array([7, 3, 0, 7, 1, 5, 7, 2, 6])
    in_turn = gpurnn.bptt(params, x, targets, lengths=lengths, input_grad=True, backend="cpu")
    plans = []
    monkeypatch.setattr(cpu_threads, "PRODUCTS_AT_ONCE_WORK", 0)
    monkeypatch.setattr(cpu_threads, "_threads", lambda: 2)
    monkeypatch.setattr(cpu, "products_plan", lambda macs: plans.append(cpu_threads.products_plan(macs)) or plans[-1])
    at_once = gpurnn.bptt(params, x, targets, lengths=lengths, input_grad=True, backend="cpu")
    assert sum(p.concurrent for p in plans) == 5          # the head's pair; per layer the dW pair; layer 1's dU, dX
    # the same products, each on 1 BLAS thread instead of every thread: OpenBLAS may split
    # or order a product's sums differently by thread count, so a few ulps of each sum
    assert at_once.loss == pytest.approx(in_turn.loss, rel=1e-13)
    for name in params.names():
        np.testing.assert_allclose(at_once.grads[name], in_turn.grads[name], rtol=1e-12, atol=1e-14, err_msg=name)
    np.testing.assert_allclose(at_once.dinputs, in_turn.dinputs, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("preset", [None, "7"])
def test_import_sets_openblas_spin_timeout_before_numpy_unless_the_user_did(preset):
    """`import gpurnn` sets OPENBLAS_THREAD_TIMEOUT (OpenBLAS's idle workers would otherwise spin
    ~0.1 s on the core the cells at once need) before NumPy loads OpenBLAS; a user's value stays."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    if preset:
        env["OPENBLAS_THREAD_TIMEOUT"] = preset
    # a finder that prints the setting at the moment NumPy is first imported, then lets it load
    code = ("import os, sys\n"
            "class Spy:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'numpy':\n"
            "            print(os.environ.get('OPENBLAS_THREAD_TIMEOUT'))\n"
            "            sys.meta_path.remove(self)\n"
            "sys.meta_path.insert(0, Spy())\n"
            "import gpurnn\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == [preset or "20"]


@pytest.mark.parametrize("first", ["numpy", "gpurnn"])
def test_openblas_workers_never_spin_beside_our_threads_whichever_is_imported_first(first):
    """After a multi-threaded NumPy product, tasks that `run` puts on threads at once (BLAS
    held at 1 thread) find OpenBLAS's workers not spinning, whether NumPy was imported before
    gpurnn (the timeout unset: `run` stops the workers) or after (the timeout bounded): the
    process uses almost no CPU while both tasks sleep 50 ms (a spinning worker would use up to
    50 ms)."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    imports = "import numpy as np\nimport gpurnn\n" if first == "numpy" else "import gpurnn\nimport numpy as np\n"
    code = imports + (
        "import time\n"
        "from threadpoolctl import threadpool_limits\n"
        "from gpurnn.backends import cpu_threads\n"
        "cpu_threads._threads = lambda: 2\n"
        "a, used = np.random.default_rng(0).random((600, 600)), []\n"
        "def idle():\n"
        "    start = time.process_time()\n"
        "    time.sleep(0.05)\n"
        "    used.append(time.process_time() - start)\n"
        "at_once = cpu_threads.Plan('compiled', [], True, True, 'test')\n"
        "for _ in range(3):\n"
        "    with threadpool_limits(2):\n"
        "        a @ a\n"
        "    cpu_threads.run(at_once, idle, [(), ()])\n"
        "print(len(used), max(used), len(cpu_threads._spinning_openblas()))\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    calls, used, stopped = out.stdout.split()
    assert int(calls) == 6 and float(used) < 0.01
    assert int(stopped) == (first == "numpy")        # NumPy's OpenBLAS, loaded without the timeout
