"""The CUDA backend: device arrays, Numba CUDA kernels (`gpurnn.kernels`), cuBLAS for the
large products on a GPU.

Use: `gpurnn.bptt(params, ..., backend="cuda")` with NumPy arrays copies them over and returns
NumPy results; with CuPy arrays as params (e.g. `params.map(cupy.asarray)`), inputs and targets,
everything stays on the device across calls and the results are CuPy arrays (what the trainer
keeps). Running out of GPU memory raises `DeviceMemoryError` (a MemoryError) naming the shape
asked for; the caller's arrays are never written.

Each operation of `gpurnn.backends.base.Backend` turns its arrays into kernel views once
(`cuda_memory.kernel_view`) and launches its kernels on them. Products off the recurrence are
single products over all T·B rows, done by `GEMM`:

    "cublas"  CuPy's matmul (cuBLAS), the default on a real GPU;
    "numba"   the tiled shared-memory kernel `gpurnn.kernels.gemm`, what the simulator runs.

Pick with `CUDABackend(gemm=...)` or the environment variable GPURNN_GEMM;
`profiling/bench_gpu.py` measures both on the card.

The recurrences (one cell, or both directions of a layer in one call: `recurrence_*_cells`)
run as persistent kernels where their plan fits the device and as one launch per step
otherwise; `cuda_recurrence` is the one place that chooses, each choice with its reason, and
a kernel the card at hand refuses never breaks a call (a `PersistentFallbackWarning` says
why, once per reason).
"""
from __future__ import annotations

import math
import os

import numpy as np

from gpurnn.kernels import elementwise, pooling, reductions, rows, softmax_xent
from gpurnn.kernels.device import LANES, THREADS, config
from gpurnn.kernels.gemm import gemm

from . import cuda_memory as mem
from . import cuda_recurrence as recurrence
from . import layer_by_cell
from .base import ProductsInTurn
from .cuda_memory import DeviceMemoryError
from .cuda_memory import blocks as _blocks
from .cuda_memory import lanes as _lanes
from .cuda_memory import line as _line
from .cuda_memory import tiles as _tiles
from .cuda_recurrence import PersistentFallbackWarning

__all__ = ["CUDABackend", "DeviceMemoryError", "PersistentFallbackWarning", "cuda_available", "gpu_present"]

# Tiny launches are deliberate here (small batches, tests); Numba's low-occupancy warning
# would otherwise fire on them, and the test suite turns warnings into errors.
config.CUDA_LOW_OCCUPANCY_WARNINGS = 0

GEMMS = ("cublas", "numba")
STEP_PRODUCTS = ("auto", "fused", "gemm")    # the step path's product per step: see cuda_recurrence
gpu_present = mem.gpu_present


def cuda_available() -> bool:
    """True where the backend runs: a real GPU with Numba and CuPy, or the simulator."""
    return mem.SIMULATOR or mem.gpu_present()


def _dense(inputs) -> bool:
    """Whether inputs are dense floats (T,B,n), not token ids (T,B) or (T,B,F)."""
    return np.dtype(inputs.dtype).kind == "f"


def _token_fields(inputs):
    """Token ids (T,B) or (T,B,F) as (T,B,F) (a view)."""
    return inputs.reshape(inputs.shape + (1,)) if inputs.ndim == 2 else inputs


class CUDABackend(ProductsInTurn):
    """Numba CUDA kernels on device arrays. See `gpurnn.backends.base.Backend` for each
    operation's contract."""

    name = "cuda"

    def __init__(self, gemm=None, persistent=None, step_product="auto"):
        gemm = gemm or os.environ.get("GPURNN_GEMM") or ("cublas" if mem.cupy_module() else "numba")
        if gemm not in GEMMS:
            raise ValueError(f"gemm must be one of {GEMMS}, got {gemm!r}")
        if gemm == "cublas" and mem.cupy_module() is None:
            raise ValueError("gemm='cublas' needs CuPy on a real GPU")
        self.gemm = gemm
        self.persistent = os.environ.get("GPURNN_PERSISTENT", "1") != "0" if persistent is None else bool(persistent)
        if step_product not in STEP_PRODUCTS:
            raise ValueError(f"step_product must be one of {STEP_PRODUCTS}, got {step_product!r}")
        self.step_product = step_product
        self.refused = set()     # (direction, plan) of persistent kernels this device refused

    # arrays -------------------------------------------------------------------------
    def asarray(self, array, dtype=None):
        return mem.asarray(array, dtype)

    def to_host(self, array):
        return mem.to_host(array)

    def zeros(self, shape, dtype):
        return mem.zeros(shape, dtype)

    def array_op(self, fn, *arrays):
        return mem.device_index_op(lambda *a: (fn(mem.array_library(), *a),), *arrays)[0]

    # forward ------------------------------------------------------------------------
    def project_inputs(self, inputs, U, b, lengths):
        T, B = inputs.shape[:2]
        d = U.shape[1]
        if _dense(inputs):
            return self.affine(inputs.reshape(T * B, inputs.shape[2]), U, b).reshape(T, B, d)
        XP = mem.empty((T, B, d), U.dtype)
        rows.gather_rows[_lanes(T * B, d)](
            mem.kernel_view(_token_fields(inputs)), mem.kernel_view(U), mem.kernel_view(b), mem.kernel_view(lengths),
            mem.kernel_view(XP))
        return XP

    def recurrence_forward(self, XP, W, s0, lengths, activation):
        return recurrence.forward(self, [XP], [W], [s0], lengths, activation)[0]

    def recurrence_forward_cells(self, XPs, Ws, s0s, lengths, activation):
        return recurrence.forward(self, XPs, Ws, s0s, lengths, activation)

    def layer_forward(self, XP, Ws, s0s, lengths, activation):
        return layer_by_cell.layer_forward(self, XP, Ws, s0s, lengths, activation)

    def pool_states(self, H, lengths, mode):
        B, d = H.shape[1], H.shape[2]
        P, argmax = mem.empty((B, d), H.dtype), mem.empty((B, d), np.int64)
        pooling.pool_states[_lanes(B, d)](mem.kernel_view(H), mem.kernel_view(lengths), pooling.MODES[mode],
                                          mem.kernel_view(P), mem.kernel_view(argmax))
        return P, (argmax if mode == "max" else None)

    def unpool_grad(self, dP, lengths, argmax, mode, T):
        B, d = dP.shape
        G = mem.empty((T, B, d), dP.dtype)
        argmax = mem.empty((1, 1), np.int64) if argmax is None else argmax
        pooling.unpool_grad[_lanes(T * B, d)](mem.kernel_view(dP), mem.kernel_view(lengths), mem.kernel_view(argmax),
                                              pooling.MODES[mode], mem.kernel_view(G))
        return G

    def affine(self, X, V, c):
        if self.gemm == "cublas":
            Z = mem.allocating("a product", (X.shape[0], V.shape[1]), X.dtype, lambda: X @ V)
            Z += c
            return Z
        return self.tiled_gemm(X, V, c, False, False)

    def softmax_xent(self, Z, targets):
        R, k = Z.shape
        dZ = mem.empty((R, k), Z.dtype)
        per_row = mem.empty((R, 2), np.float64)
        softmax_xent.softmax_xent[R, softmax_xent.ROW_THREADS, mem.launch_stream()](
            mem.kernel_view(Z), mem.kernel_view(targets), mem.kernel_view(dZ), mem.kernel_view(per_row))
        loss, count = mem.to_host(self.sum_rows(per_row))
        return float(loss), int(round(count)), dZ

    # backward -----------------------------------------------------------------------
    def recurrence_backward(self, G, g_last, S, W, lengths, activation, truncate):
        return recurrence.backward(self, [G], [g_last], [S], [W], lengths, activation, truncate)[0]

    def recurrence_backward_cells(self, Gs, g_lasts, Ss, Ws, lengths, activation, truncate):
        return recurrence.backward(self, Gs, g_lasts, Ss, Ws, lengths, activation, truncate)

    def layer_backward(self, G, g_last, Ss, Ws, lengths, activation, truncate):
        return layer_by_cell.layer_backward(self, G, g_last, Ss, Ws, lengths, activation, truncate)

    def matmul(self, A, B, *, trans_a=False, trans_b=False):
        opA, opB = (A.T if trans_a else A), (B.T if trans_b else B)
        if self.gemm == "cublas":
            return mem.allocating("a product", (opA.shape[0], opB.shape[1]), A.dtype, lambda: opA @ opB)
        return self.tiled_gemm(A, B, None, trans_a, trans_b)

    def sum_rows(self, A):
        R, m = A.shape
        chunks = reductions.row_chunks(R)
        partial = mem.empty((chunks, m), A.dtype)
        launch = reductions.sum_rows[(_blocks(m, LANES[0]), chunks), LANES, mem.launch_stream()]
        launch(mem.kernel_view(A), mem.kernel_view(partial))
        if chunks == 1:
            return partial.reshape(m)
        out = mem.empty((1, m), A.dtype)
        reductions.sum_rows[_blocks(m, LANES[0]), LANES, mem.launch_stream()](mem.kernel_view(partial),
                                                                              mem.kernel_view(out))
        return out.reshape(m)

    def input_grad(self, inputs, delta, n, lengths):
        T, B, d = delta.shape
        flat = delta.reshape(T * B, d)
        if _dense(inputs):
            return self.matmul(inputs.reshape(T * B, n), flat, trans_a=True)
        tokens = _token_fields(inputs)
        R = T * B * tokens.shape[2]          # ids read, F per row of Δ
        keys = mem.empty((R,), np.int64)
        rows.bucket_keys[_line(R)](mem.kernel_view(tokens), mem.kernel_view(lengths), n, mem.kernel_view(keys))
        xp = mem.array_library()
        bound = rows.piece_bound(R, n)

        def sort(keys_):
            """Ids sorted by token, each token's first place, its first piece, each piece's token."""
            order = xp.argsort(keys_)
            offsets = xp.searchsorted(keys_[order], xp.arange(n + 1) * R)
            first, end = offsets[:-1], offsets[1:]
            pieces = xp.where(end > first, (end - 1) // rows.PIECE - first // rows.PIECE + 1, 0)
            base = xp.concatenate((xp.zeros(1, xp.int64), xp.cumsum(pieces)))
            return order, offsets, base, xp.searchsorted(base, xp.arange(bound), side="right") - 1

        order, offsets, base, piece_token = mem.device_index_op(sort, keys)
        partial = mem.empty((bound, d), delta.dtype)
        rows.bucket_pieces[(bound, _blocks(d, LANES[0])), LANES, mem.launch_stream()](
            *(mem.kernel_view(a) for a in (order, offsets, base, piece_token, flat, partial)))
        dU = mem.empty((n, d), delta.dtype)
        rows.bucket_total[_lanes(n, d)](*(mem.kernel_view(a) for a in (base, partial, dU)))
        return dU

    # clipping -----------------------------------------------------------------------
    def sum_squares(self, *arrays):
        flats = [A.reshape(int(np.prod(A.shape))) for A in arrays]
        counts = [min(_blocks(flat.shape[0], THREADS), reductions.MAX_BLOCKS) for flat in flats]
        partials = mem.empty((sum(counts),), np.float64)      # each array's blocks, then the next's
        start = 0
        for flat, blocks in zip(flats, counts):
            reductions.sum_squares[blocks, THREADS, mem.launch_stream()](
                mem.kernel_view(flat), mem.kernel_view(partials[start:start + blocks]))
            start += blocks
        return math.fsum(mem.to_host(partials).tolist())     # exact: the order of the partials does not matter

    def scale(self, A, factor):
        return self._elementwise(elementwise.scale, A, factor)

    def clamp(self, A, limit):
        return self._elementwise(elementwise.clamp, A, limit)

    # helpers ------------------------------------------------------------------------
    def _elementwise(self, kernel, A, value):
        out = mem.empty(A.shape, A.dtype)
        N = int(np.prod(A.shape))
        kernel[_line(N)](
            mem.kernel_view(A.reshape(N)), float(value), mem.kernel_view(out.reshape(N)))
        return out

    def tiled_gemm(self, A, B, bias, trans_a, trans_b, C=None):
        """op(A) op(B) (+ bias) with the tiled kernel `gpurnn.kernels.gemm`, into C (new when None)."""
        M = A.shape[1] if trans_a else A.shape[0]
        N = B.shape[0] if trans_b else B.shape[1]
        C = mem.empty((M, N), A.dtype) if C is None else C
        bias_view = mem.kernel_view(bias if bias is not None else mem.empty((1,), A.dtype))
        gemm[_tiles(M, N)](mem.kernel_view(A), mem.kernel_view(B), bias_view, int(trans_a), int(trans_b),
                           int(bias is not None), mem.kernel_view(C))
        return C
