"""Numba's on-disk cache of the CPU backend's compiled functions, keyed on every source they
compile from.

Numba (`cache=True`) keys a cached function on its own source file only, but the loops in
`cpu_loops` compile `cpu_blas`'s GEMM and σ, which compile `gpurnn.cell`'s σ and σ': an edit
there would leave a warm cache running the old code. `key_on_sources` adds the SHA-256 of
all of SOURCES to the stamp each cached function's index is checked against (Numba's
`IndexDataCacheFile._source_stamp`), so a change to any of them recompiles every one.
"""
from __future__ import annotations

import functools
import hashlib
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parents[1]
# every file whose code the backend's cached functions compile (cpu.py and cpu_loops.py call
# cpu_blas.py, which calls cell.py)
SOURCES = tuple(_PACKAGE / name for name in ("cell.py", "backends/cpu_blas.py", "backends/cpu_loops.py",
                                             "backends/cpu.py"))


@functools.cache
def sources_digest() -> str:
    """SHA-256 over SOURCES' contents, in order."""
    digest = hashlib.sha256()
    for path in SOURCES:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def key_on_sources(namespace: dict) -> None:
    """Key the cache of every cached Numba function in `namespace` (a module's globals()) on
    `sources_digest()` as well as on its own file (functions without a disk cache, e.g. under
    NUMBA_DISABLE_JIT, are left alone)."""
    for value in list(namespace.values()):
        index = getattr(getattr(value, "_cache", None), "_cache_file", None)
        if index is not None and not isinstance(index._source_stamp, tuple):
            index._source_stamp = (index._source_stamp, sources_digest())
