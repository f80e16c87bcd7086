"""PPO expert training: learning on a known-answer environment, exact resume, refusals."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from lapo.checkpoint import CheckpointError, load_checkpoint
from lapo.config import PPO_PRESETS, PPOConfig
from lapo.envs.procgen import EpisodeStats, StepResult
from lapo.models.build import build_expert_policy
from lapo.stages.expert import train_expert


class ColorEnv:
    """Known-answer vector env: the frame's colour (one of 3) names the rewarded action.

    Episodes last 8 steps; reward 1 when the action equals the colour index (0, 1 or 2), so a
    uniform random policy over 15 actions earns 8/15 per episode and the optimum is 8.
    """

    def __init__(self, num_envs: int, seed: int = 0) -> None:
        self.num_envs = num_envs
        self._rng = np.random.default_rng(seed)
        self._colour = self._rng.integers(0, 3, num_envs)
        self._t = np.zeros(num_envs, dtype=np.int64)
        self._ret = np.zeros(num_envs)

    def _obs(self) -> np.ndarray:
        obs = np.zeros((self.num_envs, 64, 64, 3), np.uint8)
        obs[np.arange(self.num_envs), :, :, self._colour] = 255
        return obs

    def reset(self) -> np.ndarray:
        return self._obs()

    def step(self, actions: np.ndarray) -> StepResult:
        reward = (actions == self._colour).astype(np.float32)
        self._ret += reward
        self._t += 1
        done = self._t >= 8
        episodes = [EpisodeStats(int(i), float(self._ret[i]), 8) for i in np.flatnonzero(done)]
        self._t[done], self._ret[done] = 0, 0.0
        self._colour = self._rng.integers(0, 3, self.num_envs)
        return StepResult(self._obs(), reward, done, episodes)

    def get_state(self) -> dict:
        return {
            "envs": [b"x"] * self.num_envs,
            "returns": self._ret.copy(),
            "lengths": self._t.copy(),
        }

    def set_state(self, state: dict) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        pass


def test_ppo_learns_known_answer_env(tmp_path: Path) -> None:
    config = PPOConfig(
        env="miner",
        encoder="nature",
        features=64,
        num_envs=16,
        num_steps=32,
        num_minibatches=4,
        total_steps=16 * 32 * 25,
        learning_rate=1e-3,
        gamma=0.9,
        eval_every=0,
        checkpoint_every=100,
        bf16=True,
    )
    metrics = train_expert(config, tmp_path / "run", progress=False, env=ColorEnv(16))
    random_return = 8 / 15
    assert metrics["return/train_mean100"] > 4 * random_return  # learned far above random
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == config.num_updates
    assert list((tmp_path / "run" / "tb").iterdir()), "no TensorBoard event file"


def _smoke(**changes) -> PPOConfig:
    return dataclasses.replace(PPOConfig(env="coinrun", **PPO_PRESETS["smoke"]), **changes)


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    net = build_expert_policy(_smoke())
    load_checkpoint(run_dir / "checkpoint", modules={"policy": net})
    return {k: v.clone() for k, v in net.state_dict().items()}


def test_resume_continues_bitwise(tmp_path: Path) -> None:
    full = _smoke(total_steps=4 * 16 * 4, eval_every=0)
    train_expert(full, tmp_path / "full", progress=False)
    half = dataclasses.replace(full, total_steps=4 * 16 * 2)
    train_expert(half, tmp_path / "resumed", progress=False)
    with pytest.raises(ValueError, match="total_steps: checkpoint 128 vs now 256.*; total_steps "
                       "sets the learning-rate schedule.*--init-from"):  # fmt: skip
        train_expert(full, tmp_path / "resumed", resume=True, progress=False)
    # continuing a run to a longer budget is the same config but for total_steps: emulate the
    # interruption instead by stopping the full-length run half way.
    train_expert(full, tmp_path / "stopped", progress=False, max_updates=2)
    train_expert(full, tmp_path / "stopped", resume=True, progress=False)
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "stopped")
    assert all(torch.equal(a[k], b[k]) for k in a)
    full_log = (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()
    assert len(full_log) == 4


def test_sigterm_saves_checkpoint_and_resume_finishes(tmp_path: Path) -> None:
    config = _smoke(total_steps=4 * 16 * 200, eval_every=0, checkpoint_every=1000)
    timer = threading.Timer(3.0, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    try:
        train_expert(config, tmp_path / "run", progress=False)
    finally:
        timer.cancel()
    meta = load_checkpoint(tmp_path / "run" / "checkpoint").meta
    assert 0 < meta["update"] < config.num_updates


def test_existing_run_is_not_overwritten(tmp_path: Path) -> None:
    config = _smoke(eval_every=0)
    train_expert(config, tmp_path / "run", progress=False)
    before = (tmp_path / "run" / "checkpoint.json").read_text()
    with pytest.raises(FileExistsError, match="--resume"):
        train_expert(config, tmp_path / "run", progress=False)
    assert (tmp_path / "run" / "checkpoint.json").read_text() == before


def test_checkpoint_into_other_architecture_names_keys(tmp_path: Path) -> None:
    train_expert(_smoke(eval_every=0), tmp_path / "run", progress=False)
    other = build_expert_policy(_smoke(encoder="impala", multiplier=1))
    with pytest.raises(CheckpointError, match="missing") as info:
        load_checkpoint(tmp_path / "run" / "checkpoint", modules={"policy": other})
    assert "encoder.conv" in str(info.value)


def test_smoke_run_with_evaluation(tmp_path: Path) -> None:
    metrics = train_expert(_smoke(), tmp_path / "run", progress=False)
    assert "return/eval_mean" in metrics and np.isfinite(metrics["return/eval_normalized"])


def test_export_writes_a_loadable_weights_only_expert(tmp_path: Path) -> None:
    from lapo.checkpoint import read_meta
    from lapo.load import load_expert
    from lapo.stages.expert import export_expert

    config = dataclasses.replace(PPOConfig(env="bigfish", **PPO_PRESETS["smoke"]), eval_every=0)
    train_expert(config, tmp_path / "run", progress=False, env=ColorEnv(config.num_envs))
    out = export_expert(tmp_path / "run", tmp_path / "shipped", {"mean": 1.5})
    net, loaded = load_expert(out)
    original, _ = load_expert(tmp_path / "run")
    assert loaded == config
    for a, b in zip(net.state_dict().values(), original.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    meta = read_meta(out / "checkpoint")
    assert meta["evaluation"] == {"mean": 1.5} and "normalizer" not in meta
    full = sum(p.stat().st_size for p in (tmp_path / "run").glob("checkpoint.*.safetensors"))
    slim = sum(p.stat().st_size for p in out.glob("checkpoint.*.safetensors"))
    assert slim < full / 2  # no optimizer or environment state
    with pytest.raises(FileExistsError):
        export_expert(tmp_path / "run", out)


def test_init_from_starts_a_new_run_from_an_experts_weights(tmp_path: Path) -> None:
    config = _smoke(total_steps=4 * 16 * 2, eval_every=0)
    train_expert(config, tmp_path / "first", progress=False)
    first = _weights(tmp_path / "first")
    # max_updates=0: the run starts, checkpoints its initial network and stops
    train_expert(config, tmp_path / "second", progress=False, max_updates=0,
                 init_from=tmp_path / "first")  # fmt: skip
    second = _weights(tmp_path / "second")
    assert all(torch.equal(first[k], second[k]) for k in first)
    fresh = _weights_of_new_run(tmp_path / "fresh", config)
    assert not all(torch.equal(first[k], fresh[k]) for k in first)
    record = json.loads((tmp_path / "second" / "init_from.json").read_text())
    assert record["init_from"] == str(tmp_path / "first") and record["env_steps"] == 128


def test_export_counts_the_steps_behind_init_from_weights(tmp_path: Path) -> None:
    from lapo.checkpoint import read_meta
    from lapo.stages.expert import export_expert

    config = _smoke(total_steps=4 * 16 * 2, eval_every=0)  # 2 updates of 64 steps
    train_expert(config, tmp_path / "first", progress=False)
    first = export_expert(tmp_path / "first", tmp_path / "first-x")
    assert "prior_env_steps" not in read_meta(first / "checkpoint")
    train_expert(config, tmp_path / "second", progress=False, init_from=first)
    second = export_expert(tmp_path / "second", tmp_path / "second-x")
    assert read_meta(second / "checkpoint")["prior_env_steps"] == 128
    # one update, then the best/ copy of the third run exports with every earlier step counted
    third = dataclasses.replace(config, eval_every=1)
    train_expert(third, tmp_path / "third", progress=False, max_updates=1, init_from=second)
    best = export_expert(tmp_path / "third" / "best", tmp_path / "third-x")
    meta = read_meta(best / "checkpoint")
    assert meta["env_steps"] in (0, 64) and meta["prior_env_steps"] == 256  # best at 0 or 1 update


def _weights_of_new_run(run_dir: Path, config: PPOConfig) -> dict[str, torch.Tensor]:
    train_expert(config, run_dir, progress=False, max_updates=0)
    return _weights(run_dir)


def test_init_from_refuses_a_resume_and_another_network(tmp_path: Path) -> None:
    config = _smoke(total_steps=4 * 16 * 2, eval_every=0)
    train_expert(config, tmp_path / "first", progress=False)
    with pytest.raises(ValueError, match="holds a checkpoint to resume"):
        train_expert(config, tmp_path / "first", resume=True, progress=False,
                     init_from=tmp_path / "first")  # fmt: skip
    wider = dataclasses.replace(config, features=64)
    with pytest.raises(ValueError, match="features 32 vs 64"):
        train_expert(wider, tmp_path / "wide", progress=False, init_from=tmp_path / "first")
    assert not (tmp_path / "wide" / "checkpoint.json").exists()


def test_best_checkpoint_follows_the_best_evaluation_and_survives_a_resume(
    tmp_path: Path, monkeypatch
) -> None:
    from lapo.checkpoint import read_meta
    from lapo.eval.rollouts import EvalResult
    from lapo.load import load_expert
    from lapo.stages import expert as expert_stage

    # scripted held-out returns: evaluations at updates 0, 2, 4, 6, 8, 10; the best at update 4
    means = iter([1.0, 3.0, 8.0, 2.0, 5.0, 4.0] * 2)
    seen: list[dict[str, torch.Tensor]] = []

    def fake_evaluate(net, config, episodes, seed=1):
        seen.append({k: v.clone() for k, v in net.state_dict().items()})
        return EvalResult("coinrun", np.full(4, next(means)), np.full(4, 10), 0, 0)

    monkeypatch.setattr(expert_stage, "evaluate_expert", fake_evaluate)
    config = _smoke(total_steps=4 * 16 * 10, eval_every=2, checkpoint_every=3)
    train_expert(config, tmp_path / "full", progress=False)
    meta = read_meta(tmp_path / "full" / "best" / "checkpoint")
    assert meta["update"] == 4 and meta["selected_by"]["mean"] == 8.0
    assert "returns" not in meta["selected_by"]
    best, loaded = load_expert(tmp_path / "full" / "best")
    assert loaded == config
    assert all(torch.equal(v, seen[2][k]) for k, v in best.state_dict().items())
    # interrupted at update 5 (after the best, before the next checkpoint) and resumed: the
    # resumed run keeps the best it had, and does not replace it with update 8's lower 5.0
    seen.clear()
    train_expert(config, tmp_path / "cut", progress=False, max_updates=5)
    train_expert(config, tmp_path / "cut", resume=True, progress=False)
    assert read_meta(tmp_path / "cut" / "best" / "checkpoint")["update"] == 4
    # a run from scratch that never beats its untrained start: best/ is the best trained
    # network (update 8's 7.0), not the random initialization's higher 9.0
    means = iter([9.0, 3.0, 6.0, 2.0, 7.0, 4.0])
    train_expert(config, tmp_path / "flat", progress=False)
    assert read_meta(tmp_path / "flat" / "best" / "checkpoint")["update"] == 8
