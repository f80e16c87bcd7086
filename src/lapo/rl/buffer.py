"""Fixed-size, time-major rollout storage for on-policy PPO."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import torch

#: Per-sample fields every buffer holds besides its inputs (names an input may not take).
FIELDS = ("actions", "logprobs", "values", "advantages", "returns")


class RolloutBuffer:
    """Storage for T steps of N environments.

    Args:
        num_steps, num_envs: T and N.
        obs_shape: ``(H, W, C)``; the default input is the observation, ``obs (H, W, C) uint8``.
        device: where every tensor lives.
        inputs: instead of ``obs_shape``, the named per-sample inputs of the learner's forward
            pass, ``{name: (shape, dtype)}``; e.g. the features of a frozen convolutional trunk,
            computed once while acting instead of again in every PPO epoch.
        action_dim: A for continuous actions, stored ``(T, N, A) float32``; None (default):
            discrete actions ``(T, N) int64``.

    Attributes (all time-major):
        inputs: ``{name: (T, N, *shape) dtype}``; ``obs`` is ``inputs["obs"]`` when stored.
        actions: ``(T, N) int64`` (or ``(T, N, A) float32``);
        logprobs, values, rewards: ``(T, N) float32``;
        dones: ``(T, N) bool`` (the action at t ended the episode).

    Raises:
        ValueError: neither or both of ``obs_shape`` and ``inputs``, or an input named like a
            field (``FIELDS``).
    """

    def __init__(
        self,
        num_steps: int,
        num_envs: int,
        obs_shape: tuple[int, ...] | None = None,
        device: torch.device | str = "cpu",
        *,
        inputs: Mapping[str, tuple[tuple[int, ...], torch.dtype]] | None = None,
        action_dim: int | None = None,
    ) -> None:
        if (obs_shape is None) == (inputs is None):
            raise ValueError("give either obs_shape or inputs")
        if inputs is None:
            inputs = {"obs": (tuple(obs_shape), torch.uint8)}
        clash = set(inputs) & set(FIELDS)
        if clash:
            raise ValueError(f"input names {sorted(clash)} collide with the buffer's fields")
        T, N = num_steps, num_envs
        self.num_steps, self.num_envs = T, N
        self.inputs = {
            name: torch.zeros((T, N, *shape), dtype=dtype, device=device)
            for name, (shape, dtype) in inputs.items()
        }
        if action_dim is None:
            self.actions = torch.zeros((T, N), dtype=torch.int64, device=device)
        else:
            self.actions = torch.zeros((T, N, action_dim), dtype=torch.float32, device=device)
        self.logprobs = torch.zeros((T, N), device=device)
        self.values = torch.zeros((T, N), device=device)
        self.rewards = torch.zeros((T, N), device=device)
        self.dones = torch.zeros((T, N), dtype=torch.bool, device=device)

    @property
    def obs(self) -> torch.Tensor:
        """``(T, N, H, W, C) uint8`` observations (only when the buffer stores them)."""
        if "obs" not in self.inputs:
            raise AttributeError(f"this buffer stores {sorted(self.inputs)}, not observations")
        return self.inputs["obs"]

    def minibatches(
        self,
        advantages: torch.Tensor,
        returns: torch.Tensor,
        num_minibatches: int,
        generator: torch.Generator,
        keys: Sequence[str] | None = None,
    ) -> Iterator[dict[str, torch.Tensor]]:
        """Shuffle the T*N samples and yield ``num_minibatches`` dicts of flat tensors.

        ``generator`` must live on the buffer's device; ``keys`` selects the inputs to gather
        (default: all of them).

        Keys: the inputs (e.g. obs ``(B, H, W, C)``), and actions, logprobs, values,
        advantages, returns ``(B,)``.
        """
        total = self.num_steps * self.num_envs
        size = total // num_minibatches
        order = torch.randperm(total, generator=generator, device=generator.device)
        names = self.inputs if keys is None else keys
        flat = {name: self.inputs[name].flatten(0, 1) for name in names}
        flat |= {
            "actions": self.actions.flatten(0, 1),
            "logprobs": self.logprobs.flatten(),
            "values": self.values.flatten(),
            "advantages": advantages.flatten(),
            "returns": returns.flatten(),
        }
        for start in range(0, size * num_minibatches, size):
            idx = order[start : start + size]
            yield {k: v[idx] for k, v in flat.items()}
