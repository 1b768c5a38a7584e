"""The lecture's gradient diagnostics for an RNN trained in PyTorch.

    flow = gradient_flow(model.rnn, embedded, lambda output: criterion(model.decoder(output), targets))

measures the last layer of a `gpurnn.torch.RNN` or a `torch.nn.RNN` (same parameter names):
its states s_t are the module's output, σ'(a_t) follows from them, and the explicit term of the
loss at step t is ∂L/∂output_t (each output's gradient counted as a loss term at its step, as
`gpurnn.bptt` and truncation count them). From these, `gpurnn.diagnostics` gives ‖∂L_t/∂s_k‖ for
every k ≤ t, ‖∂s_t/∂s_k‖₂ for one sequence, and the bound (γλ)^{t−k} with λ = ‖W‖₂ of the
layer's weight_hhᵀ, in a `GradientFlow`. The reverse direction (`reverse=True`) runs backward in
time, so its lags count the other way.
"""
from __future__ import annotations

import torch
from torch.nn.utils.rnn import PackedSequence

from ..diagnostics.flow import GradientFlow, assemble_flow
from ..cell import sigma_prime_states
from ..diagnostics.jacobians import slope_jacobian_norms
from ..diagnostics.profile import chain_profile
from .function import to_array


def gradient_flow(module, input, loss_fn, *, hx=None, reverse=False, sequence=0, method="auto",
                  max_lag=None) -> GradientFlow:
    """The last layer's gradient flow (module docstring) for loss_fn(output) -> a scalar tensor,
    where output is module(input, hx)[0]; input a padded tensor (every sequence full length).
    `sequence`, `method`, `max_lag`: those of `gpurnn.diagnostics.jacobian_norms`."""
    if not all(hasattr(module, name) for name in ("weight_hh_l0", "nonlinearity", "num_layers", "hidden_size")):
        raise TypeError(f"module must be a gpurnn.torch.RNN or a torch.nn.RNN, got {type(module).__name__}")
    if isinstance(input, PackedSequence):
        raise TypeError("input must be a padded tensor of full-length sequences, got a PackedSequence")
    if reverse and not module.bidirectional:
        raise ValueError("reverse=True needs a bidirectional module")
    with torch.no_grad():
        output, _ = module(input, hx)
    output = output.detach().requires_grad_()
    with torch.enable_grad():
        (explicit,) = torch.autograd.grad(loss_fn(output), output)
    if output.dim() == 2:                       # unbatched (T, D·H)
        output, explicit = output.unsqueeze(1), explicit.unsqueeze(1)
    elif module.batch_first:
        output, explicit = output.transpose(0, 1), explicit.transpose(0, 1)
    H = module.hidden_size
    part = slice(H, 2 * H) if reverse else slice(0, H)
    states, explicit = output.detach()[:, :, part], explicit[:, :, part]
    if reverse:
        states, explicit = states.flip(0), explicit.flip(0)
    weight = getattr(module, f"weight_hh_l{module.num_layers - 1}{'_reverse' if reverse else ''}")
    W = to_array(weight.detach().t().contiguous())
    dsig = sigma_prime_states(to_array(states.contiguous()), module.nonlinearity)
    profile = chain_profile(to_array(explicit.contiguous()), to_array(states.contiguous()), W, module.nonlinearity)
    if not 0 <= sequence < dsig.shape[1]:
        raise ValueError(f"sequence must be in [0, B) = [0, {dsig.shape[1]}), got {sequence!r}")
    jac = slope_jacobian_norms(dsig[:, sequence, :], W, method=method, max_lag=max_lag)
    return assemble_flow(jac, profile, W, module.nonlinearity)
