"""Networks built from the typed configs: one function per network a checkpoint kind holds.

Shared by the stages (fresh networks) and ``lapo.load`` (networks rebuilt from a checkpoint's
config before its weights are loaded), so the two can never disagree about an architecture.
"""

from __future__ import annotations

import torch
from torch import nn

from lapo.config import BCConfig, FinetuneConfig, ILPOConfig, PPOConfig
from lapo.envs import ActionSpec, env_action_spec
from lapo.envs.games import NUM_ACTIONS, OBS_SHAPE
from lapo.models.actor_critic import ActorCritic
from lapo.models.encoders import make_encoder
from lapo.models.ilpo import (
    ILPO_SIZES,
    ActionRemap,
    ILPOLatentPolicy,
    ILPOModel,
    ILPOPolicy,
    LatentForwardModel,
)
from lapo.models.online import HybridActorCritic, OnlineActorCritic
from lapo.models.policy import LatentPolicy

#: Hidden sizes of the online (hybrid) decoder: the paper's decoder (the release's online
#: decoder: 192, 128, 64).
DECODER_HIDDEN = (128, 128)


def build_encoder(config: BCConfig, frame_shape: tuple[int, ...] = OBS_SHAPE) -> nn.Module:
    """The image encoder a ``BCConfig`` describes, for frames of ``frame_shape`` (H, W, C)."""
    h, _, c = frame_shape
    return make_encoder(
        config.encoder,
        in_channels=c,
        multiplier=config.multiplier,
        features=config.features,
        image_size=h,
    )


def check_policy_frames(config: BCConfig, frame_shape: tuple[int, ...], where: str) -> None:
    """Refuse frames the policy encoder of ``config`` cannot take, before any work.

    Raises:
        ValueError: not square ``(H, W, C)`` frames, or smaller than the Nature-CNN's 36 pixels;
            the message says what is expected and what ``where`` holds.
    """
    shape = tuple(int(n) for n in frame_shape)
    smallest = 36 if config.encoder == "nature" else 1
    if len(shape) != 3 or shape[0] != shape[1] or shape[0] < smallest or shape[2] < 1:
        raise ValueError(
            f"{where}: the {config.encoder} policy encoder needs square frames (H, W, C) with "
            f"H = W >= {smallest}, e.g. (64, 64, 3); got {shape}"
        )


def build_latent_policy(
    config: BCConfig, latent_dim: int, frame_shape: tuple[int, ...] = OBS_SHAPE
) -> LatentPolicy:
    """A freshly initialized latent policy (channels_last) for latents of ``latent_dim``."""
    encoder = build_encoder(config, frame_shape)
    return LatentPolicy(encoder, latent_dim).to(memory_format=torch.channels_last)


def action_head(spec: ActionSpec) -> tuple[int, tuple | None]:
    """``(width of the policy head, bounds or None)`` for an action space: ``n`` logits, or a
    Gaussian over A dimensions with the space's ``(low, high)`` (``ActorCritic``)."""
    return spec.dim, ((spec.low, spec.high) if spec.continuous else None)


def build_expert_policy(config: PPOConfig) -> ActorCritic:
    """The PPO expert's actor-critic a ``PPOConfig`` describes (channels_last memory format),
    with the action head of ``config.env``'s action space (discrete logits or a Gaussian)."""
    encoder = make_encoder(config.encoder, multiplier=config.multiplier, features=config.features)
    width, bounds = action_head(env_action_spec(config.env))
    return ActorCritic(encoder, width, bounds).to(memory_format=torch.channels_last)


def build_online_policy(
    config: FinetuneConfig, latent_policy: LatentPolicy | None = None
) -> OnlineActorCritic | HybridActorCritic:
    """The network of a stage-3 online run (uses the global torch RNG for new layers).

    From ``latent_policy``: ``OnlineActorCritic`` on its encoder with a frozen trunk (or
    ``HybridActorCritic`` with ``config.hybrid``); the latent policy's modules are reused, not
    copied. Without: a fresh ``OnlineActorCritic`` of ``config``'s encoder, nothing frozen.
    The action head follows ``config.env``'s action space (a Gaussian for a continuous one).

    Raises:
        ValueError: ``config.hybrid`` for a continuous action space.
    """
    width, bounds = action_head(env_action_spec(config.env))
    if latent_policy is None:
        encoder = make_encoder(config.encoder, multiplier=config.multiplier,
                               features=config.features)  # fmt: skip
        net = OnlineActorCritic(encoder, width, bounds=bounds)
        return net.to(memory_format=torch.channels_last)
    if config.hybrid:
        if bounds is not None:
            raise ValueError(f"hybrid fine-tuning supports discrete actions only; {config.env} "
                             "is continuous")  # fmt: skip
        return HybridActorCritic.from_latent_policy(latent_policy, width, DECODER_HIDDEN)
    return OnlineActorCritic(latent_policy.encoder, width, freeze_trunk=True, bounds=bounds)


def build_ilpo_model(config: ILPOConfig, frame_shape: tuple[int, ...] = OBS_SHAPE) -> ILPOModel:
    """ILPO's offline networks (forward model and latent policy) for frames ``(H, W, C)``."""
    h, _, c = frame_shape
    encoder = make_encoder(config.encoder, in_channels=c, multiplier=config.multiplier,
                           features=config.features, image_size=h)  # fmt: skip
    forward_model = LatentForwardModel(config.num_latents, channels=c, **ILPO_SIZES[config.size])
    return ILPOModel(forward_model, ILPOLatentPolicy(encoder, config.num_latents))


def build_ilpo_policy(
    config: ILPOConfig, num_actions: int = NUM_ACTIONS, frame_shape: tuple[int, ...] = OBS_SHAPE
) -> ILPOPolicy:
    """ILPO's acting policy: a fresh latent policy and action-remapping network."""
    latent_policy = build_ilpo_model(config, frame_shape).latent_policy
    remap = ActionRemap(config.features, config.num_latents, num_actions, config.remap_hidden)
    return ILPOPolicy(latent_policy, remap)
