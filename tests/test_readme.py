"""Every ```python block of README.md and docs/*.md runs, each in a fresh namespace in an empty
temporary folder (a block makes the data it needs), so the documentation cannot drift from the
code. CPU process only (no `backend` fixture: the simulator process leaves these out)."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.M | re.S)


def python_blocks():
    """(page, first line, code) of every python block."""
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for match in BLOCK.finditer(text):
            yield page.relative_to(ROOT), text.count("\n", 0, match.start()) + 2, match.group(1)


BLOCKS = list(python_blocks())


def test_the_pages_have_python_blocks():
    assert sum(page.name == "README.md" for page, _, _ in BLOCKS) >= 4


@pytest.mark.parametrize("page, line, code", BLOCKS, ids=[f"{p}:{line}" for p, line, _ in BLOCKS])
def test_block_runs(page, line, code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile("\n" * (line - 1) + code, str(page), "exec"), {"__name__": f"{page}:{line}"})
