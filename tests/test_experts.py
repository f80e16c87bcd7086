"""Shipped experts: present, loadable, and carrying their held-out evaluation."""

from __future__ import annotations

import json

import pytest
import torch

from lapo.checkpoint import read_meta
from lapo.cli import main
from lapo.envs import GAMES
from lapo.experts import BAR_NORMALIZED_RETURN, expert_card, shipped_expert, shipped_games
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


def test_expert_cards_read_what_each_shipped_expert_recorded() -> None:
    for game in shipped_games():
        card = expert_card(game)
        meta = read_meta(shipped_expert(game) / "checkpoint")
        assert card.game == game and card.env_steps == meta["env_steps"] > 0
        assert card.evaluation == meta["evaluation"]
        assert card.meets_bar == (meta["evaluation"]["normalized"] >= BAR_NORMALIZED_RETURN)
        assert card.prior_env_steps == meta.get("prior_env_steps", 0)
        assert card.standing == ("meets" if card.meets_bar else "below") + " the 0.5 bar"


def test_expert_list_has_one_row_per_game(capsys) -> None:
    main(["expert", "list", "--json"])
    rows = json.loads(capsys.readouterr().out)
    assert [row["game"] for row in rows] == list(GAMES)
    assert sorted(row["game"] for row in rows if row["shipped"]) == shipped_games()
    coinrun = next(row for row in rows if row["game"] == "coinrun")
    assert coinrun["evaluation"] == expert_card("coinrun").evaluation
    main(["expert", "list"])
    table = capsys.readouterr().out.splitlines()
    assert len(table) == 1 + len(GAMES) + 1  # header, one line per game, the bar's note
    missing = [g for g in GAMES if g not in shipped_games()]
    for game in missing:
        assert next(line for line in table if line.startswith(game + " ")).split()[1] == "none"
