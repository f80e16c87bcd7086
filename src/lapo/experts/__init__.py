"""PPO experts shipped inside the package (trained on 2 CPU cores with ``lapo expert train``).

Each expert is a checkpoint directory ``lapo/experts/<game>/`` (``checkpoint.json`` +
``checkpoint.<sha8>.safetensors``, kind ``ppo-expert``); docs/experts.md lists how each was
trained, its held-out return and the command that reproduces it. Nothing is downloaded.
"""

from __future__ import annotations

import dataclasses
from importlib import resources
from pathlib import Path
from typing import Any

#: The bar a shipped expert is measured against: held-out normalized return >= 0.5 (the paper's
#: reference returns; 200 episodes, sampling as they record, with an evaluation seed that played
#: no part in choosing the checkpoint). Experts below it ship marked so (docs/experts.md).
BAR_NORMALIZED_RETURN = 0.5


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


@dataclasses.dataclass(frozen=True)
class ExpertCard:
    """What a shipped expert records about itself (read from its checkpoint JSON, no tensors).

    Attributes:
        game: the Procgen game.
        path: the checkpoint directory.
        env_steps: environment steps of the run it was exported from.
        prior_env_steps: environment steps its initial weights had trained when that run
            started from another expert (``--init-from``; 0 for a run from scratch), so that
            ``env_steps + prior_env_steps`` is its whole training.
        encoder: the policy's encoder (``nature``, ``impala``).
        evaluation: the held-out evaluation ``lapo expert export`` recorded (keys ``episodes``,
            ``mean``, ``ci95``, ``normalized``, ``normalized_ci95``, ``start_level``, ``seed``),
            or None when it was exported without one.
    """

    game: str
    path: Path
    env_steps: int
    prior_env_steps: int
    encoder: str
    evaluation: dict[str, Any] | None

    @property
    def meets_bar(self) -> bool | None:
        """Whether the recorded held-out normalized return reaches ``BAR_NORMALIZED_RETURN``
        (None without an evaluation)."""
        if self.evaluation is None:
            return None
        return self.evaluation["normalized"] >= BAR_NORMALIZED_RETURN

    @property
    def standing(self) -> str:
        """``meets_bar`` in words: "meets the 0.5 bar", "below the 0.5 bar" or "not evaluated"."""
        if self.meets_bar is None:
            return "not evaluated"
        return f"{'meets' if self.meets_bar else 'below'} the {BAR_NORMALIZED_RETURN} bar"


def expert_card(game: str) -> ExpertCard:
    """The ``ExpertCard`` of the shipped expert for ``game``.

    Raises:
        FileNotFoundError: no expert is shipped for ``game`` (``shipped_expert``).
    """
    from lapo.checkpoint import read_meta

    path = shipped_expert(game)
    meta = read_meta(path / "checkpoint")
    return ExpertCard(
        game=game,
        path=path,
        env_steps=int(meta["env_steps"]),
        prior_env_steps=int(meta.get("prior_env_steps", 0)),
        encoder=str(meta["config"]["encoder"]),
        evaluation=meta.get("evaluation"),
    )
