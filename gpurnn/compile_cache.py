"""Numba's on-disk caches (`cache=True`), keyed on every source the cached functions compile from.

Numba keys a cached function on its own source file only, but the CPU backend's loops
(`backends/cpu_loops.py`) compile `backends/cpu_blas.py`'s GEMM and σ, which compile
`gpurnn/cell.py`'s σ and σ'; the CUDA kernels (`gpurnn.kernels`) compile the device functions of
their sibling modules, `cell.py`'s σ and `optim_rules.py`'s update rule. An edit there would
leave a warm cache running the old code. `key_on_sources` adds the SHA-256 of a set of sources
(CPU_SOURCES; `cuda_sources()`) to the stamp each cached function's index is checked against
(Numba's `IndexDataCacheFile._source_stamp`; numba-cuda's has the same), so a change to any of
them recompiles every function of that set.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
# every file whose code the CPU backend's cached functions compile (cpu.py and cpu_loops.py
# call cpu_blas.py, which calls cell.py)
CPU_SOURCES = tuple(_PACKAGE / name for name in ("cell.py", "backends/cpu_blas.py", "backends/cpu_loops.py",
                                                 "backends/cpu.py"))


@functools.cache
def cuda_sources() -> tuple:
    """Every module of `gpurnn.kernels` (found without importing it), with cell.py and optim_rules.py."""
    kernels = Path(importlib.util.find_spec("gpurnn.kernels").submodule_search_locations[0])
    return (_PACKAGE / "cell.py", _PACKAGE / "optim_rules.py", *sorted(kernels.glob("*.py")))


@functools.cache
def sources_digest(sources: tuple) -> str:
    """SHA-256 over the files' contents, in order."""
    digest = hashlib.sha256()
    for path in sources:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def key_on_sources(namespace: dict, sources: tuple) -> None:
    """Key the disk cache of every cached Numba function in `namespace` (a module's globals())
    on `sources_digest(sources)` as well as on its own file."""
    for value in list(namespace.values()):
        key_dispatcher(value, sources)


def key_dispatcher(dispatcher, sources: tuple):
    """`dispatcher` with its disk cache keyed on `sources_digest(sources)` too (once); anything
    without a disk cache (an uncached or simulated kernel, NUMBA_DISABLE_JIT) is left alone.
    Returns `dispatcher`."""
    index = getattr(getattr(dispatcher, "_cache", None), "_cache_file", None)
    if index is not None and not _keyed(index._source_stamp):
        index._source_stamp = (_MARK, index._source_stamp, sources_digest(sources))
    return dispatcher


_MARK = "gpurnn.compile_cache"       # first item of a keyed stamp (Numba's own may be a tuple too)


def _keyed(stamp) -> bool:
    return isinstance(stamp, tuple) and len(stamp) == 3 and stamp[0] == _MARK
