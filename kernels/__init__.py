"""Numba CUDA device code for gpurnn, one file per operation (installed as `gpurnn.kernels`).

cell_step      the cell's math per unit and step (σ, σ' from `gpurnn.cell`), which every
               recurrent kernel calls
device         the shared-memory tile product, the tree reduction, a launch's cell
gemm           C = op(A) op(B) (+ bias): the tiled GEMM
step_forward   one recurrence step forward: s_t W + XP_t, σ, lengths
step_backward  one BPTT step (exact or truncated chains) and the sum of chains
softmax_xent   fused softmax + cross-entropy + (ŷ − y)
reductions     deterministic column sums and sum of squares
elementwise    scaling and clamping (gradient clipping)
rows           token-row gather (x U + b) and the deterministic scatter-add for dU
persistent_*   whole-sequence persistent kernels
launch_types   the argument types each kernel is launched with (for the PTX tests)
"""
