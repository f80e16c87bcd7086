"""The PPO rollout buffer (``lapo.rl.buffer``): minibatches."""

from __future__ import annotations

import torch

from lapo.rl import RolloutBuffer


def test_rollout_buffer_minibatches_cover_every_sample_once() -> None:
    buf = RolloutBuffer(4, 3, (2, 2, 1))
    buf.actions[:] = torch.arange(12).reshape(4, 3)
    adv, ret = torch.arange(12.0).reshape(4, 3), torch.zeros(4, 3)
    batches = list(buf.minibatches(adv, ret, 3, torch.Generator().manual_seed(0)))
    assert len(batches) == 3 and all(len(b["actions"]) == 4 for b in batches)
    seen = torch.cat([b["actions"] for b in batches]).sort().values
    assert seen.tolist() == list(range(12))
    for b in batches:  # fields stay aligned after shuffling
        assert torch.equal(b["advantages"], b["actions"].float())
