"""v2: the backend's kernel, `gpurnn.kernels.gemm` (shared-memory TILE × TILE tiles, one output
per thread, transposes folded into the tile loads). Imported, not copied: the harness times
what the backend runs.
"""
from gpurnn.backends.cuda import _tiles
from gpurnn.kernels.gemm import gemm


def launch(A, B, C):
    M, N = C.shape
    gemm[_tiles(M, N)](A, B, C[0], 0, 0, 0, C)   # C[0]: an unused bias of the right type

