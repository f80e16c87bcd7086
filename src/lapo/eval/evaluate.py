"""Evaluate any acting policy checkpoint in its game (``lapo evaluate``).

Levels: with ``num_levels=0`` (the paper's setting, also for data collection) Procgen draws level
seeds from the full 31-bit range, so an evaluation with its own ``seed`` meets data levels with
negligible probability; with ``num_levels > 0`` pass a ``start_level`` past the data's levels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lapo.config import check_temperature
from lapo.envs.games import normalized_return
from lapo.eval.actors import PolicyActor
from lapo.eval.rollouts import EvalResult, evaluate_policy, mean_ci95
from lapo.load import checkpoint_game, load_policy

#: Evaluation seed default: differs from every collection seed the pipeline uses (0, 1).
EVAL_SEED = 12345


def result_dict(result: EvalResult) -> dict:
    """JSON-able summary of an ``EvalResult`` (returns included)."""
    return {
        "game": result.game,
        "episodes": len(result.returns),
        "mean": result.mean,
        "ci95": result.ci95,
        "normalized": result.normalized,
        "normalized_ci95": result.normalized_ci95,
        "returns": result.returns.tolist(),
        "start_level": result.start_level,
        "num_levels": result.num_levels,
    }


#: The pairs of policies ``paired_differences`` compares: ``(policy, against)``.
PAIRS = (("lapo_decoded", "label_bc"), ("lapo_decoded", "random"), ("label_bc", "random"))


def paired_differences(results: dict[str, dict], game: str) -> dict[str, dict]:
    """Differences of mean return between policies evaluated on the same episodes' levels.

    Every policy of ``lapo run``'s evaluation plays with one environment seed, so episode i of
    each meets the same level (Procgen draws each environment's level sequence from its seed,
    whatever the policy does): the per-episode differences are paired, and their Student-t
    interval (``mean_ci95``) is narrower than the two separate intervals suggest.

    Args:
        results: ``{policy: result_dict}`` with per-episode ``returns`` (``returns.json``).
        game: the task, for the normalized differences (NaN without reference returns).

    Returns:
        ``{"A - B": {"mean", "ci95", "normalized", "normalized_ci95", "episodes"}}`` for each
        pair of ``PAIRS`` whose two results hold as many episodes from the same levels.
    """
    out = {}
    for a, b in PAIRS:
        ra, rb = results.get(a), results.get(b)
        if not ra or not rb or "returns" not in ra or "returns" not in rb:
            continue
        same = all(ra.get(k) == rb.get(k) for k in ("start_level", "num_levels", "episodes"))
        if not same or len(ra["returns"]) != len(rb["returns"]) or len(ra["returns"]) < 2:
            continue
        diff = np.asarray(ra["returns"], np.float64) - np.asarray(rb["returns"], np.float64)
        mean, ci = mean_ci95(diff)
        span = normalized_return(game, 1.0) - normalized_return(game, 0.0)  # 1 / (R_e - R_r)
        out[f"{a} - {b}"] = {"mean": mean, "ci95": ci, "normalized": mean * span,
                             "normalized_ci95": ci * span, "episodes": len(diff)}  # fmt: skip
    return out


def _rounded(bounds) -> list[list[float]]:
    """``(low, high)`` as two lists of floats to 4 decimals (float32 meta against float64)."""
    return [[round(float(v), 4) for v in side] for side in bounds]


def check_policy_fits(meta: dict, game: str, name: str) -> None:
    """Refuse a policy whose action space is not ``game``'s: discrete against continuous, another
    number of discrete actions, or another dimension or bounds of continuous ones (a policy of
    an imported dataset's actions played in a Procgen game would otherwise act on the wrong
    action indices without a word).

    Args:
        meta: the checkpoint's meta (``lapo.checkpoint.read_meta``); a checkpoint that does not
            record its action count (PPO experts: Procgen's 15 actions) is not checked.
        game: Procgen game or Gymnasium id.
        name: what to call the policy in the message (its path).

    Raises:
        ValueError: the action spaces differ; the message names both.
    """
    from lapo.envs import env_action_spec

    spec = env_action_spec(game)
    bounds = meta.get("action_bounds")
    if bounds is not None:
        mine = f"{len(bounds[0])}-dimensional continuous actions"
    elif meta.get("num_actions") is not None:
        mine = f"{int(meta['num_actions'])} discrete actions"
    else:
        return
    theirs = f"{spec.n} discrete actions" if spec.n is not None else (
        f"{len(spec.low)}-dimensional continuous actions")  # fmt: skip
    if mine == theirs and bounds is not None:  # continuous: the units must be the same too
        ours, game_bounds = _rounded(bounds), _rounded((spec.low, spec.high))
        if ours != game_bounds:
            mine, theirs = f"{mine} in {ours}", f"{theirs} in {game_bounds}"
    if mine != theirs:
        hint = (  # imported arrays count max + 1 actions unless told
            f"; if its data come from {game} and used fewer actions, import them with "
            f"--num-actions {spec.n}"
            if spec.n is not None and bounds is None and int(meta["num_actions"]) < spec.n
            else ""
        )
        raise ValueError(f"{name} acts with {mine}, {game} takes {theirs}: evaluate it on the "
                         f"task its data came from (--env){hint}")  # fmt: skip


def evaluate_checkpoint(
    path: str | Path,
    episodes: int = 100,
    *,
    game: str | None = None,
    start_level: int = 0,
    num_levels: int = 0,
    seed: int = EVAL_SEED,
    greedy: bool = False,
    temperature: float = 1.0,
    num_envs: int = 32,
    device: str | None = None,
) -> EvalResult:
    """Roll out the policy checkpoint at ``path`` for ``episodes`` complete episodes.

    Args:
        game: Procgen game; default the one stored in the checkpoint.
        greedy: argmax actions instead of sampling from the policy's softmax.
        temperature: sample from ``softmax(logits / temperature)`` (e.g. the temperature an
            expert recorded its data with).
        seed: environment and action-sampling seed (same seed, same returns).
        device: where the policy acts, e.g. ``cuda:1`` (None: ``lapo.device.default_device``).

    Raises:
        ValueError: no game given and none stored in the checkpoint, a temperature <= 0, or a
            policy whose actions do not fit the game's (``check_policy_fits``).
        lapo.checkpoint.CheckpointError: not an acting policy (kinds are listed).
    """
    check_temperature(temperature)
    net, meta = load_policy(path, device)  # None: lapo.device.default_device()
    game = game or checkpoint_game(meta)
    if not game:
        raise ValueError(f"{path} does not say which game it plays; pass game=GAME (--env GAME)")
    check_policy_fits(meta, game, str(path))
    actor = PolicyActor(net, greedy=greedy, seed=seed, temperature=temperature)
    return evaluate_policy(
        actor.act,
        game,
        episodes,
        num_envs=num_envs,
        start_level=start_level,
        num_levels=num_levels,
        seed=seed,
    )


__all__ = [
    "EVAL_SEED",
    "PAIRS",
    "check_policy_fits",
    "evaluate_checkpoint",
    "paired_differences",
    "result_dict",
]
