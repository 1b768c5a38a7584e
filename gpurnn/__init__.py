"""gpurnn: Elman RNNs trained by backpropagation through time, on NVIDIA GPUs or the CPU."""
import os as _os

# OpenBLAS's idle worker threads spin for 2^28 cycles (~0.1 s) after each multi-threaded call
# before they sleep, so the CPU backend's own threads that follow (a layer's two cells at once,
# independent products at once) share a core with a spinning worker and run up to 2x slower.
# 2^20 cycles (~0.4 ms) keeps the workers awake between the calls of a step loop and frees the
# core before the next phase (profiling/RESULTS.md, "OpenBLAS's spinning workers"). OpenBLAS
# reads it when it loads: in effect where gpurnn is imported before NumPy (the command line
# does); where NumPy came first, the CPU backend stops the workers before such phases instead
# (`gpurnn.backends.cpu_threads.run`). A user's own setting wins.
_os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "20")

from .bptt import BPTTResult, ForwardResult, bptt, forward, output_logits
from .clip import NonFiniteGradientError, clip_grad_norm, clip_grad_value, global_norm
from .model import Params, init_params

__all__ = [
    "BPTTResult", "ForwardResult", "NonFiniteGradientError", "Params", "bptt", "clip_grad_norm",
    "clip_grad_value", "forward", "global_norm", "init_params", "load", "output_logits",
]
__version__ = "0.1.0"


def load(path, *, backend: str = "cpu"):
    """A trained model from a checkpoint file or run folder: parameters, settings, vocabulary,
    with forward / sample / complete / tag / classify (`gpurnn.trained.TrainedModel`). Imported
    on first use, so `import gpurnn` stays light."""
    from .trained import load as load_trained

    return load_trained(path, backend=backend)
