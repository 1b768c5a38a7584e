"""gpurnn.torch's CUDA bridge keeps each memory alive for the streams that read it (issue 19,
item 7), checked without a GPU: CuPy and torch's CUDA streams are stand-ins that record what the
bridge asks of them; the buffers are CPU tensors. On a GPU (marked `cuda`), a result read late
on a side stream, and test_torch_rnn.py's side-stream test."""
import contextlib
from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="gpurnn.torch needs the [torch] extra (part of [test])")

from gpurnn.torch import cuda_bridge  # noqa: E402


class Stream:
    """A stand-in CUDA stream that records the streams it was told to wait for."""

    def __init__(self, name):
        self.name, self.waited_for = name, []

    def wait_stream(self, other):
        self.waited_for.append(other)


@pytest.fixture
def cuda(monkeypatch):
    """Stand-ins for CuPy (its stream, memory, allocator hook, DLPack) and torch's CUDA streams;
    records every record_stream call as (tensor, stream)."""
    streams = SimpleNamespace(cupy=Stream("cupy"), torch=Stream("torch side stream"), recorded=[], allocators=[])

    @contextlib.contextmanager
    def using_allocator(allocate):
        streams.allocators.append(allocate)
        yield

    fake = SimpleNamespace(cuda=SimpleNamespace(
        UnownedMemory=lambda ptr, size, owner, device_id: SimpleNamespace(ptr=ptr, size=size, _owner=owner),
        MemoryPointer=lambda mem, offset: SimpleNamespace(mem=mem, ptr=mem.ptr + offset),
        using_allocator=using_allocator), from_dlpack=lambda tensor: ("cupy array of", tensor))
    monkeypatch.setattr(cuda_bridge, "_cupy", lambda: fake)
    monkeypatch.setattr(cuda_bridge, "cupy_stream", lambda: streams.cupy)
    monkeypatch.setattr(cuda_bridge, "_buffer", lambda size, device: torch.zeros(size, dtype=torch.uint8))
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: streams.torch)
    monkeypatch.setattr(torch.Tensor, "record_stream", lambda tensor, stream: streams.recorded.append((tensor, stream)))
    return streams


def test_a_tensor_cupy_reads_is_recorded_on_cupys_stream(cuda):
    x = torch.ones(3)
    assert cuda_bridge.to_cupy(x)[0] == "cupy array of"
    assert [(t.data_ptr(), s) for t, s in cuda.recorded] == [(x.data_ptr(), cuda.cupy)]
    cuda.torch = cuda.cupy                                  # the same stream: nothing to record
    cuda.recorded.clear()
    cuda_bridge.to_cupy(x)
    assert cuda.recorded == []


def test_cupys_allocations_during_a_call_are_torch_buffers(cuda):
    with cuda_bridge.allocations(torch.device("cuda", 0)):
        (allocate,) = cuda.allocators
        pointer = allocate(48)
    owner = pointer.mem._owner
    assert isinstance(owner, torch.Tensor) and owner.numel() == 48 and pointer.ptr == owner.data_ptr()
    assert isinstance(cuda_bridge.allocations(torch.device("cpu")), contextlib.nullcontext)


def test_a_result_is_a_view_of_its_buffer_recorded_on_torchs_stream(cuda):
    with cuda_bridge.allocations(torch.device("cuda", 0)):
        pointer = cuda.allocators[0](64)
    buffer = pointer.mem._owner
    buffer.view(torch.float32).copy_(torch.arange(16.0))
    array = SimpleNamespace(data=SimpleNamespace(mem=pointer.mem, ptr=pointer.ptr + 16), dtype=np.dtype("float32"),
                            itemsize=4, shape=(2, 3), strides=(12, 4))
    tensor = cuda_bridge.to_torch(array)
    assert tensor.tolist() == [[4, 5, 6], [7, 8, 9]]
    assert tensor.untyped_storage().data_ptr() == buffer.untyped_storage().data_ptr()   # torch's memory
    assert cuda.torch.waited_for == [cuda.cupy]                       # ordered after gpurnn's work
    assert [(t.data_ptr(), s) for t, s in cuda.recorded] == [(tensor.data_ptr(), cuda.torch)]
    del array, pointer, buffer                                      # CuPy's references gone
    assert tensor.tolist() == [[4, 5, 6], [7, 8, 9]]


def test_memory_no_buffer_owns_goes_through_dlpack(cuda, monkeypatch):
    seen = []
    monkeypatch.setattr(torch, "from_dlpack", lambda array: seen.append(array) or "tensor")
    array = SimpleNamespace(data=SimpleNamespace(mem=SimpleNamespace(ptr=0)))
    assert cuda_bridge.to_torch(array) == "tensor" and seen == [array]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA build of torch and a GPU")
def test_a_result_read_late_on_a_side_stream_is_not_overwritten():
    """On a GPU: a result freed on the host while a side stream has yet to read it keeps its
    memory through the next call's allocations (made on CuPy's stream meanwhile)."""
    import gpurnn.torch as gt

    torch.manual_seed(0)
    module = gt.RNN(8, 64).cuda()
    x, other = torch.randn(50, 16, 8, device="cuda"), torch.randn(50, 16, 8, device="cuda")
    expected = module(x)[0].sum().item()
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        output = module(x)[0]
        torch.cuda._sleep(200_000_000)                # the side stream reads the result late
        total = output.sum()
    del output                                        # freed on the host before the read
    for _ in range(3):
        module(other)                                 # allocates and writes on CuPy's stream now
    torch.cuda.synchronize()
    assert total.item() == pytest.approx(expected, rel=1e-5)
