"""When a persistent kernel cannot run on the card at hand, training goes on: the planner's
run-time check (`persistent_plan.launch_blocker`, from the compiled kernel's own figures) and
the backend's fallback to the step path with one warning per reason."""
import types

import numpy as np
import pytest

from conftest import SIMULATOR
from gpurnn.kernels import persistent_plan as pp


def test_a_kernel_whose_registers_allow_fewer_threads_is_blocked():
    the_plan = pp.Plan("block", "a test", threads=512, smem=40000)
    assert pp.launch_blocker(the_plan, regs_per_thread=120, max_threads_per_block=512) is None
    why = pp.launch_blocker(the_plan, regs_per_thread=168, max_threads_per_block=384)
    assert "168 registers" in why and "384 threads" in why and "512" in why


def test_registers_times_threads_over_the_multiprocessor_is_blocked():
    the_plan = pp.Plan("block", "a test", threads=1024, smem=40000)
    # 65 registers round up to 72 per thread: 72 · 1024 > 65536, whatever the driver said
    why = pp.launch_blocker(the_plan, regs_per_thread=65, max_threads_per_block=1024)
    assert "exceed the multiprocessor's 65536 registers" in why
    assert pp.launch_blocker(the_plan, regs_per_thread=64, max_threads_per_block=1024) is None
    assert pp.block_registers(65, 1024) == 72 * 1024


def test_shared_memory_over_the_device_or_a_refused_opt_in_is_blocked():
    big = pp.custom_plan("block", 1, 256, np.float32, rows=1, rreg=64)      # 198,656 bytes
    assert big.smem > pp.DEFAULT_DYNAMIC_SMEM
    small_device = pp.Limits(smem_per_block=101376, smem_per_sm=102400, sm_count=84)
    assert "device offers 101376" in pp.launch_blocker(big, regs_per_thread=100, max_threads_per_block=1024,
                                                       limits=small_device)
    why = pp.launch_blocker(big, regs_per_thread=100, max_threads_per_block=1024,
                            optin_error="CUDA_ERROR_INVALID_VALUE")
    assert "refused the opt-in to 198656 bytes" in why and "CUDA_ERROR_INVALID_VALUE" in why
    small = pp.custom_plan("block", 1, 64, np.float32, rows=1, rreg=64)     # under 48 KB: no opt-in needed
    assert pp.launch_blocker(small, regs_per_thread=100, max_threads_per_block=1024, optin_error="refused") is None


def test_a_cooperative_grid_must_be_co_resident():
    coop = pp.plan(64, 512, np.float32)
    assert coop.variant == "coop"
    assert pp.launch_blocker(coop, regs_per_thread=154, max_threads_per_block=256) is None
    two_sms = pp.Limits(sm_count=2)
    why = pp.launch_blocker(coop, regs_per_thread=154, max_threads_per_block=256, limits=two_sms)
    assert f"cooperative grid of {coop.grid} blocks" in why and "only 2 can be resident" in why
    # the driver's own count, where it answered, wins over the estimate
    assert "only 3 can be resident" in pp.launch_blocker(coop, regs_per_thread=154, max_threads_per_block=256,
                                                         coop_grid_limit=3)


@pytest.mark.sim
def test_backend_falls_back_to_the_step_path_and_warns_once(monkeypatch):
    import gpurnn
    from gpurnn.backends import cuda as cuda_backend
    from gpurnn.backends import cuda_recurrence
    from gpurnn.kernels import persistent_backward as pb
    from gpurnn.kernels import persistent_forward as pf

    def refuse(*args, **kwargs):
        raise pp.PersistentUnavailable("a test says no")

    monkeypatch.setattr(pf, "persistent_forward_cells", refuse)
    monkeypatch.setattr(pb, "persistent_backward_cells", refuse)
    monkeypatch.setattr(cuda_recurrence, "_warned", set())
    params = gpurnn.init_params(5, 4, 3, seed=0, dtype="float64")
    rng = np.random.default_rng(0)
    inputs, targets = rng.integers(0, 5, (4, 2)), rng.integers(0, 3, (4, 2))
    be = cuda_backend.CUDABackend(gemm="numba", persistent=True)
    want = gpurnn.bptt(params, inputs, targets, backend="cpu")
    with pytest.warns(cuda_backend.PersistentFallbackWarning, match="a test says no") as caught:
        got = gpurnn.bptt(params, inputs, targets, backend=be)
        again = gpurnn.bptt(params, inputs, targets, backend=be)
    assert len(caught) == 2        # forward and backward, each once: the second call warns no more
    assert {"forward", "backward"} == {w.message.args[0].split()[2] for w in caught}
    for result in (got, again):
        assert abs(result.loss - want.loss) < 1e-10
        for a, b in zip(result.grads, want.grads):
            np.testing.assert_allclose(a, b, atol=1e-10)


@pytest.mark.skipif(SIMULATOR, reason="the driver module's real bindings (no device needed), not the simulator's")
def test_the_shared_memory_opt_in_tries_both_driver_handle_kinds(monkeypatch):
    """numba-cuda's function handle is a CUkernel (cuKernelSetAttribute) in recent releases and a
    CUfunction (cuFuncSetAttribute) in older ones: the opt-in tries one, then the other, and
    reports both answers when neither takes it."""
    import numba.cuda.cudadrv.driver as numba_driver

    from gpurnn.kernels import persistent_common as pc

    calls = []

    def refuse(name):
        def call(*args):
            calls.append(name)
            raise TypeError(f"{name} does not take this handle")
        return call

    def accept(name):
        return lambda *args: calls.append(name)

    cufunc = types.SimpleNamespace(handle=object(), device=types.SimpleNamespace(id=0))
    kernel = types.SimpleNamespace(_codelibrary=types.SimpleNamespace(get_cufunc=lambda: cufunc))
    monkeypatch.setattr(numba_driver, "driver", types.SimpleNamespace(cuKernelSetAttribute=refuse("kernel"),
                                                                      cuFuncSetAttribute=accept("func")))
    assert pc._opt_in(kernel, 100_000) is None and calls == ["kernel", "func"]
    monkeypatch.setattr(numba_driver, "driver", types.SimpleNamespace(cuKernelSetAttribute=refuse("kernel"),
                                                                      cuFuncSetAttribute=refuse("func")))
    why = pc._opt_in(kernel, 100_000)
    assert "kernel does not take this handle" in why and "func does not take this handle" in why


def _refusals():
    """A launch refused by each API a numba-cuda release launches through: numba's own driver
    wrapper (CudaAPIError) and cuda.core (CUDAError), with the driver's words."""
    from numba.cuda.cudadrv.driver import CudaAPIError

    from gpurnn.kernels import persistent_common as pc

    words = "CUDA_ERROR_COOPERATIVE_LAUNCH_TOO_LARGE: too many blocks"
    numba_error = CudaAPIError(words) if SIMULATOR else CudaAPIError(720, words)
    return [pytest.param(numba_error, id="numba-CudaAPIError"),
            pytest.param(pc.CUDAError(words), id="cuda.core-CUDAError")]


class _RefusingKernel:
    """A dispatcher whose every launch the driver refuses with `error`."""

    def __init__(self, error):
        self.error = error

    def __getitem__(self, config):
        def refuse(*args):
            raise self.error
        return refuse


@pytest.mark.parametrize("error", _refusals())
def test_a_refused_launch_becomes_persistent_unavailable(error, monkeypatch):
    from gpurnn.kernels import persistent_common as pc

    assert pc.CUDAError.__name__ == "CUDAError"          # cuda.core's own class, found where it lives
    monkeypatch.setattr(pc, "_check_fits", lambda *args: None)
    the_plan = pp.custom_plan("coop", 4, 96, np.float32, rows=2)
    with pytest.raises(pp.PersistentUnavailable, match=f"refused the launch: {type(error).__name__}: .*"
                                                       "CUDA_ERROR_COOPERATIVE_LAUNCH_TOO_LARGE"):
        pc.launch(_RefusingKernel(error), (), the_plan, [], [])


@pytest.mark.sim
@pytest.mark.parametrize("error", _refusals())
def test_a_refused_launch_runs_the_step_path_with_its_reason(error, monkeypatch):
    import gpurnn
    from gpurnn.backends import cuda_recurrence
    from gpurnn.backends.cuda import CUDABackend
    from gpurnn.kernels import persistent_backward as pb
    from gpurnn.kernels import persistent_common as pc
    from gpurnn.kernels import persistent_forward as pf

    monkeypatch.setattr(pc, "_check_fits", lambda *args: None)      # on a GPU: the refusal comes at launch
    monkeypatch.setattr(pf, "forward_kernel", lambda plan, dtype: (_RefusingKernel(error), pf.forward_signature(dtype)))
    monkeypatch.setattr(pb, "backward_kernel",
                        lambda plan, dtype, exact=True: (_RefusingKernel(error), pb.backward_signature(dtype)))
    monkeypatch.setattr(cuda_recurrence, "_warned", set())
    params = gpurnn.init_params(5, 4, 3, seed=1, dtype="float64")
    rng = np.random.default_rng(1)
    inputs, targets = rng.integers(0, 5, (4, 2)), rng.integers(0, 3, (4, 2))
    want = gpurnn.bptt(params, inputs, targets, backend="cpu")
    with pytest.warns(cuda_recurrence.PersistentFallbackWarning, match=f"{type(error).__name__}: .*CUDA_ERROR_COOP"):
        got = gpurnn.bptt(params, inputs, targets, backend=CUDABackend(gemm="numba"))
    assert abs(got.loss - want.loss) < 1e-10
    for a, b in zip(got.grads, want.grads):
        np.testing.assert_allclose(a, b, atol=1e-10)


def test_the_fit_check_runs_once_per_kernel_plan_and_device(monkeypatch):
    """`_check_fits` (a compile lookup, the opt-in, an occupancy query) stays out of every launch
    after the first of a kernel and plan on a device, a refusal included."""
    from gpurnn.kernels import persistent_common as pc

    device = types.SimpleNamespace(id=0)
    calls = []

    def why_not(dispatcher, sig, the_plan):
        calls.append((dispatcher, the_plan.rows))
        return "too big" if the_plan.rows == 3 else None

    monkeypatch.setattr(pc, "_fits", {})
    monkeypatch.setattr(pc, "_why_not", why_not)
    monkeypatch.setattr(pc.cuda, "get_current_device", lambda: device)
    fits, refused = (pp.custom_plan("block", 4, 64, np.float32, rows=rows) for rows in (2, 3))
    for _ in range(3):
        pc._check_fits("kernel", (), fits)
        with pytest.raises(pp.PersistentUnavailable, match="too big"):
            pc._check_fits("kernel", (), refused)
    assert calls == [("kernel", 2), ("kernel", 3)]
    device.id = 1                                  # another device: checked again
    pc._check_fits("kernel", (), fits)
    assert calls[-1] == ("kernel", 2) and len(calls) == 3
