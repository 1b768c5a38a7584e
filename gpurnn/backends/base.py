"""The operations every backend answers; `gpurnn.bptt` is written once against them.

Arrays are the backend's own (NumPy on the CPU, device arrays on the GPU), time-major
and C-contiguous. Shapes: T steps, B sequences, n inputs, d hidden units, k outputs,
R = T·B rows.

No output gradient (G or g_last of `recurrence_backward`): the caller passes None; inside a
backend, its compiled code (Numba loops, every CUDA kernel) receives a 0-row array in its
place (G (0,B,d), g_last (0,d)) and reads a term only when `shape[0] > 0`. This is the one
convention: no zeros array is made to stand for "none", and no flag travels beside a dummy
(the step kernels' optional precomputed product is passed the same way).
"""
from __future__ import annotations

from typing import Any, Protocol

Array = Any


class Backend(Protocol):
    name: str

    def asarray(self, array, dtype=None) -> Array:
        """The backend's array for a host (or its own) array; no copy when already there."""

    def to_host(self, array) -> Any:
        """A NumPy array of a backend array: `gpurnn.arrays.to_host` (the array itself on the CPU)."""

    def zeros(self, shape, dtype) -> Array: ...

    def array_op(self, fn, *arrays) -> Array:
        """fn(xp, *arrays) -> one array, with xp the array library that runs it where the arrays
        live (NumPy, CuPy; host copies under the CUDA simulator): the layer stack's glue
        (reversal within lengths, concatenation, sums), never a hot loop."""

    def project_inputs(self, inputs, U, b, lengths) -> Array:
        """XP (T,B,d) = x_t U + b: a row gather of U for token ids (T,B), the sum of F rows
        Σ_f U[ids[t,b,f]] for ids (T,B,F) (a bag of feature ids per step), one GEMM over
        all T·B rows for dense inputs (T,B,n). Rows past a sequence's length are not read
        (their content is arbitrary)."""

    def recurrence_forward(self, XP, W, s0, lengths, activation) -> Array:
        """S (T+1,B,d): S[0] = s0, S[t+1] = σ(XP[t] + S[t] W) while t < lengths[b], else
        S[t+1][b] = S[t][b] (a finished sequence keeps its state)."""

    def recurrence_forward_cells(self, XPs, Ws, s0s, lengths, activation) -> list[Array]:
        """The cells of one layer together (1 or 2: its directions), cell i's XPs[i], Ws[i], s0s[i]
        as `recurrence_forward`'s (equal shapes), one lengths: [S_i], each exactly what
        `recurrence_forward` gives for cell i alone. The CUDA backend runs both in one launch
        where they fit (`gpurnn.backends.cuda_recurrence`); a backend may simply loop."""

    def layer_forward(self, XP, Ws, s0s, lengths, activation) -> tuple[Array, list]:
        """A layer of D = len(Ws) cells (fw, then bw) on XP (T,B,D·d) = x U + b of every cell
        (cell j in columns j·d:(j+1)·d), by position. The fw cell reads each sequence's
        positions 0 … L−1, the bw cell L−1 … 0 (L = lengths[b]; padding is never read).
        Returns (H, [S_j]): H (T,B,D·d) with each cell's state after reading position t in its
        columns, past a length the cell's final state; S_j (T+1,B,d) each cell's states in its
        own reading order, S_j[0] = s0s[j] (what `layer_backward` takes). One fw cell: H = S[1:]."""

    def layer_backward(self, G, g_last, Ss, Ws, lengths, activation, truncate) -> tuple[Array, list, list]:
        """BPTT through a `layer_forward` layer (each cell as `recurrence_backward`). G (T,B,D·d)
        = ∂L/∂H explicit, 0 past each length (or None); g_last (B,D·d) = ∂L/∂(each cell's final
        state) (or None). Returns (Δ (T,B,D·d): each cell's ∂L/∂a at each position in its
        columns, 0 past each length; [Δ_j (T,B,d)]: each cell's ∂L/∂a in its own reading order,
        beside its S_j (for dW_j = Σ S_prevᵀ Δ_j); [ds0_j (B,d)])."""

    def pool_states(self, H, lengths, mode) -> tuple[Array, Array]:
        """The pool over each sequence's real states H[0..L−1] = s_1..s_L (L = lengths[b] ≥ 1),
        H (T,B,d): mode "mean" -> (P (B,d) = Σ_t H[t] / L, None); "max" -> (P (B,d) with P[b,j] =
        max_t H[t,b,j], argmax (B,d) int64: the index t of H holding that max, the first on ties)."""

    def unpool_grad(self, dP, lengths, argmax, mode, T) -> Array:
        """G (T,B,d) = ∂L/∂s_t explicit from dP (B,d) = ∂L/∂P: dP[b] / L for t < L ("mean"),
        dP[b,j] at G[argmax[b,j], b, j] ("max"), 0 everywhere else."""

    def affine(self, X, V, c) -> Array:
        """X (R,d) V + c -> (R,k)."""

    def softmax_xent(self, Z, targets) -> tuple[float, int, Array]:
        """Fused softmax + cross-entropy on logits Z (R,k) and targets (R,) (−1: no loss):
        (summed loss as a float, number of loss terms, dZ = ŷ − onehot (R,k), 0 on rows
        without a target)."""

    def recurrence_backward(self, G, g_last, S, W, lengths, activation, truncate) -> tuple[Array, Array]:
        """BPTT through the recurrence. G (T,B,d) = ∂L_t/∂s_t explicit (or None); g_last
        (B,d) = ∂L/∂s_last added at each sequence's last step (or None). Returns
        Δ (T,B,d) = ∂L/∂a_t (0 past each length) and ds0 (B,d) = Δ_0 W^T (plus g_last for
        sequences of length 0). G must be 0 past each sequence's length. `truncate` None: exact; τ: each loss term keeps
        at most τ factors ∂s_j/∂s_{j−1} (O(T·τ) work)."""

    def recurrence_backward_cells(self, Gs, g_lasts, Ss, Ws, lengths, activation,
                                  truncate) -> list[tuple[Array, Array]]:
        """The cells of one layer together, as `recurrence_forward_cells`: [(Δ_i, ds0_i)], each
        exactly what `recurrence_backward(Gs[i], g_lasts[i], Ss[i], Ws[i], ...)` gives."""

    def matmul(self, A, B, *, trans_a=False, trans_b=False) -> Array:
        """op(A) op(B) for 2-D arrays."""

    def matmuls(self, specs) -> list[Array]:
        """[op(A) op(B)] for independent products, specs [(A, B, trans_a, trans_b)]; a backend
        may run them at once."""

    def sum_rows(self, A) -> Array:
        """A (R,m) summed over rows -> (m,)."""

    def input_grad(self, inputs, delta, n, lengths) -> Array:
        """dU (n,d) = Σ_t x_t^T Δ_t: a scatter-add of Δ's rows for token ids (T,B) or (T,B,F) (row
        (t,b) added into each of its F ids' rows; rows past a sequence's length are skipped:
        their ids are not read), one GEMM for dense inputs."""

    def sum_squares(self, *arrays) -> float:
        """Σ A² over every entry of every array, accumulated in float64 in a fixed order
        (deterministic); one value read back from a device for all of them."""

    def scale(self, A, factor) -> Array:
        """A · factor, a new array."""

    def clamp(self, A, limit) -> Array:
        """A clamped to [−limit, limit], a new array."""


class ProductsInTurn:
    """`matmuls` as one `matmul` after another, for a backend each of whose products fills its device."""

    def matmuls(self, specs):
        return [self.matmul(A, B, trans_a=trans_a, trans_b=trans_b) for A, B, trans_a, trans_b in specs]


class CellsOneByOne:
    """`recurrence_forward_cells` / `recurrence_backward_cells` as a loop over the cells, for a
    backend that runs one cell at a time (its own `recurrence_forward` / `recurrence_backward`)."""

    def recurrence_forward_cells(self, XPs, Ws, s0s, lengths, activation):
        return [self.recurrence_forward(XP, W, s0, lengths, activation) for XP, W, s0 in zip(XPs, Ws, s0s)]

    def recurrence_backward_cells(self, Gs, g_lasts, Ss, Ws, lengths, activation, truncate):
        return [self.recurrence_backward(G, g_last, S, W, lengths, activation, truncate)
                for G, g_last, S, W in zip(Gs, g_lasts, Ss, Ws)]
