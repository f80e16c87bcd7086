"""Networks of LAPO stage 3 online (paper section 4.3, PAPER.md "Stage 3: decoding").

- ``OnlineActorCritic``: the PPO actor-critic with its forward pass split at the encoder's
  convolutional trunk, ``heads(trunk(obs))``. Fine-tuning builds it from the latent policy's
  encoder (the latent head is replaced by a new policy head over the true actions and a value
  head, the trunk is frozen); PPO from scratch builds it from a fresh encoder, nothing frozen.
- ``HybridActorCritic``: the release's RL+SL variant. Its logits are the mean of the RL head's
  and those of an SL path ``decoder(latent_head(fc_sl(trunk)))``: the frozen latent policy
  followed by an action decoder trained by supervised learning (not by PPO) on IDM labels of the
  agent's own transitions (``lapo.stages.finetune``).

Both are composed from existing modules (the latent policy's encoder and head, an
``ActionDecoder``); nothing is patched onto a built model.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from lapo.models.actor_critic import ActorCritic, preprocess_obs
from lapo.models.policy import ActionDecoder, LatentPolicy


class OnlineActorCritic(ActorCritic):
    """``ActorCritic`` whose forward pass is ``heads(trunk(obs))``, optionally with a frozen trunk.

    Parameter names, initialization (policy head orthogonal with gain 0.01, value head gain 1,
    zero biases) and outputs are those of ``ActorCritic``, so its state dict loads into one.

    Args:
        encoder: an encoder with a convolutional trunk ``conv`` and a fully connected layer
            ``fc`` (``lapo.models.make_encoder``), e.g. a latent policy's; it is shared, not
            copied, so freezing affects the module passed in.
        num_actions: size of the new policy head (15 for Procgen).
        bounds: ``(low, high)`` of a continuous action space (a Gaussian policy, see
            ``ActorCritic``).
        freeze_trunk: set ``requires_grad=False`` on ``encoder.conv`` (paper: the convolutional
            layers stay fixed during fine-tuning; the encoders have no normalization layers, so
            train/eval mode does not matter).

    Shapes: ``trunk(obs (B, H, W, C) uint8) -> (B, D)`` with D the flattened conv output;
    ``heads((B, D)) -> (logits (B, num_actions) float32, value (B,) float32)``.
    """

    def __init__(
        self, encoder: nn.Module, num_actions: int, freeze_trunk: bool = False, bounds=None
    ) -> None:
        super().__init__(encoder, num_actions, bounds)
        self.trunk_frozen = freeze_trunk
        if freeze_trunk:
            encoder.conv.requires_grad_(False)

    def trunk(self, obs: torch.Tensor) -> torch.Tensor:
        """The convolutional trunk ``encoder.conv``: ``obs (B, H, W, C) uint8 -> (B, D)``."""
        return self.encoder.conv(preprocess_obs(obs))  # (B, D)

    def heads(self, trunk: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``encoder.fc`` and the heads: ``trunk (B, D) -> (logits (B, num_actions) float32, value
        (B,) float32)``."""
        features = self.encoder.fc(trunk)  # (B, F)
        logits = self.policy_head(features).float()  # (B, A)
        value = self.value_head(features).float().squeeze(-1)  # (B,)
        return logits, value

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``heads(trunk(obs))``: ``obs (B, H, W, C) uint8 -> (logits, value)``, as ActorCritic."""
        return self.heads(self.trunk(obs))


class HybridActorCritic(nn.Module):
    """The release's RL+SL policy: ``logits = (rl_logits + decoder(latent)) / 2``.

    ``latent = latent_head(fc_sl(trunk))`` is the frozen latent policy's prediction: ``fc_sl`` is
    a frozen copy of its fully connected layer (the RL path's ``fc`` is fine-tuned) and
    ``latent_head`` its frozen head. The decoder is not differentiated through ``heads``: PPO
    trains only ``rl`` (minus its frozen trunk); the decoder is fitted separately (``decoder``).

    Build with ``from_latent_policy``.

    Shapes: as ``OnlineActorCritic`` (``trunk``, ``heads``, ``forward``); ``latent(trunk (B, D))
    -> (B, latent_dim) float32``.
    """

    def __init__(
        self,
        rl: OnlineActorCritic,
        fc_sl: nn.Module,
        latent_head: nn.Linear,
        decoder: ActionDecoder,
    ) -> None:
        super().__init__()
        if not rl.trunk_frozen:
            raise ValueError("the hybrid policy shares a frozen trunk between its two paths")
        if decoder.latent_dim != latent_head.out_features:
            raise ValueError(
                f"the latent head outputs {latent_head.out_features} dims but the decoder "
                f"expects {decoder.latent_dim}"
            )
        self.rl, self.fc_sl, self.latent_head, self.decoder = rl, fc_sl, latent_head, decoder
        fc_sl.requires_grad_(False)
        latent_head.requires_grad_(False)
        self.trunk_frozen = True
        self.num_actions = rl.num_actions

    @classmethod
    def from_latent_policy(
        cls, latent_policy: LatentPolicy, num_actions: int, hidden: tuple[int, ...] = (128, 128)
    ) -> HybridActorCritic:
        """RL path on the latent policy's encoder (frozen trunk, trained ``fc``, new heads); SL
        path on a frozen copy of its ``fc`` and its head, then a fresh ``ActionDecoder``."""
        fc_sl = copy.deepcopy(latent_policy.encoder.fc)
        rl = OnlineActorCritic(latent_policy.encoder, num_actions, freeze_trunk=True)
        decoder = ActionDecoder(latent_policy.latent_dim, num_actions, hidden)
        return cls(rl, fc_sl, latent_policy.head, decoder)

    def trunk(self, obs: torch.Tensor) -> torch.Tensor:
        """The frozen trunk shared by both paths: ``obs (B, H, W, C) uint8 -> (B, D)``."""
        return self.rl.trunk(obs)  # (B, D)

    def latent(self, trunk: torch.Tensor) -> torch.Tensor:
        """The frozen latent policy's prediction ``latent_head(fc_sl(trunk))``: ``(B, D) ->
        (B, latent_dim) float32``."""
        return self.latent_head(self.fc_sl(trunk)).float()  # (B, latent_dim)

    def heads(self, trunk: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``trunk (B, D) -> (logits (B, A) float32, value (B,) float32)``: the mean of the RL
        logits and the decoder's logits of ``latent(trunk)`` (no gradient), and the RL value."""
        rl_logits, value = self.rl.heads(trunk)  # (B, A), (B,)
        with torch.no_grad():
            sl_logits = self.decoder(self.latent(trunk))  # (B, A)
        return (rl_logits + sl_logits) / 2, value

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``heads(trunk(obs))``: ``obs (B, H, W, C) uint8 -> (logits (B, A), value (B,))``."""
        return self.heads(self.trunk(obs))
