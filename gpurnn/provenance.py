"""Where a published number came from: the command, the date and the commit that produced it.

`provenance(command)` is stored beside the numbers a command writes (docs/figures/*.json,
the demo's metrics), so a figure quoted in the README or docs/ can be traced and rerun.
"""
from __future__ import annotations

import datetime
import subprocess
from pathlib import Path

_SOURCE = Path(__file__).resolve().parent


def commit() -> str | None:
    """`git describe --always --dirty` of the checkout gpurnn runs from (a "-dirty" suffix: the
    code had uncommitted changes), or None outside a git checkout or without git."""
    try:
        done = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=10"], cwd=_SOURCE,
                              capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else None


def provenance(command: str) -> dict:
    """{"command": command, "date": UTC date and time (ISO 8601), "commit": `commit()`}."""
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    return {"command": command, "date": now.isoformat(), "commit": commit()}
