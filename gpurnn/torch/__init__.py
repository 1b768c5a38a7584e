"""gpurnn inside PyTorch models: `RNN`, a drop-in `torch.nn.RNN` whose forward and backward are
gpurnn's (with the lecture's truncation), and `gradient_flow`, the lecture's gradient
diagnostics for a model trained in PyTorch. Needs the `[torch]` extra; `import gpurnn` never
imports torch."""
from .flow import gradient_flow
from .rnn import RNN

__all__ = ["RNN", "gradient_flow"]
