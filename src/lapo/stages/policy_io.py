"""Save and load every policy the pipeline produces, and act with any of them.

Policy checkpoints are ordinary lapo checkpoints (``lapo.checkpoint``: safetensors + JSON, atomic,
pickle-free) whose ``meta["kind"]`` says how to rebuild the network:

| kind | written by | modules | network |
|---|---|---|---|
| ``ppo-expert`` | ``lapo expert train`` | ``policy`` | ``ActorCritic`` |
| ``latent-policy`` | ``lapo train-bc`` | ``policy`` | ``LatentPolicy`` (outputs latents) |
| ``decoded-policy`` | ``lapo decode-offline`` | ``latent_policy``, ``decoder`` | DecodedPolicy |
| ``bc-policy`` | ``lapo decode-offline`` | ``policy`` | ``ActionClassifier`` |
| ``finetuned-policy`` | ``lapo finetune`` / ``lapo ppo`` | ``policy`` | ``ActorCritic`` |

``load_policy`` returns, for every kind that acts in the true action space, a module mapping
``(B, H, W, C) uint8`` observations to ``(B, 15)`` logits; ``PolicyActor`` samples from it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lapo.checkpoint import CheckpointError, load_checkpoint, read_meta, save_checkpoint
from lapo.config import BCConfig, check_temperature
from lapo.envs import NUM_ACTIONS, OBS_SHAPE
from lapo.models import make_encoder
from lapo.models.policy import ActionClassifier, ActionDecoder, DecodedPolicy, LatentPolicy
from lapo.precision import autocast

CHECKPOINT = "checkpoint"


def checkpoint_path(path: str | Path) -> Path:
    """A run directory or a checkpoint path (with or without ``.json``) -> the checkpoint path."""
    path = Path(path)
    if path.is_dir():
        return path / CHECKPOINT
    return path.with_suffix("") if path.suffix == ".json" else path


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


def build_latent_policy(
    config: BCConfig, latent_dim: int, frame_shape: tuple[int, ...] = OBS_SHAPE
) -> LatentPolicy:
    """A freshly initialized latent policy (channels_last) for latents of ``latent_dim``."""
    encoder = build_encoder(config, frame_shape)
    return LatentPolicy(encoder, latent_dim).to(memory_format=torch.channels_last)


def save_policy(path: str | Path, kind: str, modules: dict[str, nn.Module], meta: dict) -> None:
    """Write a policy checkpoint of ``kind`` (weights only; ``meta`` must rebuild the network)."""
    save_checkpoint(path, modules=modules, meta={"kind": kind, **meta})


def _shape(meta: dict) -> tuple[int, ...]:
    return tuple(meta.get("frame_shape", OBS_SHAPE))


def _kind(path: Path, expected: tuple[str, ...]) -> dict:
    meta = read_meta(path)
    if meta.get("kind") not in expected:
        raise CheckpointError(
            f"{path}: expected a {' or '.join(expected)} checkpoint, found {meta.get('kind')!r}"
        )
    return meta


def load_latent_policy(path: str | Path) -> tuple[LatentPolicy, BCConfig]:
    """Load a stage-2 latent policy (run directory or checkpoint path), in eval mode on CPU.

    Raises:
        FileNotFoundError: no checkpoint there.
        lapo.checkpoint.CheckpointError: not a latent policy, or mismatched weights.
    """
    path = checkpoint_path(path)
    meta = _kind(path, ("latent-policy",))
    config = BCConfig(**meta["config"])
    policy = build_latent_policy(config, int(meta["latent_dim"]), _shape(meta))
    load_checkpoint(path, modules={"policy": policy})
    return policy.eval(), config


def _load_decoded(path: Path, meta: dict) -> nn.Module:
    config = BCConfig(**meta["bc_config"])
    latent_policy = build_latent_policy(config, int(meta["latent_dim"]), _shape(meta))
    decoder = ActionDecoder(
        int(meta["latent_dim"]), int(meta["num_actions"]), tuple(meta["hidden"])
    )
    load_checkpoint(path, modules={"latent_policy": latent_policy, "decoder": decoder})
    return DecodedPolicy(latent_policy, decoder)


def _load_bc(path: Path, meta: dict) -> nn.Module:
    config = BCConfig(**meta["bc_config"])
    net = ActionClassifier(build_encoder(config, _shape(meta)), int(meta["num_actions"]))
    net = net.to(memory_format=torch.channels_last)
    load_checkpoint(path, modules={"policy": net})
    return net


class _LogitsOnly(nn.Module):
    """An actor-critic seen as a policy: ``obs -> logits`` (the value head is dropped)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs)[0]


def _load_expert(path: Path, meta: dict) -> nn.Module:
    from lapo.stages.expert import load_expert

    return _LogitsOnly(load_expert(path)[0])


def _load_finetuned(path: Path, meta: dict) -> nn.Module:
    from lapo.stages.finetune import load_finetuned

    return _LogitsOnly(load_finetuned(path)[0])


#: kind -> loader(path, meta) of a module ``(B, H, W, C) uint8 -> (B, A) logits``.
LOADERS: dict[str, Callable[[Path, dict], nn.Module]] = {
    "ppo-expert": _load_expert,
    "finetuned-policy": _load_finetuned,
    "decoded-policy": _load_decoded,
    "bc-policy": _load_bc,
}


def load_policy(path: str | Path) -> tuple[nn.Module, dict]:
    """Load any acting policy checkpoint of the project: the logits module (eval mode) and meta.

    Raises:
        FileNotFoundError: no checkpoint there.
        lapo.checkpoint.CheckpointError: a checkpoint that does not act in the true action space
            (e.g. a latent policy or a latent action model); the message lists the kinds that do.
    """
    path = checkpoint_path(path)
    meta = read_meta(path)
    kind = meta.get("kind")
    if kind not in LOADERS:
        raise CheckpointError(
            f"{path}: a {kind!r} checkpoint does not act in the environment; expected one of "
            f"{', '.join(LOADERS)}"
        )
    return LOADERS[kind](path, meta).eval(), meta


class PolicyActor:
    """Act with a logits module: ``act(obs (N, H, W, C) uint8) -> (N,) int64`` actions.

    Args:
        net: ``(B, H, W, C) uint8 -> (B, A)`` logits.
        greedy: argmax instead of sampling from the softmax.
        bf16: autocast the forward pass to bf16 where the device has native bf16.
        seed: seed of the sampling generator (evaluation returns are reproducible given it).
        temperature: sample from ``softmax(logits / temperature)`` (1: the policy as trained).

    Raises:
        ValueError: ``temperature`` is not a finite number > 0.
    """

    def __init__(
        self,
        net: nn.Module,
        greedy: bool = False,
        bf16: bool = True,
        seed: int = 0,
        temperature: float = 1.0,
    ):
        check_temperature(temperature)
        self.net, self.greedy, self.bf16, self.temperature = net, greedy, bf16, temperature
        self.device = next(net.parameters()).device
        self.generator = torch.Generator(self.device).manual_seed(seed)

    @torch.no_grad()
    def act(self, obs: np.ndarray) -> np.ndarray:
        with autocast(self.device, self.bf16):
            logits = self.net(torch.from_numpy(obs).to(self.device)).float()
        if self.greedy:
            return logits.argmax(-1).cpu().numpy()
        probs = torch.softmax(logits / self.temperature, -1)
        return torch.multinomial(probs, 1, generator=self.generator).squeeze(1).cpu().numpy()


def bc_config_meta(config: BCConfig) -> dict:
    """``BCConfig`` as JSON-able meta (tuples become lists)."""
    return dataclasses.asdict(config)


__all__ = [
    "LOADERS",
    "NUM_ACTIONS",
    "PolicyActor",
    "bc_config_meta",
    "build_encoder",
    "build_latent_policy",
    "checkpoint_path",
    "load_latent_policy",
    "load_policy",
    "save_policy",
]


@torch.no_grad()
def predict_actions(net: nn.Module, observations: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Greedy actions of a logits module on ``(N, H, W, C) uint8`` -> ``(N,) int64``."""
    device = next(net.parameters()).device
    out = [
        net(torch.from_numpy(observations[i : i + batch_size]).to(device)).argmax(-1)
        for i in range(0, len(observations), batch_size)
    ]
    return torch.cat(out).cpu().numpy() if out else np.zeros(0, dtype=np.int64)
