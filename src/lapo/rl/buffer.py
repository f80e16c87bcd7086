"""Fixed-size, time-major rollout storage for on-policy PPO."""

from __future__ import annotations

from collections.abc import Iterator

import torch


class RolloutBuffer:
    """Storage for T steps of N environments.

    Attributes (all time-major):
        obs: ``(T, N, H, W, C) uint8``; actions: ``(T, N) int64``; logprobs, values, rewards:
        ``(T, N) float32``; dones: ``(T, N) bool`` (the action at t ended the episode).
    """

    def __init__(
        self,
        num_steps: int,
        num_envs: int,
        obs_shape: tuple[int, ...],
        device: torch.device | str = "cpu",
    ) -> None:
        T, N = num_steps, num_envs
        self.num_steps, self.num_envs = T, N
        self.obs = torch.zeros((T, N, *obs_shape), dtype=torch.uint8, device=device)
        self.actions = torch.zeros((T, N), dtype=torch.int64, device=device)
        self.logprobs = torch.zeros((T, N), device=device)
        self.values = torch.zeros((T, N), device=device)
        self.rewards = torch.zeros((T, N), device=device)
        self.dones = torch.zeros((T, N), dtype=torch.bool, device=device)

    def minibatches(
        self,
        advantages: torch.Tensor,
        returns: torch.Tensor,
        num_minibatches: int,
        generator: torch.Generator,
    ) -> Iterator[dict[str, torch.Tensor]]:
        """Shuffle the T*N samples and yield ``num_minibatches`` dicts of flat tensors.

        ``generator`` must live on the buffer's device.

        Keys: obs ``(B, H, W, C)``, actions, logprobs, values, advantages, returns ``(B,)``.
        """
        total = self.num_steps * self.num_envs
        size = total // num_minibatches
        order = torch.randperm(total, generator=generator, device=generator.device)
        flat = {
            "obs": self.obs.flatten(0, 1),
            "actions": self.actions.flatten(),
            "logprobs": self.logprobs.flatten(),
            "values": self.values.flatten(),
            "advantages": advantages.flatten(),
            "returns": returns.flatten(),
        }
        for start in range(0, size * num_minibatches, size):
            idx = order[start : start + size]
            yield {k: v[idx] for k, v in flat.items()}
