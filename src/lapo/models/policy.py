"""Policies of LAPO stages 2 and 3: the latent policy, the action decoder and their composition.

- ``LatentPolicy`` (stage 2, paper section 4.2): an image encoder on o_t alone and a linear head
  that regresses the IDM's latent action z_t.
- ``ActionDecoder`` (stage 3 offline, section 4.3): an MLP (128, 128) from a latent action to
  logits over the true actions, trained on a few hundred labelled (z_t, a_t) pairs.
- ``DecodedPolicy``: ``decoder(latent_policy(o_t))``, a policy in the true action space built by
  composing the two trained modules (nothing is patched).

Observations are ``(B, H, W, C) uint8`` as the environments return them; the encoders see
``preprocess_obs`` floats in [0, 1] exactly as the PPO actor-critic does, so that a latent
policy's encoder can be reused by online fine-tuning unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

from lapo.models.actor_critic import ActionBounds, preprocess_obs


class LatentPolicy(nn.Module):
    """pi(o_t) -> predicted latent action (paper section 4.2).

    Args:
        encoder: ``(B, C, H, W) float -> (B, encoder.features)`` with ``conv`` and ``fc`` parts
            (``lapo.models.make_encoder``).
        latent_dim: size of the latent action (128 in the paper).

    ``forward(obs (B, H, W, C) uint8) -> (B, latent_dim) float32``.
    """

    def __init__(self, encoder: nn.Module, latent_dim: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.features, latent_dim)
        self.latent_dim = latent_dim

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """``obs (B, H, W, C) uint8 -> (B, latent_dim) float32``, the predicted latent action."""
        features = self.encoder(
            preprocess_obs(obs, getattr(self.encoder, "frame_shape", None))
        )  # (B, F)
        return self.head(features).float()  # (B, latent_dim)


class ActionDecoder(nn.Module):
    """MLP from latent action to true-action logits (paper section 4.3, hidden sizes (128, 128)).

    ``forward(latent (B, latent_dim) float) -> logits (B, num_actions) float32``; with
    ``bounds`` ``(low, high)`` of a continuous action space, ``num_actions`` is its dimension A
    and the output is the regressed action in unit space ``[-1, 1]^A`` (``action_bounds``
    maps it to the environment's units).
    """

    def __init__(
        self,
        latent_dim: int,
        num_actions: int,
        hidden: tuple[int, ...] = (128, 128),
        bounds=None,
    ):
        super().__init__()
        layers: list[nn.Module] = []
        width = latent_dim
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, num_actions))
        self.mlp = nn.Sequential(*layers)
        self.latent_dim, self.num_actions, self.hidden = latent_dim, num_actions, tuple(hidden)
        self.action_bounds = None if bounds is None else ActionBounds(*bounds)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        """``latent (B, latent_dim)`` -> ``(B, num_actions) float32`` logits, or with ``bounds``
        the unit-space action ``(B, A) float32`` (float32 under bf16 autocast too)."""
        return self.mlp(latent.float()).float()


class DecodedPolicy(nn.Module):
    """``decoder(latent_policy(o_t))``: the offline-decoded LAPO policy in the true action space.

    ``forward(obs (B, H, W, C) uint8) -> logits (B, num_actions) float32``.
    """

    def __init__(self, latent_policy: LatentPolicy, decoder: ActionDecoder) -> None:
        super().__init__()
        if latent_policy.latent_dim != decoder.latent_dim:
            raise ValueError(
                f"latent policy outputs {latent_policy.latent_dim} dims but the decoder expects "
                f"{decoder.latent_dim}"
            )
        self.latent_policy = latent_policy
        self.decoder = decoder

    @property
    def action_bounds(self) -> ActionBounds | None:
        """The decoder's bounds (continuous actions), else None."""
        return self.decoder.action_bounds

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """``decoder(latent_policy(obs))``: ``obs (B, H, W, C) uint8 -> (B, num_actions) float32``
        logits (unit-space actions ``(B, A)`` when continuous)."""
        return self.decoder(self.latent_policy(obs))


class ActionClassifier(nn.Module):
    """Label-only behaviour cloning baseline: encoder on o_t -> logits over true actions.

    ``forward(obs (B, H, W, C) uint8) -> logits (B, num_actions) float32``; with ``bounds`` of a
    continuous action space, the regressed action in unit space ``(B, A)`` (see
    ``ActionDecoder``).
    """

    def __init__(self, encoder: nn.Module, num_actions: int, bounds=None) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.features, num_actions)
        self.action_bounds = None if bounds is None else ActionBounds(*bounds)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """``obs (B, H, W, C) uint8 -> (B, num_actions) float32`` logits (unit-space actions
        ``(B, A)`` when continuous)."""
        return self.head(
            self.encoder(preprocess_obs(obs, getattr(self.encoder, "frame_shape", None)))
        ).float()
