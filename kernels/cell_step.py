"""The Elman cell's math for one unit at one step, on the device: what every recurrent kernel
(`step_forward`, `step_backward`, the persistent block and cooperative kernels) computes
around the products they share. The kernels own the time loop, the products s_{t−1} W and
Δ_{t+1} Wᵀ, the lengths and the sums of gradients; the cell's math is here only:

    forward    s_t[j] = σ(p[j] + xp[j])    p = s_{t−1} W,  xp = x_t U + b (the projected input)
    backward   ∂s_t[j]/∂a_t[j] = σ'(a_t[j]), from the stored state s_t[j]; the kernels multiply
               the gradient ∂L/∂s_t[j] (the explicit term plus Δ_{t+1} Wᵀ, summed in each
               kernel's own order) by it into Δ_t[j] = ∂L/∂a_t[j]

σ and σ' are `gpurnn.cell`'s scalar functions compiled for the device (the same source the CPU
backend compiles with `njit`), σ' taken from the stored state s = σ(a). Every function here is
inlined at the Numba IR level (`device.inline`): it costs nothing at run time, keeps a kernel's
local arrays in registers, and compiles to PTX without a GPU.
"""
from gpurnn import cell

from .device import inline

_sigma = inline(cell.sigma)
_sigma_prime = inline(cell.sigma_prime_from_state)


@inline
def new_state(act, product, projected):
    """s_t[j] from the recurrent product (s_{t−1} W)[j] and the projected input (x_t U + b)[j];
    `act`: σ's code."""
    return _sigma(act, product + projected)


@inline
def state_slope(act, state):
    """∂s_t[j]/∂a_t[j] from the stored state s_t[j] (so Δ_t[j] = ∂L/∂s_t[j] · state_slope);
    `act`: σ's code."""
    return _sigma_prime(act, state)
