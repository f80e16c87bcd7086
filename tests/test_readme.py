"""The README's Python API example runs as written, on the smoke preset, in a fresh directory."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(markdown: str) -> list[str]:
    """The code of every ```python fenced block of ``markdown``, in order."""
    blocks = re.findall(r"^```python\n(.*?)^```", markdown, flags=re.DOTALL | re.MULTILINE)
    if not blocks:
        raise AssertionError(f"{README} has no ```python block")
    return blocks


def first_python_block(markdown: str) -> str:
    """The code of the first ```python fenced block of ``markdown``."""
    return python_blocks(markdown)[0]


@pytest.mark.slow
def test_readme_python_api_block_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code = first_python_block(README.read_text())
    monkeypatch.chdir(tmp_path)  # the block writes runs/api-demo relative to the cwd
    exec(compile(code, f"{README}:python-block", "exec"), {"__name__": "__readme__"})
    assert (tmp_path / "runs" / "api-demo" / "pipeline.json").exists()


@pytest.mark.slow
def test_readme_own_data_python_block_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np

    from lapo.data.synthetic import sprite_episode

    code = python_blocks(README.read_text())[1]
    assert "my-frames.npz" in code
    rng = np.random.default_rng(0)
    episodes = [sprite_episode(rng, 50) for _ in range(8)]  # the user's file, made up here
    frames = np.concatenate([f for f, _ in episodes])
    starts = np.arange(0, len(frames), 50)
    actions = np.concatenate([a for _, a in episodes])
    np.savez(tmp_path / "my-frames.npz", frames=frames, actions=actions, episode_starts=starts)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, f"{README}:python-block-2", "exec"), {"__name__": "__readme__"})
    assert (tmp_path / "runs" / "my-run" / "decode" / "decoded").is_dir()
