"""Shipped experts: present, loadable, and carrying their held-out evaluation."""

from __future__ import annotations

import pytest
import torch

from lapo.checkpoint import read_meta
from lapo.experts import shipped_expert, shipped_games
from lapo.load import load_expert


def test_every_shipped_expert_loads_and_records_its_evaluation() -> None:
    games = shipped_games()
    assert "coinrun" in games
    for game in games:
        net, config = load_expert(shipped_expert(game))
        assert config.env == game
        logits, value = net(torch.zeros((2, 64, 64, 3), dtype=torch.uint8))
        assert logits.shape == (2, 15) and value.shape == (2,)
        evaluation = read_meta(shipped_expert(game) / "checkpoint")["evaluation"]
        assert evaluation["game"] == game and evaluation["episodes"] >= 100


def test_missing_expert_names_the_shipped_ones() -> None:
    with pytest.raises(FileNotFoundError, match="shipped: .*coinrun"):
        shipped_expert("miner" if "miner" not in shipped_games() else "nope")
