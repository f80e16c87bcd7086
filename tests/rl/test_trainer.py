"""The shared PPO trainer: named buffer inputs, caching a frozen trunk changes nothing, and the
sampling generator across devices."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from lapo.config import PPO_PRESETS, PPOConfig
from lapo.envs.procgen import EpisodeStats, StepResult
from lapo.models import make_encoder
from lapo.models.online import OnlineActorCritic
from lapo.rl import PPOTrainer, RolloutBuffer


class StripeEnv:
    """Tiny deterministic vector env: the frame's colour names the rewarded action (0, 1 or 2);
    episodes last 5 steps."""

    def __init__(self, num_envs: int, seed: int = 0) -> None:
        self.num_envs = num_envs
        self._rng = np.random.default_rng(seed)
        self._colour = self._rng.integers(0, 3, num_envs)
        self._t = np.zeros(num_envs, dtype=np.int64)
        self._ret = np.zeros(num_envs)

    def _obs(self) -> np.ndarray:
        obs = np.zeros((self.num_envs, 64, 64, 3), np.uint8)
        obs[np.arange(self.num_envs), :, :, self._colour] = 200
        obs[:, 0, :, 0] = (self._t * 40)[:, None]  # the time step shows in the first row
        return obs

    def reset(self) -> np.ndarray:
        return self._obs()

    def step(self, actions: np.ndarray) -> StepResult:
        reward = (actions == self._colour).astype(np.float32)
        self._ret += reward
        self._t += 1
        done = self._t >= 5
        episodes = [EpisodeStats(int(i), float(self._ret[i]), 5) for i in np.flatnonzero(done)]
        self._t[done], self._ret[done] = 0, 0.0
        self._colour = self._rng.integers(0, 3, self.num_envs)
        return StepResult(self._obs(), reward, done, episodes)

    def close(self) -> None:
        pass


def test_buffer_named_inputs_stay_aligned() -> None:
    buf = RolloutBuffer(4, 3, inputs={"trunk": ((2,), torch.float32), "obs": ((1,), torch.uint8)})
    buf.inputs["trunk"][:] = torch.arange(12.0).reshape(4, 3, 1)
    buf.obs[:] = torch.arange(12, dtype=torch.uint8).reshape(4, 3, 1)
    buf.actions[:] = torch.arange(12).reshape(4, 3)
    adv = torch.arange(12.0).reshape(4, 3)
    batches = list(buf.minibatches(adv, adv, 2, torch.Generator().manual_seed(0), keys=["trunk"]))
    assert len(batches) == 2 and "obs" not in batches[0]
    for b in batches:
        assert torch.equal(b["trunk"][:, 0], b["actions"].float())
        assert torch.equal(b["advantages"], b["actions"].float())
    with pytest.raises(ValueError, match="collide"):
        RolloutBuffer(2, 2, inputs={"actions": ((1,), torch.int64)})
    with pytest.raises(AttributeError, match="not observations"):
        _ = RolloutBuffer(2, 2, inputs={"trunk": ((1,), torch.float32)}).obs


def _trained(cache_trunk: bool) -> tuple[dict[str, torch.Tensor], PPOTrainer]:
    config = dataclasses.replace(PPOConfig(**PPO_PRESETS["smoke"]), bf16=False, seed=3)
    torch.manual_seed(0)
    net = OnlineActorCritic(make_encoder("nature", features=32), 15, freeze_trunk=True)
    start = {k: v.clone() for k, v in net.state_dict().items()}
    params = [p for p in net.parameters() if p.requires_grad]
    trainer = PPOTrainer(config, net, StripeEnv(config.num_envs), device="cpu", params=params,
                         cache_trunk=cache_trunk, keep_obs=True)  # fmt: skip
    for _ in range(2):
        trainer.learn(trainer.rollout())
    after = {k: v.clone() for k, v in net.state_dict().items()}
    for name, value in after.items():  # the trunk is frozen, everything else trained
        assert torch.equal(value, start[name]) == name.startswith("encoder.conv"), name
    return after, trainer


def test_cached_trunk_features_train_like_the_full_forward_pass() -> None:
    cached, trainer = _trained(cache_trunk=True)
    full, _ = _trained(cache_trunk=False)
    assert set(trainer.buffer.inputs) == {"trunk", "obs"}
    with torch.no_grad():  # the stored features are the trunk of the stored observations
        recomputed = trainer.net.trunk(trainer.buffer.obs.flatten(0, 1))
    assert torch.allclose(trainer.buffer.inputs["trunk"].flatten(0, 1), recomputed, atol=1e-5)
    for name in cached:
        assert torch.allclose(cached[name], full[name], atol=1e-5), name


def _trainer(seed: int = 3) -> PPOTrainer:
    config = dataclasses.replace(PPOConfig(**PPO_PRESETS["smoke"]), bf16=False, seed=seed)
    net = OnlineActorCritic(make_encoder("nature", features=32), 15)
    return PPOTrainer(config, net, StripeEnv(config.num_envs), device="cpu")


def test_generator_of_another_device_is_reseeded_with_a_warning() -> None:
    # A CUDA generator's state is 16 bytes; a CPU generator cannot take it (a checkpoint trained
    # on a GPU and resumed on a laptop). The resume re-seeds from (seed, update), deterministically.
    cuda_state = torch.arange(16, dtype=torch.uint8)
    draws = []
    for _ in range(2):
        trainer = _trainer()
        trainer.update = 7
        with pytest.warns(UserWarning, match="comes from cuda, this run is on cpu: re-seeded"):
            trainer._restore_generator(cuda_state, "cuda")
        draws.append(torch.rand(4, generator=trainer.generator))
    assert torch.equal(draws[0], draws[1])
    later = _trainer()
    later.update = 8  # another update, another stream
    with pytest.warns(UserWarning):
        later._restore_generator(cuda_state, None)  # old checkpoints: known by the state's size
    assert not torch.equal(torch.rand(4, generator=later.generator), draws[0])


def test_generator_of_the_same_device_resumes_exactly() -> None:
    trainer = _trainer()
    torch.rand(5, generator=trainer.generator)
    state = trainer.generator.get_state()
    expected = torch.rand(4, generator=trainer.generator)
    other = _trainer(seed=11)
    other._restore_generator(state, "cpu")
    assert torch.equal(torch.rand(4, generator=other.generator), expected)
