"""PPO experts shipped inside the package (trained on 2 CPU cores with ``lapo expert train``).

Each expert is a checkpoint directory ``lapo/experts/<game>/`` (``checkpoint.json`` +
``checkpoint.<sha8>.safetensors``, kind ``ppo-expert``); docs/experts.md lists how each was
trained, its held-out return and the command that reproduces it. Nothing is downloaded.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def shipped_games() -> list[str]:
    """Games with a shipped expert, sorted."""
    root = resources.files(__name__)
    return sorted(
        entry.name
        for entry in root.iterdir()
        if entry.is_dir() and entry.joinpath("checkpoint.json").is_file()
    )


def shipped_expert(game: str) -> Path:
    """Checkpoint directory of the shipped expert for ``game``.

    Raises:
        FileNotFoundError: no expert is shipped for ``game``; the message lists those that are.
    """
    path = Path(str(resources.files(__name__).joinpath(game)))
    if not (path / "checkpoint.json").is_file():
        raise FileNotFoundError(
            f"no shipped expert for {game!r}; shipped: {', '.join(shipped_games()) or 'none'}. "
            f"Train one with `lapo expert train --env {game}` and pass its run directory."
        )
    return path
