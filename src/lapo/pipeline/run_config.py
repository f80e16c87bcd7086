"""``lapo run``'s configuration: ``RunConfig`` (what the pipeline does), its presets
(``RUN_PRESETS``) and the typed configs of stages 1-3 it implies (``stage_configs``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from lapo.config import (
    BC_PRESETS,
    LAM_PRESETS,
    BCConfig,
    DecodeConfig,
    LAMConfig,
    check_temperature,
)
from lapo.envs import check_env_name
from lapo.pipeline.expert_stage import expert_config


@dataclass(frozen=True)
class RunConfig:
    """``lapo run``: what the pipeline does. Per-preset defaults are in ``RUN_PRESETS``.

    Attributes:
        env: Procgen game or Gymnasium id (``lapo.envs.make_env``); without a shipped expert
            (and no ``expert``) the pipeline's first stage trains one
            (``lapo.pipeline.expert_stage``), except for Pendulum-v1 and
            MountainCarContinuous-v0, which record their scripted expert (``expert="scripted"``,
            ``lapo.envs.scripted``).
        preset: ``cpu``, ``paper`` or ``smoke``; selects every stage's preset and the values of
            every field left None (``RUN_PRESETS``, else ``RUN_DEFAULTS``), so
            ``RunConfig(preset="smoke")`` from Python is the same run as ``lapo run --preset
            smoke``. None: ``paper`` with a CUDA GPU, ``cpu`` without.
        out: run directory (None: ``runs/lapo-ENV-PRESET``, as ``lapo run``).
        expert: expert checkpoint to record; None: the shipped expert of ``env``, else one
            trained by the expert stage.
        train_expert: train the expert in the expert stage even when one is shipped.
        expert_steps: environment steps of the expert stage's PPO (paper 50M, as the paper's
            experts were trained; cpu 8M; smoke a few updates).
        expert_minutes: optional wall-clock budget of the expert stage (None: steps); the
            expert as trained when it ends records the data.
        expert_temperature: the expert records (and is evaluated) sampling from
            ``softmax(logits / T)``; 1 = as trained, lower = sharper demonstrations.
        frames: frames to record (environment steps summed over envs).
        num_envs: parallel environments for recording.
        labels: labelled transitions for offline decoding (paper 256 in the headline figure).
        eval_episodes: complete episodes per evaluated policy (>= 100 for the paper's CIs).
        pseudo_label_updates: not in the paper (0: off): updates of fine-tuning the decoded
            policy on the decoder's labels of unlabelled transitions (``DecodeConfig``); the
            result is evaluated next to the paper's decoded policy.
        sweep: label counts for the label sweep (empty: no sweep).
        sweep_seeds: sweep: seeds per label count.
        sweep_episodes: sweep: episodes per evaluation.
        sweep_baseline: sweep: also label-only BC at every count (same labels and levels).
        online: run online fine-tuning vs PPO from scratch.
        online_steps: environment steps per online run.
        online_seeds: seeds per online method.
        online_ilpo: add the ILPO baseline (Edwards et al. 2019; ``lapo ilpo`` on the recorded
            data, the preset's ``ILPO_PRESETS``, the same online steps and seeds) to the online
            comparison; needs ``online``.
        lam_steps: stage-1 updates (None: the preset's; the learning rate decays over them).
        lam_minutes: optional wall-clock budget of stage 1 in minutes (None: all its steps).
        bc_minutes: optional wall-clock budget of stage 2 in minutes (None: all its steps).
        hide_noop: hide NOOP points in the latent-space map.
        seed: collection seed, and the expert stage's (evaluation uses other seeds).
        device: torch device of the training stages (``cpu``, ``cuda``, ``cuda:N``, ``mps``);
            None: ``lapo.device.default_device()``. Not a setting of the run: a run may resume
            on another device.
        overrides: ``{stage: {field: value}}`` set on top of the stage configs that ``preset``
            and the fields above give (``stage_configs``; ``STAGE_CONFIGS`` names the stages),
            e.g. ``{"lam": {"steps": 500}}``; ``lapo run --set lam.steps=500``. They win over
            ``lam_steps``, ``labels``, ``seed`` and ``pseudo_label_updates``.
        data: an existing lapo dataset (e.g. imported video) to train on instead of recording
            the expert: the ``collect`` stage then only records the dataset's manifest digest
            (nothing is copied), and nothing is played in a game (no ``evaluate``, ``sweep`` or
            ``online``). None: record ``env``'s expert.
        labels_from: with ``data``, a small action-labelled lapo dataset of the same source
            (same frame shape) on which stage 3 trains the decoder and measures its held-out
            accuracy; None: the data's own actions when it has them, else stage 3 is skipped
            and the report says why. With ``data``,
            ``sweep`` and ``online`` are off whatever the preset says (they play the game;
            asking for them with ``data`` is a ValueError).
        wandb: also mirror the run to Weights & Biases when the report is written (the
            resolved config, the stages' logged metrics, the report's figures and numbers;
            needs ``pip install 'lapo[wandb]'``; wandb's own ``WANDB_MODE`` says online or
            offline). TensorBoard (``RUN/tb`` and each stage's ``tb/``) is always written.
        wandb_project: the W&B project.

    Raises:
        ValueError: an unknown game or preset, an override of an unknown stage or field, or a
            value out of range (of this config or of the stage configs it gives).
    """

    env: str = "coinrun"
    preset: str = None  # type: ignore[assignment]  # None: lapo.device.default_preset()
    out: Path = None  # type: ignore[assignment]  # None: runs/lapo-ENV-PRESET
    expert: str | None = None
    train_expert: bool = False
    expert_steps: int = None  # type: ignore[assignment]
    expert_minutes: float | None = None
    expert_temperature: float = 1.0
    frames: int = None  # type: ignore[assignment]  # None (every field so marked): the preset's
    num_envs: int = None  # type: ignore[assignment]
    labels: int = None  # type: ignore[assignment]
    eval_episodes: int = None  # type: ignore[assignment]
    pseudo_label_updates: int = 0
    sweep: tuple[int, ...] = None  # type: ignore[assignment]
    sweep_seeds: int = None  # type: ignore[assignment]
    sweep_episodes: int = None  # type: ignore[assignment]
    sweep_baseline: bool = True
    online: bool = None  # type: ignore[assignment]
    online_steps: int = None  # type: ignore[assignment]
    online_seeds: int = None  # type: ignore[assignment]
    online_ilpo: bool = False
    lam_steps: int | None = None
    lam_minutes: float | None = None
    bc_minutes: float | None = None
    hide_noop: bool = False
    seed: int = 0
    device: str | None = None
    overrides: Mapping[str, Mapping[str, object]] = field(default_factory=dict)
    data: Path | None = None
    labels_from: Path | None = None
    wandb: bool = False
    wandb_project: str = "lapo"

    def __post_init__(self) -> None:
        from lapo.device import default_preset  # imports torch: not at import time

        check_env_name(self.env)
        if self.labels_from is not None and self.data is None:
            raise ValueError("labels_from needs data (the unlabelled dataset it labels)")
        for name in ("data", "labels_from"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, Path(getattr(self, name)))
        check_temperature(self.expert_temperature)
        preset = default_preset() if self.preset is None else self.preset
        if preset not in RUN_PRESETS:
            raise ValueError(f"preset must be one of {', '.join(RUN_PRESETS)}, got {preset!r}")
        object.__setattr__(self, "preset", preset)
        if self.out is None:
            name = self.env if self.data is None else Path(self.data).resolve().name
            object.__setattr__(self, "out", Path("runs") / f"lapo-{name}-{preset}")
        object.__setattr__(self, "out", Path(self.out))
        if self.data is not None and (self.online or self.sweep):  # asked for, not the preset's
            raise ValueError(
                "sweep and online play the game; a run on data (--data) has none to play"
            )
        for name, value in {**RUN_DEFAULTS, **RUN_PRESETS[preset]}.items():
            if getattr(self, name) is None:  # not set by the caller: the preset's value
                object.__setattr__(self, name, value)
        object.__setattr__(self, "sweep", tuple(self.sweep))
        if self.train_expert and self.expert is not None:
            raise ValueError("train_expert trains the run's own expert; drop it or expert")
        for name in (
            "expert_steps",
            "frames",
            "num_envs",
            "labels",
            "eval_episodes",
            "sweep_seeds",
            "sweep_episodes",
            "online_steps",
            "online_seeds",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.pseudo_label_updates < 0:
            raise ValueError(f"pseudo_label_updates must be >= 0, got {self.pseudo_label_updates}")
        if self.labels < 2 or any(n < 2 for n in self.sweep):
            raise ValueError("label counts must be >= 2 (a training and a validation label)")
        for name in ("expert_minutes", "lam_minutes", "bc_minutes"):
            minutes = getattr(self, name)
            if minutes is not None and not 0 < minutes < float("inf"):
                raise ValueError(f"{name} must be > 0 (None: no budget), got {minutes}")
        if self.online_ilpo and not self.online:
            raise ValueError("online_ilpo adds an arm to the online comparison; pass online too")
        if self.data is None and (self.online_ilpo or self.pseudo_label_updates):
            self._check_discrete_game()
        expert_config(self)  # expert_steps of at least one PPO update, before any work
        if self.lam_steps is not None and self.lam_steps < 1:
            raise ValueError(f"lam_steps must be >= 1 (None: the preset's), got {self.lam_steps}")
        object.__setattr__(self, "overrides", check_overrides(self.overrides))
        stage_configs(self)  # a bad override value fails here, before any work
        if self.data is None and self.labels >= self.frames:  # a bound before any work (the
            # training episodes' share is known only once recorded: stage 3 says then)
            raise ValueError(
                f"labels ({self.labels}) must be fewer than the frames the run records "
                f"({self.frames}, --frames): stage 3 draws its labelled transitions from them"
            )
        if self.data is not None:  # nothing to play: the game-playing stages are off
            object.__setattr__(self, "sweep", ())
            object.__setattr__(self, "online", False)

    def _check_discrete_game(self) -> None:
        """Refuse, before any work, what acts in a Procgen game's or discrete actions only: the
        ILPO arm (its online phase plays Procgen) and pseudo-label fine-tuning.

        Raises:
            ValueError: the option named with what the task has instead.
        """
        from lapo.envs import env_action_spec, is_procgen

        if self.online_ilpo and not is_procgen(self.env):
            raise ValueError(
                f"online_ilpo (--online-ilpo): ILPO's online phase plays a Procgen game; "
                f"{self.env} is not one"
            )
        if self.pseudo_label_updates and env_action_spec(self.env).n is None:
            raise ValueError(
                f"pseudo_label_updates (--pseudo-label-updates) fine-tunes on discrete actions "
                f"only; {self.env} has continuous ones: leave it at 0"
            )

    @property
    def own_data(self) -> bool:
        """True when the run trains on a given dataset (``data``) instead of recording."""
        return self.data is not None


#: The stage configs ``RunConfig.overrides`` (``lapo run --set STAGE.FIELD=VALUE``) may change.
STAGE_CONFIGS: dict[str, type] = {"lam": LAMConfig, "bc": BCConfig, "decode": DecodeConfig}


def check_overrides(overrides: Mapping[str, Mapping[str, object]]) -> dict[str, dict]:
    """``overrides`` as plain dicts, after checking every stage and field name.

    Raises:
        ValueError: an unknown stage or field; the message lists the valid names.
    """
    checked: dict[str, dict] = {}
    for stage, values in overrides.items():
        if stage not in STAGE_CONFIGS:
            raise ValueError(
                f"overrides: unknown stage {stage!r}; valid stages: {', '.join(STAGE_CONFIGS)}"
            )
        names = [f.name for f in dataclasses.fields(STAGE_CONFIGS[stage])]
        unknown = [name for name in values if name not in names]
        if unknown:
            raise ValueError(
                f"overrides: {STAGE_CONFIGS[stage].__name__} ({stage}) has no field "
                f"{', '.join(map(repr, unknown))}; valid fields: {', '.join(names)}"
            )
        checked[stage] = dict(values)
    return checked


#: Values of the preset-dependent ``RunConfig`` fields that no preset overrides.
RUN_DEFAULTS: dict[str, object] = {
    "expert_steps": 8_000_000,
    "frames": 200_000,
    "num_envs": 64,
    "labels": 256,
    "eval_episodes": 100,
    "sweep": (),
    "sweep_seeds": 3,
    "sweep_episodes": 32,
    "online": False,
    "online_steps": 1_000_000,
    "online_seeds": 2,
}


#: Per-preset values of ``RunConfig`` fields the caller did not set (``RUN_DEFAULTS`` otherwise).
RUN_PRESETS: dict[str, dict] = {
    "paper": {
        "expert_steps": 50_000_000,  # the paper recorded experts trained with PPO for 50M frames
        "frames": 8_000_000,
        "online": True,
        "online_steps": 4_000_000,
        "online_seeds": 3,
        "sweep": (16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192),
    },
    "cpu": {"frames": 200_000},
    "smoke": {
        "expert_steps": 4 * 16 * 3,  # three updates of PPO_PRESETS["smoke"]
        "frames": 3000,
        "num_envs": 8,
        "labels": 32,
        "eval_episodes": 4,
        "sweep_seeds": 1,
        "sweep_episodes": 2,
        "online_steps": 1024,
        "online_seeds": 1,
    },
}


def resolve(config: RunConfig, given: set[str]) -> RunConfig:
    """Fill fields not in ``given`` from the preset's defaults (``RUN_PRESETS``).

    ``RunConfig`` already does this for fields left unset (None); this also resets fields that
    were set but are not in ``given``.
    """
    defaults = {k: v for k, v in RUN_PRESETS[config.preset].items() if k not in given}
    return dataclasses.replace(config, **defaults)


def stage_configs(config: RunConfig) -> dict:
    """The typed configs of stages 1-3 for ``config.preset`` (``lam``, ``bc``, ``decode``): the
    stage's preset, then the ``RunConfig`` fields that set it, then ``config.overrides``.

    Raises:
        ValueError: a value out of range (the stage config's own validation).
    """
    lam_steps = {"steps": config.lam_steps} if config.lam_steps is not None else {}
    decode = {
        "labels": config.labels,
        "seed": config.seed,
        "pseudo_label_updates": config.pseudo_label_updates,
        **({"max_epochs": 20, "bc_steps": 20} if config.preset == "smoke" else {}),
    }
    bases = {
        "lam": {**LAM_PRESETS[config.preset], **lam_steps},
        "bc": dict(BC_PRESETS[config.preset]),
        "decode": decode,
    }
    configs = {}
    for stage, base in bases.items():
        try:
            configs[stage] = STAGE_CONFIGS[stage](**{**base, **config.overrides.get(stage, {})})
        except ValueError as error:  # name the stage: a field such as steps is in several
            if str(error).startswith(STAGE_CONFIGS[stage].__name__):
                raise
            raise ValueError(f"{STAGE_CONFIGS[stage].__name__} ({stage}): {error}") from None
    return configs
