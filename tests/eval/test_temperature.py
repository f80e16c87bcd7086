"""Sampling temperature of experts and policies: data recorded with a sharper expert.

``softmax(logits / T)``: T = 1 must reproduce the untempered sampling bitwise, low T approaches the
argmax, and the empirical action frequencies follow the tempered softmax.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from lapo.config import CollectConfig
from lapo.data import open_dataset
from lapo.eval.actors import PolicyActor
from lapo.experts import shipped_expert
from lapo.pipeline.run import setting_defaults
from lapo.pipeline.run_config import RunConfig
from lapo.stages.collect import collect, make_policy

LOGITS = torch.tensor([2.0, 1.0, 0.0, -1.0, 0.5])


class FixedLogits(nn.Module):
    """``(N, 64, 64, 3) uint8 -> (N, 5)`` the same logits for every observation."""

    def __init__(self, with_value: bool = False) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.with_value = with_value

    def forward(self, obs: torch.Tensor):
        logits = (self.scale * LOGITS).expand(len(obs), -1)
        return (logits, torch.zeros(len(obs))) if self.with_value else logits


OBS = np.zeros((20_000, 64, 64, 3), np.uint8)


@pytest.mark.parametrize("temperature", [1.0, 0.5, 2.0])
@pytest.mark.parametrize("kind", ["policy", "expert"])
def test_action_frequencies_follow_the_tempered_softmax(kind: str, temperature: float) -> None:
    if kind == "policy":
        actor = PolicyActor(FixedLogits(), bf16=False, seed=1, temperature=temperature)
    else:
        actor = PolicyActor(FixedLogits(with_value=True), bf16=False, seed=1,
                             temperature=temperature)  # fmt: skip
    freq = np.bincount(actor.act(OBS), minlength=5) / len(OBS)
    expected = torch.softmax(LOGITS / temperature, -1).numpy()
    assert np.abs(freq - expected).max() < 0.015, (freq, expected)


def test_temperature_one_is_the_untempered_sampling_and_low_temperature_the_argmax() -> None:
    for make in (
        lambda **kw: PolicyActor(FixedLogits(), bf16=False, seed=3, **kw),
        lambda **kw: PolicyActor(FixedLogits(with_value=True), bf16=False, seed=3, **kw),
    ):
        assert np.array_equal(make().act(OBS[:500]), make(temperature=1.0).act(OBS[:500]))
        sharp = make(temperature=0.05).act(OBS[:2000])
        assert (sharp == int(LOGITS.argmax())).mean() > 0.99


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_temperatures_are_refused(bad: float, tmp_path: Path) -> None:
    message = "temperature must be a finite number > 0"
    with pytest.raises(ValueError, match=message):
        PolicyActor(FixedLogits(), temperature=bad)
    with pytest.raises(ValueError, match=message):
        PolicyActor(FixedLogits(with_value=True), temperature=bad)
    with pytest.raises(ValueError, match=message):
        CollectConfig(env="coinrun", frames=8, out=tmp_path / "x", policy="p", temperature=bad)
    with pytest.raises(ValueError, match=message):
        RunConfig(expert_temperature=bad)


def test_random_policy_has_no_temperature(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="temperature applies to a checkpoint policy"):
        CollectConfig(env="coinrun", frames=8, out=tmp_path / "x", temperature=0.5)


def test_collect_with_a_tempered_expert_records_the_temperature(tmp_path: Path) -> None:
    expert = str(shipped_expert("coinrun"))
    config = CollectConfig(env="coinrun", frames=64, out=tmp_path / "ds", policy=expert,
                           num_envs=8, temperature=0.5)  # fmt: skip
    collect(config, progress=False)
    ds = open_dataset(config.out)
    assert ds.manifest["source"]["temperature"] == 0.5
    # the tempered expert is sharper: its actions agree more often with the argmax
    obs = np.concatenate([ds.episode_frames(e) for e in range(ds.num_episodes)])
    sharp = make_policy(expert, seed=0, temperature=0.2).act(obs)
    plain = make_policy(expert, seed=0).act(obs)
    greedy = make_policy(expert, seed=0, temperature=1e-4).act(obs)
    assert (sharp == greedy).mean() > (plain == greedy).mean()


def test_runs_recorded_before_the_option_count_as_temperature_one() -> None:
    # a finished stage without the key ran at T = 1: it still matches T = 1, and not T = 0.5
    defaults = setting_defaults()
    assert defaults["collect"] == {"expert_temperature": 1.0, "action_hidden": False}
    assert defaults["evaluate"] == {"expert_temperature": 1.0}
