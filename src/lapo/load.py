"""Every checkpoint kind lapo writes: resolved from a path, kind-checked and loaded, in one place.

Checkpoints are ordinary lapo checkpoints (``lapo.checkpoint``: safetensors + JSON, atomic,
pickle-free) whose ``meta["kind"]`` says how to rebuild the network (``lapo.models.build``):

| kind | written by | modules | network |
|---|---|---|---|
| ``latent-action-model`` | ``lapo train-lam`` (stage 1) | ``lam`` | ``LatentActionModel`` |
| ``latent-policy`` | ``lapo train-bc`` (stage 2) | ``policy`` | ``LatentPolicy`` |
| ``decoded-policy`` | ``lapo decode-offline`` | ``latent_policy``, ``decoder`` | DecodedPolicy |
| ``bc-policy`` | ``lapo decode-offline`` | ``policy`` | ``ActionClassifier`` |
| ``ppo-expert`` | ``lapo expert train`` | ``policy`` | ``ActorCritic`` |
| ``finetuned-policy`` | ``lapo finetune`` / ``lapo ppo`` | ``policy`` | ``OnlineActorCritic`` |
| ``ilpo-policy`` | ``lapo ilpo`` (online phase) | ``policy`` | ``ILPOPolicy`` |

Every ``path`` argument may be a run directory (its ``checkpoint`` is used) or a checkpoint path
with or without ``.json``. Every loader takes ``device`` (a ``torch.device`` or a string such as
``"cuda:1"``); None means ``lapo.device.default_device()`` (CUDA, else MPS, else CPU), the policy
of every stage, and the weights are read straight onto it. ``load_policy`` returns, for every kind
that acts in the true action space, a module mapping ``(B, H, W, C) uint8`` observations to
``(B, A)`` logits.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from lapo.checkpoint import CHECKPOINT as CHECKPOINT  # re-exported
from lapo.checkpoint import (
    CheckpointError,
    checkpoint_path,
    load_checkpoint,
    meta_errors,
    read_meta,
    save_checkpoint,
)
from lapo.config import BCConfig, FinetuneConfig, ILPOConfig, LAMConfig, PPOConfig
from lapo.device import resolve_device
from lapo.envs.games import OBS_SHAPE
from lapo.models.actor_critic import ActorCritic
from lapo.models.build import (
    build_encoder,
    build_expert_policy,
    build_ilpo_policy,
    build_latent_policy,
)
from lapo.models.encoders import make_encoder
from lapo.models.lam import LatentActionModel
from lapo.models.online import HybridActorCritic, OnlineActorCritic
from lapo.models.policy import ActionClassifier, ActionDecoder, DecodedPolicy, LatentPolicy

LAM_KIND = "latent-action-model"
LATENT_POLICY_KIND = "latent-policy"
DECODED_KIND = "decoded-policy"
BC_KIND = "bc-policy"
EXPERT_KIND = "ppo-expert"
FINETUNED_KIND = "finetuned-policy"
ILPO_POLICY_KIND = "ilpo-policy"


def expect_kind(path: str | Path, *kinds: str) -> dict:
    """Read the meta of the checkpoint at ``path`` and check that its kind is one of ``kinds``.

    Returns:
        The checkpoint's meta dict.

    Raises:
        FileNotFoundError: no checkpoint there.
        lapo.checkpoint.CheckpointError: another kind (the message names the kind found).
    """
    path = checkpoint_path(path)
    meta = read_meta(path)
    if meta.get("kind") not in kinds:
        raise CheckpointError(
            f"{path}: expected a {' or '.join(kinds)} checkpoint, found {meta.get('kind')!r}"
        )
    return meta


class UnfinishedRunError(ValueError):
    """A stage consumes an earlier stage's checkpoint whose training did not finish."""


def check_finished(path: str | Path, *, allow_unfinished: bool = False, what: str = "") -> dict:
    """Refuse a training checkpoint (stage 1 or 2) whose training stopped before its last update.

    Unfinished: a recorded ``stop_reason``, or ``meta["step"]`` (updates done) below
    ``meta["config"]["steps"]``, as after ``--time-budget``, SIGINT or SIGTERM. Checkpoints
    without these fields (other kinds) count as finished.

    Args:
        allow_unfinished: accept it anyway (``--allow-unfinished``).
        what: the option that named it, e.g. ``--lam``, for the message.

    Returns:
        The checkpoint's meta.

    Raises:
        FileNotFoundError: no checkpoint there.
        UnfinishedRunError: it is unfinished and ``allow_unfinished`` is False; the message says
            at which update it stopped and how to go on.
    """
    path = checkpoint_path(path)
    meta = read_meta(path)
    step = meta.get("step")
    config = meta.get("config")
    steps = config.get("steps") if isinstance(config, dict) else None
    reason = meta.get("stop_reason")
    short = isinstance(step, int) and isinstance(steps, int) and step < steps
    if (reason is not None or short) and not allow_unfinished:
        done = f"update {step} of {steps}" if short else f"update {step}"
        why = f" ({reason})" if reason else ""
        named = f"{what} " if what else ""
        raise UnfinishedRunError(
            f"{named}{path.parent}: its training stopped at {done}{why}; resume it with --resume "
            "to finish, or pass allow_unfinished=True (--allow-unfinished) to use it as it is"
        )
    return meta


def frame_shape(meta: dict) -> tuple[int, ...]:
    """The ``(H, W, C)`` frame shape a checkpoint was trained on (Procgen's when unrecorded)."""
    return tuple(meta.get("frame_shape", OBS_SHAPE))


def checkpoint_game(meta: dict) -> str | None:
    """The game a checkpoint was trained on (its meta's ``env``, else its config's), or None
    when it does not say."""
    config = meta.get("config")
    return meta.get("env") or (config.get("env") if isinstance(config, dict) else None)


def save_policy(path: str | Path, kind: str, modules: dict[str, nn.Module], meta: dict) -> None:
    """Write a policy checkpoint of ``kind`` (weights only; ``meta`` must rebuild the network)."""
    save_checkpoint(path, modules=modules, meta={"kind": kind, **meta})


def bc_config_meta(config: BCConfig) -> dict:
    """``BCConfig`` as JSON-able meta (tuples become lists)."""
    return dataclasses.asdict(config)


def load_lam(
    path: str | Path, device: str | torch.device | None = None
) -> tuple[LatentActionModel, LAMConfig]:
    """Load a trained stage-1 latent action model, in eval mode and channels_last on ``device``
    (None: the default device, ``lapo.device.default_device``).

    Use ``model.label(frames)`` to get latent actions and codes for any frame sequence.

    Raises:
        FileNotFoundError: no checkpoint there.
        lapo.checkpoint.CheckpointError: not a latent action model, or mismatched weights.
    """
    path = checkpoint_path(path)
    meta = expect_kind(path, LAM_KIND)
    with meta_errors(path):
        config = LAMConfig(**meta["config"])
        h, _, c = (int(n) for n in meta["frame_shape"])
        # channels_last, as it trained (stage 1): an NCHW copy labelled 1.6-1.8x slower in fp32
        # on a CPU (benchmarks/cpu_fp32.py), since every conv then reorders its input and weights
        model = LatentActionModel(config, channels=c, image_size=h)
    device = resolve_device(device)
    model = model.to(device, memory_format=torch.channels_last)
    load_checkpoint(path, modules={"lam": model}, map_location=device)
    return model.eval(), config


def load_latent_policy(
    path: str | Path, device: str | torch.device | None = None
) -> tuple[LatentPolicy, BCConfig]:
    """Load a stage-2 latent policy, in eval mode on ``device`` (None: the default device).

    Raises:
        FileNotFoundError: no checkpoint there.
        lapo.checkpoint.CheckpointError: not a latent policy, or mismatched weights.
    """
    path = checkpoint_path(path)
    meta = expect_kind(path, LATENT_POLICY_KIND)
    with meta_errors(path):
        config = BCConfig(**meta["config"])
        policy = build_latent_policy(config, int(meta["latent_dim"]), frame_shape(meta))
    return _loaded(path, {"policy": policy}, policy, device), config


def latent_policy_network(path: str | Path) -> dict:
    """The encoder fields ``{encoder, multiplier, features}`` of a latent policy checkpoint.

    Raises:
        FileNotFoundError: no checkpoint there.
        lapo.checkpoint.CheckpointError: not a latent policy (the message names the kind found),
            or one trained on frames other than Procgen's ``(64, 64, 3)``.
    """
    path = checkpoint_path(path)
    meta = read_meta(path)
    if meta.get("kind") != LATENT_POLICY_KIND:
        raise CheckpointError(
            f"{path}: expected a latent-policy checkpoint (lapo train-bc), found a "
            f"{meta.get('kind')!r} checkpoint"
        )
    with meta_errors(path):
        shape = frame_shape(meta)
        if shape != OBS_SHAPE:
            raise CheckpointError(
                f"{path}: latent policy for {shape} frames; Procgen has {OBS_SHAPE}"
            )
        config = meta["config"]
        return {k: config[k] for k in ("encoder", "multiplier", "features")}


def _loaded(path: Path, modules: dict[str, nn.Module], net: nn.Module, device) -> nn.Module:
    """``net`` moved to ``device`` (None: the default device), then ``modules`` loaded from
    ``path`` onto it, in eval mode."""
    device = resolve_device(device)
    net = net.to(device)
    load_checkpoint(path, modules=modules, map_location=device)
    return net.eval()


def load_expert(
    path: str | Path, device: str | torch.device | None = None
) -> tuple[ActorCritic, PPOConfig]:
    """Load a PPO expert (``lapo expert train`` or a shipped one): network (eval mode, on
    ``device``; None: the default device) and config.

    ``net(obs (B, 64, 64, 3) uint8) -> (logits (B, 15) float32, value (B,) float32)``.

    Raises:
        FileNotFoundError: no checkpoint there.
        lapo.checkpoint.CheckpointError: not a PPO expert checkpoint or mismatched weights.
    """
    path = checkpoint_path(path)
    meta = read_meta(path)
    if meta.get("kind") != EXPERT_KIND:
        raise CheckpointError(
            f"{path}: expected a PPO expert checkpoint, found {meta.get('kind')!r}"
        )
    with meta_errors(path):
        config = PPOConfig(**meta["config"])
        net = build_expert_policy(config)
    return _loaded(path, {"policy": net}, net, device), config


def load_finetuned(
    path: str | Path, device: str | torch.device | None = None
) -> tuple[OnlineActorCritic | HybridActorCritic, FinetuneConfig]:
    """Load a ``finetuned-policy`` checkpoint: network (eval, on ``device``; None: the default
    device) and config.

    ``net(obs (B, 64, 64, 3) uint8) -> (logits (B, 15) float32, value (B,) float32)``.

    Raises:
        FileNotFoundError: no checkpoint there.
        lapo.checkpoint.CheckpointError: another kind of checkpoint, or mismatched weights.
    """
    path = checkpoint_path(path)
    meta = expect_kind(path, FINETUNED_KIND)
    with meta_errors(path):
        config = FinetuneConfig(**meta["config"])
        encoder = make_encoder(
            config.encoder, multiplier=config.multiplier, features=config.features
        )
        num_actions = int(meta["num_actions"])
        if config.hybrid:
            latent_policy = LatentPolicy(encoder, int(meta["latent_dim"]))
            hidden = tuple(meta["decoder_hidden"])
            net = HybridActorCritic.from_latent_policy(latent_policy, num_actions, hidden)
        else:
            net = OnlineActorCritic(encoder, num_actions, freeze_trunk=not config.from_scratch,
                                    bounds=_bounds(meta))  # fmt: skip
    net = net.to(memory_format=torch.channels_last)
    return _loaded(path, {"policy": net}, net, device), config


def _bounds(meta: dict) -> tuple | None:
    """A checkpoint's continuous action bounds ``(low, high)`` (``action_bounds``), or None."""
    bounds = meta.get("action_bounds")
    return None if bounds is None else (tuple(bounds[0]), tuple(bounds[1]))


def _load_decoded(path: Path, meta: dict, device) -> nn.Module:
    config = BCConfig(**meta["bc_config"])
    latent_policy = build_latent_policy(config, int(meta["latent_dim"]), frame_shape(meta))
    decoder = ActionDecoder(
        int(meta["latent_dim"]), int(meta["num_actions"]), tuple(meta["hidden"]),
        _bounds(meta),
    )  # fmt: skip
    net = DecodedPolicy(latent_policy, decoder)
    return _loaded(path, {"latent_policy": latent_policy, "decoder": decoder}, net, device)


def _load_bc(path: Path, meta: dict, device) -> nn.Module:
    config = BCConfig(**meta["bc_config"])
    net = ActionClassifier(
        build_encoder(config, frame_shape(meta)), int(meta["num_actions"]), _bounds(meta)
    )
    net = net.to(memory_format=torch.channels_last)
    return _loaded(path, {"policy": net}, net, device)


def _load_ilpo(path: Path, meta: dict, device) -> nn.Module:
    config = ILPOConfig(**meta["config"])
    net = build_ilpo_policy(config, int(meta["num_actions"]), frame_shape(meta))
    return _loaded(path, {"policy": net}, net, device)


class LogitsOnly(nn.Module):
    """An actor-critic seen as a policy: ``obs -> logits`` (the value head is dropped)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    @property
    def action_bounds(self):
        """The actor-critic's continuous action bounds (None: discrete)."""
        return getattr(self.net, "action_bounds", None)

    @property
    def log_std(self):
        """The actor-critic's Gaussian log-std (None: discrete)."""
        return getattr(self.net, "log_std", None)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """``obs (B, H, W, C) uint8 -> (B, A) float32`` logits (the Gaussian mean when continuous):
        the actor-critic's first output."""
        return self.net(obs)[0]


#: kind -> loader(path, meta, device) of a module ``(B, H, W, C) uint8 -> (B, A) logits``.
LOADERS: dict[str, Callable[[Path, dict, torch.device | str | None], nn.Module]] = {
    EXPERT_KIND: lambda path, meta, device: LogitsOnly(load_expert(path, device)[0]),
    FINETUNED_KIND: lambda path, meta, device: LogitsOnly(load_finetuned(path, device)[0]),
    DECODED_KIND: _load_decoded,
    BC_KIND: _load_bc,
    ILPO_POLICY_KIND: _load_ilpo,
}


def load_policy(
    path: str | Path, device: str | torch.device | None = None
) -> tuple[nn.Module, dict]:
    """Load any acting policy checkpoint of the project: the logits module (eval mode, on
    ``device``; None: the default device) and meta.

    Raises:
        FileNotFoundError: no checkpoint there.
        lapo.checkpoint.CheckpointError: a checkpoint that does not act in the true action space
            (e.g. a latent policy or a latent action model); the message lists the kinds that do.
    """
    path = checkpoint_path(path)
    meta = read_meta(path)
    kind = meta.get("kind")
    if kind not in LOADERS:
        other = {
            LATENT_POLICY_KIND: "; load it with lapo.load.load_latent_policy (it predicts latent "
            "actions; stage 3 decodes them to true actions)",
            LAM_KIND: "; load it with lapo.load.load_lam (its label() gives latent actions)",
        }.get(kind, "")
        raise CheckpointError(
            f"{path}: a {kind!r} checkpoint does not act in the environment; expected one of "
            f"{', '.join(LOADERS)}{other}"
        )
    with meta_errors(path):
        return LOADERS[kind](path, meta, device).eval(), meta
