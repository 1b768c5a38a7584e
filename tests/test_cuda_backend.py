"""The CUDA backend's kernels against NumPy, its device-resident path, and (on a real GPU)
the whole engine against the CPU backend at realistic sizes.

Kernel tests take the `backend` fixture, so they run under the simulator (backend "cuda",
tiny sizes) and on a real GPU, and skip in a CPU-only run. Tests marked `cuda` need a GPU.
"""
import functools

import numpy as np
import pytest

import gpurnn
from conftest import SIMULATOR
from helpers import FIELDS, assert_close, make_case, reference_bptt, reference_forward, relative_error

DTYPES = (np.float32, np.float64)


@pytest.fixture
def be(backend):
    """The CUDA backend with the tiled Numba GEMM (the simulator's; the GPU's fallback)."""
    if backend != "cuda":
        pytest.skip("tests the CUDA backend's kernels; this run tests the CPU backend")
    from gpurnn.backends.cuda import CUDABackend

    return CUDABackend(gemm="numba")


def _rng(seed=0):
    return np.random.default_rng(seed)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, False), (False, True), (True, True)])
def test_gemm_with_transposes_and_odd_sizes(be, dtype, trans_a, trans_b):
    M, K, N = (5, 7, 3) if SIMULATOR else (67, 129, 33)
    rng = _rng()
    A = rng.normal(size=(K, M) if trans_a else (M, K)).astype(dtype)
    B = rng.normal(size=(N, K) if trans_b else (K, N)).astype(dtype)
    got = be.to_host(be.matmul(be.asarray(A), be.asarray(B), trans_a=trans_a, trans_b=trans_b))
    assert_close(got, (A.T if trans_a else A) @ (B.T if trans_b else B), dtype, "op(A) op(B)")


@pytest.mark.parametrize("dtype", DTYPES)
def test_affine_adds_the_bias(be, dtype):
    rng = _rng(1)
    X, V, c = rng.normal(size=(6, 5)).astype(dtype), rng.normal(size=(5, 3)).astype(dtype), rng.normal(size=3).astype(dtype)
    assert_close(be.to_host(be.affine(be.asarray(X), be.asarray(V), be.asarray(c))), X @ V + c, dtype, "X V + c")


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_xent_matches_numpy(be, dtype):
    rng = _rng(2)
    R, k = (6, 5) if SIMULATOR else (300, 257)
    Z = (3 * rng.normal(size=(R, k))).astype(dtype)
    targets = rng.integers(0, k, R)
    targets[::3] = -1
    loss, count, dZ = be.softmax_xent(be.asarray(Z), be.asarray(targets))
    z = Z.astype(np.float64)
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    kept = targets >= 0
    ref = p.copy()
    ref[kept, targets[kept]] -= 1
    ref[~kept] = 0
    assert count == kept.sum()
    assert_close(loss, -np.log(p[kept, targets[kept]]).sum(), dtype, "loss", scale=R)
    assert_close(be.to_host(dZ), ref, dtype, "ŷ − y")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows", ["one", "many"])
def test_reductions_are_right_and_deterministic(be, dtype, rows):
    rng = _rng(3)
    shape = (1, 3) if rows == "one" else (9, 5) if SIMULATOR else (3001, 70)   # one pass; two passes
    A = rng.normal(size=shape).astype(dtype)
    dA = be.asarray(A)
    sums = [be.to_host(be.sum_rows(dA)) for _ in range(2)]
    assert_close(sums[0], A.sum(0, dtype=np.float64), dtype, "column sums", scale=10)
    assert sums[0].tobytes() == sums[1].tobytes()
    squares = [be.sum_squares(dA) for _ in range(2)]
    assert squares[0] == squares[1]
    assert squares[0] == pytest.approx(float((A.astype(np.float64) ** 2).sum()), rel=1e-12)
    both = be.sum_squares(dA, be.asarray(A[:1] * 2))       # several arrays: one sum, one read back
    assert both == pytest.approx(squares[0] + float(((A[:1].astype(np.float64) * 2) ** 2).sum()), rel=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_scale_and_clamp(be, dtype):
    A = _rng(4).normal(size=(4, 3)).astype(dtype)
    dA = be.asarray(A)
    assert_close(be.to_host(be.scale(dA, 0.3)), A * dtype(0.3), dtype, "scale")
    np.testing.assert_array_equal(be.to_host(be.clamp(dA, 0.5)), np.clip(A, -0.5, 0.5))
    np.testing.assert_array_equal(be.to_host(dA), A)      # the input is left as it was


@pytest.mark.parametrize("dtype", DTYPES)
def test_token_rows_gather_and_scatter(be, dtype):
    rng = _rng(5)
    T, B, n, d = (4, 3, 5, 3) if SIMULATOR else (50, 40, 97, 130)
    tokens = rng.integers(0, n, (T, B))
    tokens[:, 0] = 1                                      # one row heavily repeated
    lengths = np.array([T, 0] + [T // 2] * (B - 2))
    tokens[T // 2:, 2:] = n + 7                           # past the lengths: never read
    U, b = rng.normal(size=(n, d)).astype(dtype), rng.normal(size=d).astype(dtype)
    XP = be.to_host(be.project_inputs(be.asarray(tokens), be.asarray(U), be.asarray(b), be.asarray(lengths)))
    active = np.arange(T)[:, None] < lengths[None, :]
    assert_close(XP[active], U[tokens[active]] + b, dtype, "x U + b")
    delta = rng.normal(size=(T, B, d)).astype(dtype)
    dU = [be.to_host(be.input_grad(be.asarray(tokens), be.asarray(delta), n, be.asarray(lengths))) for _ in range(2)]
    ref = np.zeros((n, d))
    np.add.at(ref, tokens[active], delta[active].astype(np.float64))
    assert_close(dU[0], ref, dtype, "dU", scale=10)
    assert dU[0].tobytes() == dU[1].tobytes()


@pytest.mark.parametrize("persistent,step_product", [(False, "fused"), (False, "gemm"), (True, "auto")],
                         ids=["step", "step-gemm", "persistent"])
@pytest.mark.parametrize("truncate", [None, 0, 1, 3])
@pytest.mark.parametrize("output", ["all", "last"])
def test_recurrence_backward_matches_cpu(be, truncate, output, persistent, step_product):
    """The CUDA truncated/exact backward (the per-step kernels, with the product fused or
    separate, and, where its plan fits, the persistent kernel) equals the CPU backend's,
    operation against operation."""
    from gpurnn.backends import get_backend

    cpu = get_backend("cpu")
    rng = _rng(6)
    T, B, d = (6, 3, 4) if SIMULATOR else (40, 17, 70)
    S = rng.uniform(-0.9, 0.9, (T + 1, B, d))
    W = rng.uniform(-0.5, 0.5, (d, d))
    lengths = np.array([T, 0] + list(rng.integers(1, T, B - 2)))
    G = rng.normal(size=(T, B, d)) * (np.arange(T)[:, None] < lengths[None, :])[..., None]
    g_last = rng.normal(size=(B, d))
    G, g_last = (G, None) if output == "all" else (None, g_last)
    want = cpu.recurrence_backward(G, g_last, S, W, lengths, 0, truncate)
    be.persistent, be.step_product = persistent, step_product
    dev = (lambda a: None if a is None else be.asarray(a))
    got = be.recurrence_backward(dev(G), dev(g_last), dev(S), dev(W), dev(lengths), 0, truncate)
    for name, a, b in zip(("Δ", "ds0"), got, want):
        assert_close(be.to_host(a), b, np.float64, name)


@pytest.mark.parametrize("step_product", ["fused", "gemm"])
@pytest.mark.parametrize("activation", ["tanh", "logistic", "relu"])
def test_step_path_matches_cpu_through_bptt(be, activation, step_product):
    """The step-by-step reference path (one launch per step, or a product then the fused
    epilogue) through the whole engine."""
    from gpurnn.backends.cuda import CUDABackend

    case = make_case(11, lengths=True, s0=True, activation=activation, truncate=1)
    want = gpurnn.bptt(case.params, case.inputs, case.targets, **case.kwargs(), backend="cpu")
    got = gpurnn.bptt(case.params, case.inputs, case.targets, **case.kwargs(),
                      backend=CUDABackend(gemm="numba", persistent=False, step_product=step_product))
    assert_close(got.loss, want.loss, np.float64, "loss")
    for (name, a), b in zip(got.grads.items(), want.grads):
        assert_close(a, b, np.float64, name)
    assert_close(got.ds0, want.ds0, np.float64, "ds0")


@pytest.mark.parametrize("step_product", ["fused", "gemm"])
@pytest.mark.parametrize("output,truncate,dtype", [("last", None, np.float64), ("all", None, np.float32)])
def test_step_kernels_match_the_per_term_reference(be, output, truncate, dtype, step_product):
    """The step kernels in the modes the other step test leaves out (exact BPTT, output "last",
    float32), against the independent per-term NumPy reference rather than the CPU backend;
    the forward states against the reference's step by step."""
    from gpurnn.backends.cuda import CUDABackend

    case = make_case(12, lengths=True, s0=True, output=output, truncate=truncate, dtype=dtype)
    step = CUDABackend(gemm="numba", persistent=False, step_product=step_product)
    got = gpurnn.bptt(case.params, case.inputs, case.targets, **case.kwargs(), backend=step)
    loss, grads, ds0 = reference_bptt(case)
    assert_close(got.loss, loss, dtype, "loss")
    for name in FIELDS:
        assert_close(getattr(got.grads, name), grads[name], dtype, name)
    assert_close(got.ds0, ds0, dtype, "ds0")
    states = gpurnn.forward(case.params, case.inputs, **case.forward_kwargs(), backend=step).states
    assert_close(states, reference_forward(case)[0][1:], dtype, "states")


@pytest.mark.parametrize("dtype", DTYPES)
def test_device_resident_round_trip(be, backend, dtype):
    """Params on the device give results on the device, equal to the host run's."""
    case = make_case(7, lengths=True, s0=True, dtype=dtype)
    on_device = case.params.map(be.asarray)
    host = gpurnn.bptt(case.params, case.inputs, case.targets, **case.kwargs(), backend=backend)
    dev = gpurnn.bptt(on_device, case.inputs, case.targets, **case.kwargs(), backend=backend)
    assert not isinstance(dev.grads.W, np.ndarray) and not isinstance(dev.ds0, np.ndarray)
    assert isinstance(host.grads.W, np.ndarray)
    assert dev.loss == host.loss
    for (name, a), b in zip(dev.grads.items(), host.grads):
        np.testing.assert_array_equal(be.to_host(a), b, err_msg=name)
    clipped, norm = gpurnn.clip_grad_norm(dev.grads, 1e-3)
    assert norm == pytest.approx(gpurnn.global_norm(host.grads), rel=1e-12)
    assert gpurnn.global_norm(clipped) == pytest.approx(1e-3, rel=1e-5)


@pytest.mark.parametrize("persistent", [False, True], ids=["step", "persistent"])
def test_arrays_are_converted_once_per_call_not_per_step(be, backend, persistent, monkeypatch):
    """The number of array conversions for kernel launches does not grow with T."""
    from gpurnn.backends import cuda_memory

    be.persistent = persistent
    calls = []
    convert = cuda_memory.kernel_view
    monkeypatch.setattr(cuda_memory, "kernel_view", lambda a: calls.append(1) or convert(a))
    counts = []
    for T in (3, 6):
        case = make_case(12, T=T, truncate=1)
        calls.clear()
        gpurnn.bptt(case.params, case.inputs, case.targets, **case.kwargs(), backend=be)
        counts.append(len(calls))
    assert counts[0] == counts[1]


def test_out_of_memory_names_the_sizes(be):
    from gpurnn.backends.cuda import DeviceMemoryError

    with pytest.raises(DeviceMemoryError, match=r"\(1099511627776, 1024\) float32"):
        be.zeros((2**40, 2**10), np.float32)


def test_auto_takes_cuda_only_on_a_real_gpu(backend):
    """What `auto` picks against facts about the machine, not the backend's own probe: an NVIDIA
    device node, CuPy installed, and not the simulator (which `auto` must never take)."""
    import glob
    import importlib.util

    from gpurnn.backends import get_backend

    gpu_here = bool(glob.glob("/dev/nvidia[0-9]*")) and importlib.util.find_spec("cupy") is not None
    assert get_backend("auto").name == ("cuda" if gpu_here and not SIMULATOR else "cpu")


def test_auto_asks_for_a_real_gpu_and_cuda_takes_the_simulator(backend, monkeypatch):
    import types

    import gpurnn.backends as backends

    gpu = types.SimpleNamespace(name="cuda", recurrence_forward=None)
    monkeypatch.setattr(backends, "_cuda", lambda: gpu)
    monkeypatch.setattr(backends, "cuda_usable", lambda simulator=True: simulator)    # only a simulator here
    assert backends.get_backend("auto").name == "cpu" and backends.get_backend("cuda") is gpu
    monkeypatch.setattr(backends, "cuda_usable", lambda simulator=True: True)         # a real GPU
    assert backends.get_backend("auto") is gpu


# --- a real GPU, realistic sizes -----------------------------------------------------------

REALISTIC = [  # (T, B, n, d, k, tokens)
    (1000, 4, 65, 128, 65, True),
    (200, 256, 64, 256, 64, True),
    (50, 32, 40, 1024, 128, False),
]


@functools.cache
def _realistic(T, B, n, d, k, tokens, dtype):
    """A realistic case and the CPU backend's answer (computed once per size and dtype)."""
    case = make_case(8, T=T, B=B, n=n, d=d, k=k, tokens=tokens, lengths=True, s0=True, dtype=dtype)
    case.params = gpurnn.init_params(n, d, k, seed=1, dtype=dtype)
    return case, gpurnn.bptt(case.params, case.inputs, case.targets, **case.kwargs(), backend="cpu")


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("T,B,n,d,k,tokens", REALISTIC)
@pytest.mark.parametrize("gemm,persistent,step_product", [("cublas", True, "auto"), ("cublas", False, "fused"),
                                                         ("cublas", False, "gemm"), ("numba", True, "auto")])
def test_realistic_sizes_match_cpu(T, B, n, d, k, tokens, dtype, gemm, persistent, step_product):
    from gpurnn.backends.cuda import CUDABackend

    case, want = _realistic(T, B, n, d, k, tokens, dtype)
    got = gpurnn.bptt(case.params, case.inputs, case.targets, **case.kwargs(),
                      backend=CUDABackend(gemm=gemm, persistent=persistent, step_product=step_product))
    limit = 1e-4 if dtype == np.float32 else 1e-10
    assert got.count == want.count
    assert abs(got.loss - want.loss) <= limit * abs(want.loss)
    for (name, a), b in zip(got.grads.items(), want.grads):
        assert relative_error(a, b) < limit, name
    assert relative_error(got.ds0, want.ds0) < limit


@pytest.mark.cuda
@pytest.mark.parametrize("truncate,output", [(5, "all"), (20, "last")])
def test_realistic_truncated_and_last(truncate, output):
    case = make_case(9, T=300, B=64, n=50, d=256, k=50, lengths=True, output=output, truncate=truncate,
                     dtype=np.float32)
    case.params = gpurnn.init_params(50, 256, 50, seed=2, dtype=np.float32)
    want = gpurnn.bptt(case.params, case.inputs, case.targets, **case.kwargs(), backend="cpu")
    got = gpurnn.bptt(case.params, case.inputs, case.targets, **case.kwargs(), backend="cuda")
    for (name, a), b in zip(got.grads.items(), want.grads):
        assert relative_error(a, b) < 1e-4, name


@pytest.mark.sim
def test_numba_launches_follow_cupys_current_stream(monkeypatch):
    """launch_stream: Numba's handle on CuPy's current stream, the default stream (0) for
    CuPy's default one; a fake CuPy here (the simulator has none), a real one below."""
    import types

    from gpurnn.backends import cuda_memory as mem

    current = types.SimpleNamespace(ptr=0)
    fake = types.SimpleNamespace(cuda=types.SimpleNamespace(get_current_stream=lambda: current))
    monkeypatch.setattr(mem, "cupy_module", lambda: fake)
    monkeypatch.setattr(mem.cuda, "external_stream", lambda ptr: ("numba stream", ptr))
    mem._numba_stream.cache_clear()
    assert mem.launch_stream() == 0
    current.ptr = 0x1234
    assert mem.launch_stream() == ("numba stream", 0x1234)
    mem._numba_stream.cache_clear()


@pytest.mark.cuda
def test_bptt_on_a_cupy_stream_equals_the_default_stream():
    import cupy as cp

    case = make_case(11, T=40, B=8, n=20, d=64, k=20, lengths=True, dtype=np.float32)
    params = gpurnn.init_params(20, 64, 20, seed=3, dtype=np.float32).map(cp.asarray)
    inputs, targets = cp.asarray(case.inputs), cp.asarray(case.targets)
    want = gpurnn.bptt(params, inputs, targets, lengths=case.lengths, backend="cuda")
    with cp.cuda.Stream(non_blocking=True):
        got = gpurnn.bptt(params, inputs, targets, lengths=case.lengths, backend="cuda")
        grads = [cp.asnumpy(g) for g in got.grads]
    assert got.loss == want.loss
    for a, b in zip(grads, want.grads):
        np.testing.assert_array_equal(a, cp.asnumpy(b))


@pytest.mark.cuda
def test_more_rows_than_a_grids_y_holds():
    """T·B = 600,000 rows: more than grid.y's 65,535 blocks × 8 (gather_rows) or × 16 (the
    Numba GEMM) would hold; rows run along the grid's x."""
    from gpurnn.backends.cuda import CUDABackend

    be, rng = CUDABackend(gemm="numba"), _rng(12)
    T, B, n, d, k = 6000, 100, 7, 8, 3
    tokens = rng.integers(0, n, (T, B))
    U, b = rng.normal(size=(n, d)).astype(np.float32), rng.normal(size=d).astype(np.float32)
    XP = be.project_inputs(be.asarray(tokens), be.asarray(U), be.asarray(b), be.asarray(np.full(B, T)))
    np.testing.assert_allclose(be.to_host(XP), U[tokens] + b, rtol=1e-6)
    V = rng.normal(size=(d, k)).astype(np.float32)
    Z = be.to_host(be.matmul(XP.reshape(T * B, d), be.asarray(V)))
    np.testing.assert_allclose(Z, (U[tokens] + b).reshape(T * B, d) @ V, rtol=1e-4, atol=1e-4)


@pytest.mark.cuda
def test_device_inputs_with_host_targets_and_no_lengths():
    """lengths=None is made where the inputs live (no copy per call); host targets follow it."""
    import cupy as cp

    case = make_case(13, T=6, B=3, n=5, d=8, k=4, dtype=np.float32)
    params = gpurnn.init_params(5, 8, 4, seed=1, dtype=np.float32)
    want = gpurnn.bptt(params, case.inputs, case.targets, backend="cpu")
    got = gpurnn.bptt(params.map(cp.asarray), cp.asarray(case.inputs), case.targets, backend="cuda")
    assert got.loss == pytest.approx(want.loss, rel=1e-5)
    assert relative_error(cp.asnumpy(got.grads.W), want.grads.W) < 1e-4
