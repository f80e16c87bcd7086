"""Typed configurations for lapo's commands, one module per stage or command. Validation happens
in ``__post_init__`` so that a bad value fails before any work starts. This package imports
nothing from the rest of lapo.

- ``collect``: recording (``CollectConfig``)
- ``lam``: stage 1, the latent action model (``LAMConfig``, ``LAM_PRESETS``)
- ``bc``: stage 2, latent behaviour cloning (``BCConfig``, ``BC_PRESETS``)
- ``decode``: stage 3 offline, decoding (``DecodeConfig``)
- ``ppo``: PPO experts and stage 3 online (``PPOConfig``, ``FinetuneConfig`` and their presets)
- ``ilpo``: the ILPO baseline (``ILPOConfig``, ``ILPO_PRESETS``)
- ``video``, ``aggregate``: ``lapo data import`` of videos and ``lapo aggregate``
- ``checks``: the validation helpers they share
"""

from lapo.config.aggregate import AggregateConfig
from lapo.config.bc import BC_PRESETS, BCConfig
from lapo.config.checks import check_temperature
from lapo.config.collect import CollectConfig
from lapo.config.decode import DecodeConfig
from lapo.config.ilpo import ILPO_PRESETS, ILPOConfig
from lapo.config.lam import LAM_PRESETS, LAMConfig
from lapo.config.ppo import (
    FINETUNE_PRESETS,
    PPO_PRESETS,
    SCRATCH_LEARNING_RATE,
    FinetuneConfig,
    PPOConfig,
)
from lapo.config.video import RESIZE_MODES, VideoImportConfig

__all__ = [
    "BC_PRESETS",
    "FINETUNE_PRESETS",
    "ILPO_PRESETS",
    "LAM_PRESETS",
    "PPO_PRESETS",
    "RESIZE_MODES",
    "SCRATCH_LEARNING_RATE",
    "AggregateConfig",
    "BCConfig",
    "CollectConfig",
    "DecodeConfig",
    "FinetuneConfig",
    "ILPOConfig",
    "LAMConfig",
    "PPOConfig",
    "VideoImportConfig",
    "check_temperature",
]
