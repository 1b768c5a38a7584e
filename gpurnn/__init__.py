"""gpurnn: Elman RNNs trained by backpropagation through time, on NVIDIA GPUs or the CPU."""
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
