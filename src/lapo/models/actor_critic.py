"""Actor-critic network: encoder -> policy logits (discrete) or Gaussian mean (continuous) and
state value; ``ActionBounds``, the map from a continuous policy's unit space to the env's units."""

from __future__ import annotations

import torch
from torch import nn


def preprocess_obs(obs: torch.Tensor, frame_shape: tuple[int, ...] | None = None) -> torch.Tensor:
    """``(B, H, W, C) uint8`` -> ``(B, C, H, W) float32`` in [0, 1], channels_last in memory.

    Permuting the NHWC uint8 frames gives an NCHW view whose memory is already channels_last,
    the layout oneDNN's bf16 convolutions prefer on CPU.

    Args:
        obs: the frames.
        frame_shape: ``(H, W, C)`` the network takes (its encoder's ``frame_shape``); None:
            not checked.

    Raises:
        ValueError: ``obs`` is not a 4-d uint8 tensor (float frames already scaled to [0, 1],
            or channel-first ones, would otherwise pass silently with other outputs), or its
            frames are not ``frame_shape`` (a convolution error would say so less clearly).
    """
    shape = tuple(obs.shape)
    if obs.dtype != torch.uint8 or obs.ndim != 4:
        raise ValueError(
            f"expected (B, H, W, C) uint8 frames (the network scales them itself), got "
            f"{str(obs.dtype).removeprefix('torch.')} {shape}"
        )
    if frame_shape is not None and shape[1:] != tuple(frame_shape):
        want = ", ".join(str(n) for n in frame_shape)
        raise ValueError(
            f"expected (B, {want}) uint8 frames (those the network was trained on), got "
            f"{shape}; import or resize the frames at the network's resolution"
        )
    return obs.permute(0, 3, 1, 2).float().div_(255.0)


class ActionBounds(nn.Module):
    """The bounds of a continuous action space, stored with a network (buffers ``low``, ``high``
    ``(A,) float32``), and the map from lapo's unit action space ``[-1, 1]^A`` to them.

    Continuous policies, decoders and regressors output actions in unit space; ``to_env`` clips
    them to ``[-1, 1]`` and maps them affinely onto ``[low, high]`` (``lapo.envs.ActionSpec``
    does the same in numpy).
    """

    def __init__(self, low, high) -> None:
        super().__init__()
        self.register_buffer("low", torch.as_tensor(low, dtype=torch.float32).clone())
        self.register_buffer("high", torch.as_tensor(high, dtype=torch.float32).clone())

    @property
    def dim(self) -> int:
        """A, the number of action dimensions."""
        return int(self.low.numel())

    def to_env(self, unit: torch.Tensor) -> torch.Tensor:
        """``(B, A)`` unit-space actions -> ``(B, A) float32`` in ``[low, high]`` (clipped)."""
        unit = unit.float().clamp(-1.0, 1.0)
        return self.low + (unit + 1.0) * 0.5 * (self.high - self.low)

    def to_unit(self, actions: torch.Tensor) -> torch.Tensor:
        """``(B, A)`` environment-unit actions -> unit space (affine, not clipped)."""
        return 2.0 * (actions.float() - self.low) / (self.high - self.low) - 1.0


class ActorCritic(nn.Module):
    """Policy and value heads on a shared encoder (PPO, Cobbe et al. 2020 architecture).

    Args:
        encoder: module mapping ``(B, C, H, W) float`` to ``(B, encoder.features)``; must have
            a ``features`` attribute.
        num_actions: number of discrete actions (15 for Procgen), or the action dimension A of a
            continuous space.
        bounds: ``(low, high)``, A floats each, for a continuous action space: the policy is then
            a diagonal Gaussian in unit space ``[-1, 1]^A`` whose mean is the policy head's
            output and whose log standard deviation is a state-independent parameter
            ``log_std (A,)`` (initialized to 0, std 1). PPO samples from it unbounded, keeps the
            log-probability of the unclipped sample, and sends ``action_bounds.to_env(sample)``
            (clipped to ``[-1, 1]``, mapped onto the bounds) to the environment.

    ``forward(obs)``: ``obs (B, H, W, C) uint8`` -> ``logits (B, num_actions) float32`` (the
    Gaussian mean ``(B, A)`` when continuous), ``value (B,) float32``.
    """

    def __init__(self, encoder: nn.Module, num_actions: int, bounds=None) -> None:
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
        self.action_bounds = None if bounds is None else ActionBounds(*bounds)
        if bounds is not None:
            if self.action_bounds.dim != num_actions:
                raise ValueError(
                    f"bounds have {self.action_bounds.dim} dims, the head {num_actions}"
                )
            self.log_std = nn.Parameter(torch.zeros(num_actions))

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``obs (B, H, W, C) uint8 -> (logits (B, num_actions) float32, value (B,) float32)``."""
        features = self.encoder(
            preprocess_obs(obs, getattr(self.encoder, "frame_shape", None))
        )  # (B, F)
        logits = self.policy_head(features).float()  # (B, A)
        value = self.value_head(features).float().squeeze(-1)  # (B,)
        return logits, value
