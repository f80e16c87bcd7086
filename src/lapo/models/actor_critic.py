"""Actor-critic network for discrete actions: encoder -> policy logits and state value."""

from __future__ import annotations

import torch
from torch import nn


def preprocess_obs(obs: torch.Tensor) -> torch.Tensor:
    """``(B, H, W, C) uint8`` -> ``(B, C, H, W) float32`` in [0, 1], channels_last in memory.

    Permuting the NHWC uint8 frames gives an NCHW view whose memory is already channels_last,
    the layout oneDNN's bf16 convolutions prefer on CPU.
    """
    return obs.permute(0, 3, 1, 2).float().div_(255.0)


class ActorCritic(nn.Module):
    """Policy and value heads on a shared encoder (PPO, Cobbe et al. 2020 architecture).

    Args:
        encoder: module mapping ``(B, C, H, W) float`` to ``(B, encoder.features)``; must have
            a ``features`` attribute.
        num_actions: number of discrete actions (15 for Procgen).

    ``forward(obs)``: ``obs (B, H, W, C) uint8`` -> ``logits (B, num_actions) float32``,
    ``value (B,) float32``.
    """

    def __init__(self, encoder: nn.Module, num_actions: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.policy_head = nn.Linear(encoder.features, num_actions)
        self.value_head = nn.Linear(encoder.features, 1)
        # Small policy-head init gives a near-uniform initial policy (Andrychowicz et al. 2021).
        nn.init.orthogonal_(self.policy_head.weight, gain=0.01)
        nn.init.zeros_(self.policy_head.bias)
        nn.init.orthogonal_(self.value_head.weight, gain=1.0)
        nn.init.zeros_(self.value_head.bias)
        self.num_actions = num_actions

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.encoder(preprocess_obs(obs))  # (B, F)
        logits = self.policy_head(features).float()  # (B, A)
        value = self.value_head(features).float().squeeze(-1)  # (B,)
        return logits, value
