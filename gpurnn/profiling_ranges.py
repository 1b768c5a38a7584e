"""NVTX ranges that name gpurnn's stages on an Nsight Systems / Nsight Compute timeline.

    from gpurnn.profiling_ranges import nvtx_range

    with nvtx_range("forward"):            # a context manager ...
        ...

    @nvtx_range("optimizer step")          # ... or a decorator
    def step(...): ...

Every range lives in the "gpurnn" NVTX domain (filter on it with `nsys --nvtx-domain-include
gpurnn`); the standard stages (STAGES) get fixed colours so timelines compare at a glance.
Outside a profiler an NVTX range costs well under a microsecond (the `nvtx` package's no-op
path), so the trainer can leave them on. Without the `nvtx` package (e.g. a bare GPU image)
every range is a no-op that still checks its name.
"""
from __future__ import annotations

import contextlib

try:
    import nvtx
except ImportError:
    nvtx = None

DOMAIN = "gpurnn"
STAGES = {           # stage name -> timeline colour
    "forward": "green",
    "backward": "red",
    "clip": "yellow",
    "optimizer step": "blue",
    "data": "gray",
    "evaluate": "purple",
}


def nvtx_range(name: str, color: str | None = None):
    """An NVTX range named `name` in the gpurnn domain, usable with `with` or as a decorator.
    `color` defaults to the stage's colour in STAGES (cyan for other names)."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty str, got {name!r}")
    if nvtx is None:
        return _NoRange()
    return nvtx.annotate(message=name, color=color or STAGES.get(name, "cyan"), domain=DOMAIN)


class _NoRange(contextlib.ContextDecorator):
    """What `nvtx_range` returns without the `nvtx` package: a context manager and decorator
    that does nothing."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
