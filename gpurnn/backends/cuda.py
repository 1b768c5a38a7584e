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

The recurrences run as one persistent kernel each (`gpurnn.kernels.persistent_*`: the whole
time loop in one launch, W kept on chip) wherever their plan fits the device, and as one
fused kernel launch per step (`step_forward`, `step_backward`: the step-by-step reference
path) otherwise, or with `CUDABackend(persistent=False)` / GPURNN_PERSISTENT=0. A persistent
kernel that cannot run on the card at hand (its compiled register count, the shared-memory
opt-in, a cooperative grid's co-residency, the driver: `persistent_plan.launch_blocker`)
never breaks a call: the step path runs instead, and a `PersistentFallbackWarning` says
why, once per reason.
"""
from __future__ import annotations

import math
import os
import warnings

import numpy as np

from gpurnn.kernels import elementwise, pooling, reductions, rows, softmax_xent, step_backward, step_forward
from gpurnn.kernels import persistent_backward as pb
from gpurnn.kernels import persistent_forward as pf
from gpurnn.kernels.device import LANES, THREADS, TILE, config
from gpurnn.kernels.gemm import gemm
from gpurnn.kernels.persistent_plan import PersistentUnavailable

from . import cuda_memory as mem
from . import layer_by_cell
from .cuda_memory import DeviceMemoryError

__all__ = ["CUDABackend", "DeviceMemoryError", "PersistentFallbackWarning", "cuda_available", "gpu_present"]

# Tiny launches are deliberate here (small batches, tests); Numba's low-occupancy warning
# would otherwise fire on them, and the test suite turns warnings into errors.
config.CUDA_LOW_OCCUPANCY_WARNINGS = 0

GEMMS = ("cublas", "numba")
STEP_PRODUCTS = ("auto", "fused", "gemm")
# The step path's product s_t W (or δ W^T) per step: fused into the step kernel's tiles
# ("fused": one launch per step, best while launches dominate), or a separate cuBLAS product
# the step kernel then reads ("gemm": two launches per step, best for large products). "auto"
# takes "gemm" with cuBLAS from this many multiply-adds per step (e.g. B = 64, d = 256).
STEP_GEMM_MACS = 1 << 22
gpu_present = mem.gpu_present


class PersistentFallbackWarning(UserWarning):
    """A persistent kernel could not run on this GPU; the step path ran instead."""


_warned: set = set()     # the fallback reasons already warned about in this process


def cuda_available() -> bool:
    """True where the backend runs: a real GPU with Numba and CuPy, or the simulator."""
    return mem.SIMULATOR or mem.gpu_present()


def _blocks(count, size):
    return max(1, -(-count // size))


def _tiles(rows_, cols):
    """Grid, block and stream of the (TILE, TILE) tiled kernels for a (rows, cols) output
    (row tiles along the grid's x, which has room for any row count)."""
    return (_blocks(rows_, TILE), _blocks(cols, TILE)), (TILE, TILE), mem.launch_stream()


def _lanes(rows_, cols):
    """Grid, block and stream of the LANES-shaped elementwise kernels for a (rows, cols) output."""
    return (_blocks(rows_, LANES[1]), _blocks(cols, LANES[0])), LANES, mem.launch_stream()


def _line(count):
    """Grid, block and stream of the 1-D kernels over `count` elements."""
    return _blocks(count, THREADS), THREADS, mem.launch_stream()


class CUDABackend:
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
        self._unavailable = set()     # (direction, plan) of persistent kernels that cannot run here

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
        if inputs.ndim == 3:
            return self.affine(inputs.reshape(T * B, inputs.shape[2]), U, b).reshape(T, B, d)
        XP = mem.empty((T, B, d), U.dtype)
        rows.gather_rows[_lanes(T * B, d)](
            mem.kernel_view(inputs), mem.kernel_view(U), mem.kernel_view(b), mem.kernel_view(lengths),
            mem.kernel_view(XP))
        return XP

    def recurrence_forward(self, XP, W, s0, lengths, activation):
        T, B, d = XP.shape
        S = mem.empty((T + 1, B, d), XP.dtype)
        views = [mem.kernel_view(a) for a in (S, XP, W, s0, lengths)]
        plan = pf.plan_forward(B, d, XP.dtype) if self.persistent else None
        Sv, XPv, Wv, s0v, Lv = views
        if self._persistent("forward", plan, lambda: pf.persistent_forward(XPv, Wv, s0v, Lv, activation, Sv,
                                                                            plan=plan, stream=mem.launch_stream())):
            return S
        fused = self._fused_steps(B, d)
        prod = mem.empty((B, d) if not fused else (1, 1), XP.dtype)
        launch, prod_view = step_forward.step_forward[_tiles(B, d)], mem.kernel_view(prod)
        for t in range(T):
            if not fused:
                self._product_into(s0 if t == 0 else S[t], W, False, prod)
            launch(*views, t, activation, prod_view, not fused)
        return S

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
        return self._gemm(X, V, c, False, False)

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
        T, B, d = S.shape[0] - 1, S.shape[1], S.shape[2]
        dtype = S.dtype
        delta = mem.empty((T, B, d), dtype)
        ds0 = mem.empty((1, B, d), dtype)
        plan = pb.plan_backward(B, d, dtype, truncate) if self.persistent else None
        view = (lambda a: None if a is None else mem.kernel_view(a))
        if self._persistent("backward", plan, lambda: pb.persistent_backward(
                view(G), view(g_last), view(S), view(W), view(lengths), activation, truncate, view(delta),
                view(ds0.reshape(B, d)), plan=plan, stream=mem.launch_stream())):
            return delta, ds0.reshape(B, d)
        G = mem.empty((0, B, d), dtype) if G is None else G          # absent: 0 rows (base.py)
        g_last = mem.empty((0, d), dtype) if g_last is None else g_last
        m = 1 if truncate is None else truncate + 1
        fused = self._fused_steps(m * B, d)
        prod = mem.empty((m * B, d) if not fused else (1, 1), dtype)
        Sv, Wv, Gv, lv, Lv, Dv, prod_view = (mem.kernel_view(a) for a in (S, W, G, g_last, lengths, delta, prod))
        common = (Wv, Gv, lv, Sv, Lv)

        def step(P, Pv, p, k, slot, reset, Ov, o, rows_):
            """Output rows O[o] of step k from P[p] (P: the device array, Pv: its kernel view)."""
            if not fused:
                self._product_into(P[p], W, True, prod[:rows_])
            step_backward.step_backward[_tiles(rows_, d)](Pv, p, *common, k, slot, reset, activation, Ov, o,
                                                          prod_view, not fused)

        if truncate is None:
            zero = mem.zeros((1, B, d), dtype)
            step(zero, mem.kernel_view(zero), 0, T - 1, 0, 0, Dv, T - 1, B)
            for k in range(T - 2, -1, -1):
                step(delta, Dv, k + 1, k, 0, 0, Dv, k, B)
        else:
            ring = mem.zeros((2, m * B, d), dtype)    # ring[o]: step k's chains, k ≡ o (mod 2)
            ring_view, add = mem.kernel_view(ring), step_backward.sum_chains[_lanes(B, d)]
            for k in range(T - 1, -1, -1):
                o = k % 2
                step(ring, ring_view, 1 - o, k, k % m, 1, ring_view, o, m * B)
                add(ring_view, o, m, Dv, k)
        step(delta, Dv, 0, -1, 0, 0, mem.kernel_view(ds0), 0, B)    # ds0 = Δ_0 Wᵀ (+ g_last at length 0)
        return delta, ds0.reshape(B, d)

    def layer_backward(self, G, g_last, Ss, Ws, lengths, activation, truncate):
        return layer_by_cell.layer_backward(self, G, g_last, Ss, Ws, lengths, activation, truncate)

    def matmul(self, A, B, *, trans_a=False, trans_b=False):
        opA, opB = (A.T if trans_a else A), (B.T if trans_b else B)
        if self.gemm == "cublas":
            return mem.allocating("a product", (opA.shape[0], opB.shape[1]), A.dtype, lambda: opA @ opB)
        return self._gemm(A, B, None, trans_a, trans_b)

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
        if inputs.ndim == 3:
            return self.matmul(inputs.reshape(T * B, n), flat, trans_a=True)
        keys = mem.empty((T * B,), np.int64)
        rows.bucket_keys[_line(T * B)](mem.kernel_view(inputs), mem.kernel_view(lengths), n,
                                                    mem.kernel_view(keys))
        xp = mem.array_library()
        bound = rows.piece_bound(T * B, n)

        def sort(keys_):
            """Rows sorted by token, each token's first place, its first piece, each piece's token."""
            order = xp.argsort(keys_)
            offsets = xp.searchsorted(keys_[order], xp.arange(n + 1) * (T * B))
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
    def _persistent(self, direction, plan, launch):
        """launch() the persistent kernel of `plan`; False where there is none or it cannot run
        on this device (the step path then runs; a warning says why, once per reason)."""
        if plan is None or plan.variant == "step" or (direction, plan) in self._unavailable:
            return False
        try:
            launch()
            return True
        except PersistentUnavailable as why:
            self._unavailable.add((direction, plan))
            message = (f"the persistent {direction} kernel ({plan.variant}, {plan.threads} threads, "
                       f"{plan.smem} bytes of shared memory) cannot run on this GPU: {why}; "
                       f"the step-by-step kernels run instead")
            if message not in _warned:
                _warned.add(message)
                warnings.warn(message, PersistentFallbackWarning, stacklevel=4)
            return False

    def _elementwise(self, kernel, A, value):
        out = mem.empty(A.shape, A.dtype)
        N = int(np.prod(A.shape))
        kernel[_line(N)](
            mem.kernel_view(A.reshape(N)), float(value), mem.kernel_view(out.reshape(N)))
        return out

    def _gemm(self, A, B, bias, trans_a, trans_b, C=None):
        M = A.shape[1] if trans_a else A.shape[0]
        N = B.shape[0] if trans_b else B.shape[1]
        C = mem.empty((M, N), A.dtype) if C is None else C
        bias_view = mem.kernel_view(bias if bias is not None else mem.empty((1,), A.dtype))
        gemm[_tiles(M, N)](mem.kernel_view(A), mem.kernel_view(B), bias_view, int(trans_a), int(trans_b),
                           int(bias is not None), mem.kernel_view(C))
        return C

    def _fused_steps(self, rows_, d):
        """Whether the step path fuses each step's product into its kernel (see STEP_GEMM_MACS)."""
        if self.step_product != "auto":
            return self.step_product == "fused"
        return not (self.gemm == "cublas" and rows_ * d * d >= STEP_GEMM_MACS)

    def _product_into(self, A, W, trans_b, C):
        """C = A op(W) for one unfused step: cuBLAS into C on a GPU, else the tiled kernel (whose
        array conversions then happen per step: a test and fallback path, "auto" never takes it)."""
        if self.gemm == "cublas":
            mem.cupy_module().matmul(A, W.T if trans_b else W, out=C)
        else:
            self._gemm(A, W, None, False, trans_b, C)
