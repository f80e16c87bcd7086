"""``lapo collect``'s configuration: what to record and how."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lapo.config.checks import check_temperature, check_types


@dataclass(frozen=True)
class CollectConfig:
    """``lapo collect``: record a Procgen game or a Gymnasium id with a policy into a dataset.

    Attributes:
        env: Procgen game or registered Gymnasium id (observed through its rendered pixels).
        frames: number of frames to record (environment steps summed over envs).
        out: output dataset directory (must not exist unless ``overwrite``).
        policy: ``random`` (uniform over the action space), ``scripted`` (the state-feedback
            expert of a continuous-control task, ``lapo.envs.scripted``) or a policy checkpoint.
        num_envs: parallel environments.
        distribution_mode: Procgen distribution mode (the paper uses ``easy``).
        num_levels: number of levels, 0 = all (the paper's setting).
        start_level: first level seed. Record which levels data uses: LAPO evaluates on others.
        seed: seed of the level sampler and of the random policy.
        temperature: sampling temperature of a checkpoint policy (actions from
            ``softmax(logits / temperature)``; 1 samples it as trained, lower is sharper).
        shard_frames: frames per shard file.
        overwrite: replace an existing dataset at ``out`` once recording succeeds.
    """

    env: str
    frames: int
    out: Path
    policy: str = "random"
    num_envs: int = 64
    distribution_mode: str = "easy"
    num_levels: int = 0
    start_level: int = 0
    seed: int = 0
    temperature: float = 1.0
    shard_frames: int = 8192
    overwrite: bool = False

    def __post_init__(self) -> None:
        check_types(self)
        if self.frames < 1:
            raise ValueError(f"frames must be >= 1, got {self.frames}")
        if self.num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {self.num_envs}")
        if self.num_levels < 0 or self.start_level < 0:
            raise ValueError(
                f"num_levels and start_level must be >= 0, got {self.num_levels}, "
                f"{self.start_level}"
            )
        if not 0 <= self.seed < 2**31:
            raise ValueError(f"seed must be in [0, 2**31), got {self.seed}")
        if self.shard_frames < 1:
            raise ValueError(f"shard_frames must be >= 1, got {self.shard_frames}")
        check_temperature(self.temperature)
        if self.policy in ("random", "scripted") and self.temperature != 1.0:
            raise ValueError(
                f"temperature applies to a checkpoint policy; the {self.policy} policy has none "
                f"(got temperature {self.temperature})"
            )
