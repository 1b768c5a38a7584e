"""CUDA tensors to CuPy arrays and back, each piece of memory kept alive for every stream that
reads it (torch's `record_stream`, which PyTorch's caching allocator honours).

gpurnn's CUDA work runs on CuPy's current stream; the module's caller may run torch on another
stream s (`with torch.cuda.stream(s):`). Memory one stream reads must not be handed out again
until that stream has read it:

- A torch tensor that CuPy's stream reads (`to_cupy`) is recorded on CuPy's stream, so torch
  does not reuse it before the work CuPy's stream has queued when it is freed.
- During a bridge call (`allocations`) CuPy allocates from torch's caching allocator: each
  allocation is a torch byte buffer made on CuPy's stream, which owns the memory.
- A result handed to torch (`to_torch`) is a view of its torch buffer (no copy), recorded on
  torch's current stream, which first waits for CuPy's stream. So CuPy's memory never returns
  to CuPy's pool while torch's stream still reads it: it is torch's, freed by torch's rules.

CuPy's legacy default stream (pointer 0) is torch's default stream. The bridge is used only
for CUDA tensors with CuPy present (the CPU path passes NumPy views; the CUDA simulator's
arrays are host copies).
"""
from __future__ import annotations

import contextlib

import torch


def _cupy():
    import cupy

    return cupy


def cupy_stream():
    """CuPy's current stream as a torch stream (torch's default stream for CuPy's legacy default)."""
    ptr = _cupy().cuda.get_current_stream().ptr
    return torch.cuda.default_stream() if ptr == 0 else torch.cuda.ExternalStream(ptr)


def to_cupy(tensor):
    """The CUDA tensor's memory as a CuPy array (no copy; DLPack orders CuPy's stream after
    torch's current one), not reused by torch before CuPy's stream has read it."""
    tensor = tensor.detach()
    stream = cupy_stream()
    if stream != torch.cuda.current_stream(tensor.device):
        tensor.record_stream(stream)
    return _cupy().from_dlpack(tensor)


def _buffer(size, device):
    """`size` bytes from torch's caching allocator on `device`, allocated on CuPy's stream."""
    with torch.cuda.stream(cupy_stream()):
        return torch.empty(size, dtype=torch.uint8, device=device)


def _allocator(device):
    """A CuPy allocator whose memory is torch's: each allocation owned by a torch byte buffer."""
    cupy = _cupy()

    def allocate(size):
        buffer = _buffer(size, device)
        memory = cupy.cuda.UnownedMemory(buffer.data_ptr(), size, buffer, device.index or 0)
        return cupy.cuda.MemoryPointer(memory, 0)

    return allocate


def allocations(device):
    """A context in which CuPy allocates from torch's caching allocator (`to_torch` needs it);
    nothing for CPU devices."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    return _cupy().cuda.using_allocator(_allocator(device))


def to_torch(array):
    """A torch tensor over the CuPy array's memory (non-negative strides, as gpurnn's results
    have), a view of the torch buffer that owns it (made under `allocations`), recorded on
    torch's current stream after it waits for CuPy's stream; other memory goes through DLPack."""
    owner = getattr(array.data.mem, "_owner", None)
    if not isinstance(owner, torch.Tensor):
        return torch.from_dlpack(array)
    current = torch.cuda.current_stream(owner.device)
    current.wait_stream(cupy_stream())
    itemsize, offset = array.itemsize, array.data.ptr - owner.data_ptr()
    items = (owner.numel() - offset) // itemsize
    flat = owner[offset:offset + items * itemsize].view(getattr(torch, array.dtype.name))
    tensor = flat.as_strided(array.shape, [stride // itemsize for stride in array.strides])
    tensor.record_stream(current)
    return tensor
