"""The argument types each kernel is launched with by `gpurnn.backends.cuda`, per float dtype:
what the PTX tests compile ahead of time (`numba.cuda.compile_ptx`) and what a caller may
use to compile eagerly. Arrays are C-contiguous (CuPy arrays and their views, Numba device
arrays); Python ints are int64, Python bools boolean, Python floats float64. Token ids keep
the caller's integer dtype (int64 listed; int32 compiles the same way).
"""
from numba import float32, float64, int64

from . import elementwise, gemm, pooling, reductions, rows, softmax_xent, step_backward, step_forward
from .device import array_types

HOT = ("step_forward", "step_backward", "gemm", "softmax_xent", "sum_rows")   # run every step or on every row


def launched(dtype):
    """{name: (dispatcher, argument types)} for float32 or float64 (`dtype` as a Numba type or name)."""
    f = {"float32": float32, "float64": float64}.get(str(dtype), dtype)
    v1, v2, v3 = array_types(f)
    i1, i2, i3 = array_types(int64)
    w2 = float64[:, ::1]
    return {
        "gemm": (gemm.gemm, (v2, v2, v1, int64, int64, int64, v2)),
        "step_forward": (step_forward.step_forward, step_forward.signature(f)),      # the recurrent kernels'
        "step_backward": (step_backward.step_backward, step_backward.signature(f)),  # beside their code
        "sum_chains": (step_backward.sum_chains, (v3, v3, v3, v3, int64, int64, int64)),
        "softmax_xent": (softmax_xent.softmax_xent, (v2, i1, v2, w2)),
        "sum_rows": (reductions.sum_rows, (v2, v2)),
        "sum_squares": (reductions.sum_squares, (v1, float64[::1])),
        "scale": (elementwise.scale, (v1, float64, v1)),
        "clamp": (elementwise.clamp, (v1, float64, v1)),
        "gather_rows": (rows.gather_rows, (i3, v2, v1, i1, v3)),
        "bucket_keys": (rows.bucket_keys, (i3, i1, int64, i1)),
        "bucket_pieces": (rows.bucket_pieces, (i1, i1, i1, i1, v2, v2)),
        "bucket_total": (rows.bucket_total, (i1, v2, v2)),
        "pool_states": (pooling.pool_states, (v3, i1, int64, v2, i2)),
        "unpool_grad": (pooling.unpool_grad, (v2, i1, i2, int64, v3)),
    }
