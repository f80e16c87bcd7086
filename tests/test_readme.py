"""The README's Python API example runs as written, on the smoke preset, in a fresh directory."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def first_python_block(markdown: str) -> str:
    """The code of the first ```python fenced block of ``markdown``."""
    match = re.search(r"^```python\n(.*?)^```", markdown, flags=re.DOTALL | re.MULTILINE)
    if match is None:
        raise AssertionError(f"{README} has no ```python block")
    return match.group(1)


@pytest.mark.slow
def test_readme_python_api_block_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code = first_python_block(README.read_text())
    monkeypatch.chdir(tmp_path)  # the block writes runs/api-demo relative to the cwd
    exec(compile(code, f"{README}:python-block", "exec"), {"__name__": "__readme__"})
    assert (tmp_path / "runs" / "api-demo" / "pipeline.json").exists()
