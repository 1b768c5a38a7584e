"""The optimizers' fused update on the device: `gpurnn.optim_rules.rule`, one entry per thread.

    P, S1, S2 ← rule(code, P, G, S1, S2, lr, a, b, eps, c1, c2)   elementwise, in place

Launch: grid (ceil(N / THREADS),), block (THREADS,) over the flattened parameter (N entries).
No shared memory, no `syncthreads()`: every thread owns one entry.
"""
from numba import cuda

from gpurnn.optim_rules import ADAM, rule

from .device import THREADS, inline

_rule = inline(rule)


@cuda.jit
def optimizer_update(code, P, G, S1, S2, lr, a, b, eps, c1, c2):
    """One entry per thread; see the module docstring."""
    i = cuda.grid(1)
    if i < P.shape[0]:
        p, s1, s2 = _rule(code, P[i], G[i], S1[i], S2[i], lr, a, b, eps, c1, c2)
        P[i] = p
        S1[i] = s1
        if code == ADAM:
            S2[i] = s2


def launch_update(code, flat, scalars) -> None:
    """Launch `optimizer_update` on flat (P, G, S1, S2) device arrays with (lr, a, b, eps, c1, c2)."""
    from gpurnn.backends.cuda_memory import kernel_view, launch_stream

    size = int(flat[0].shape[0])
    optimizer_update[-(-size // THREADS), THREADS, launch_stream()](code, *(kernel_view(x) for x in flat), *scalars)
