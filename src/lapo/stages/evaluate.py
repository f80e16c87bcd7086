"""Evaluate any acting policy checkpoint in its game (``lapo evaluate``), and the label sweep.

Levels: with ``num_levels=0`` (the paper's setting, also for data collection) Procgen draws level
seeds from the full 31-bit range, so an evaluation with its own ``seed`` meets data levels with
negligible probability; with ``num_levels > 0`` pass a ``start_level`` past the data's levels.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from lapo.config import DecodeConfig, check_temperature
from lapo.data import WindowIndex, open_dataset, split_episodes
from lapo.eval.rollouts import EvalResult, evaluate_policy
from lapo.models.policy import DecodedPolicy
from lapo.stages.policy_io import PolicyActor, load_latent_policy, load_policy

#: Evaluation seed default: differs from every collection seed the pipeline uses (0, 1).
EVAL_SEED = 12345

#: ``method`` of the label sweep's rows: the decoded LAPO policy and label-only BC.
METHOD_LAPO, METHOD_BC = "lapo", "label-bc"


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
) -> EvalResult:
    """Roll out the policy checkpoint at ``path`` for ``episodes`` complete episodes.

    Args:
        game: Procgen game; default the one stored in the checkpoint.
        greedy: argmax actions instead of sampling from the policy's softmax.
        temperature: sample from ``softmax(logits / temperature)`` (e.g. the temperature an
            expert recorded its data with).
        seed: environment and action-sampling seed (same seed, same returns).

    Raises:
        ValueError: no game given and none stored in the checkpoint, or a temperature <= 0.
        lapo.checkpoint.CheckpointError: not an acting policy (kinds are listed).
    """
    check_temperature(temperature)
    net, meta = load_policy(path)
    game = game or meta.get("env") or meta.get("config", {}).get("env")
    if not game:
        raise ValueError(f"{path} does not say which game it plays; pass --env GAME")
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


def label_sweep(
    policy_path: str | Path,
    lam_path: str | Path,
    data_dir: str | Path,
    out_path: str | Path,
    *,
    labels: tuple[int, ...] = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192),
    seeds: tuple[int, ...] = (0, 1, 2),
    episodes: int = 32,
    baseline: bool = True,
    config: DecodeConfig | None = None,
    progress: bool = True,
) -> list[dict]:
    """Normalized return against the number of labels (paper Figure 4), with the BC baseline.

    For each label count N (skipped when larger than the training windows) and seed, a decoder is
    trained on N labels (``DecodeConfig`` with ``labels=N``, ``seed``) and the decoded policy is
    evaluated for ``episodes`` episodes. With ``baseline`` (not in the paper's figure), label-only
    behaviour cloning is trained on the same N labels and evaluated on the same levels (same
    evaluation seed), so the two methods are compared pairwise. The labelled sets are nested:
    for one seed the N labels are the first N of the largest count's. Rows are appended to
    ``out_path`` (JSON list) as they finish.

    Returns: the rows ``method`` (``lapo`` or ``label-bc``), ``labels, seed, mean, ci95,
    normalized, normalized_ci95, episodes, validation_accuracy``.

    Raises:
        ValueError: the dataset is not a Procgen recording or has no true actions.
    """
    from tqdm import tqdm

    from lapo.stages.decode import draw_labelled_set, train_decoder, train_label_bc
    from lapo.stages.lam import load_lam

    base = config or DecodeConfig()
    latent_policy, bc_config = load_latent_policy(policy_path)
    lam, lam_config = load_lam(lam_path)
    dataset = open_dataset(data_dir)
    game = dataset.manifest.get("source", {}).get("game")
    if not game:
        raise ValueError(f"{data_dir} does not come from a Procgen recording; cannot evaluate")
    train_eps, _ = split_episodes(dataset, lam_config.test_fraction, lam_config.seed)
    index = WindowIndex(dataset, lam_config.context, train_eps)
    counts = [n for n in labels if n <= len(index)]
    num_actions = dataset.num_actions or 15
    rows: list[dict] = []

    def evaluate(method: str, net, n: int, seed: int, info: dict) -> None:
        actor = PolicyActor(net.eval(), seed=seed)
        result = evaluate_policy(actor.act, game, episodes, seed=EVAL_SEED + seed)
        rows.append(
            {
                "method": method,
                "labels": n,
                "seed": seed,
                **_summary(result),
                "validation_accuracy": info["validation_accuracy"],
            }
        )
        Path(out_path).write_text(json.dumps(rows, indent=2))

    total = len(counts) * len(seeds) * (2 if baseline else 1)
    with tqdm(total=total, desc="label sweep", disable=not progress) as bar:
        for seed in seeds:
            largest = draw_labelled_set(lam, index, max(counts), seed, bc_config.target)
            for n in counts:
                subset = dataclasses.replace(
                    largest,
                    **{f.name: getattr(largest, f.name)[:n] for f in dataclasses.fields(largest)},
                )
                cfg = dataclasses.replace(base, labels=n, seed=seed)
                decoder, info = train_decoder(subset, cfg, num_actions)
                evaluate(METHOD_LAPO, DecodedPolicy(latent_policy, decoder), n, seed, info)
                bar.update(1)
                if baseline:
                    net, info = train_label_bc(subset, cfg, bc_config, num_actions)
                    evaluate(METHOD_BC, net, n, seed, info)
                    bar.update(1)
    return rows


def _summary(result: EvalResult) -> dict:
    d = result_dict(result)
    return {k: d[k] for k in ("mean", "ci95", "normalized", "normalized_ci95", "episodes")}


def sweep_table(rows: list[dict]) -> list[dict]:
    """Per method and label count, the mean over seeds of the normalized return.

    Rows without ``method`` (sweeps written before the baseline existed) count as ``lapo``.

    Returns: rows ``method, labels, normalized, normalized_sem, normalized_ci95, seeds``, sorted by
    method (lapo first) then labels. ``normalized_sem`` is the standard error over seeds (it holds
    the variation between label draws and trainings; 0 with one seed); ``normalized_ci95`` the
    95% half-width of the seed mean from the episodes alone, ``sqrt(sum ci_i^2) / seeds``.
    """
    out = []
    methods = sorted({r.get("method", METHOD_LAPO) for r in rows}, key=lambda m: m != METHOD_LAPO)
    for method in methods:
        mine = [r for r in rows if r.get("method", METHOD_LAPO) == method]
        for n in sorted({r["labels"] for r in mine}):
            at_n = [r for r in mine if r["labels"] == n]
            values = np.array([r["normalized"] for r in at_n])
            ci = np.array([r["normalized_ci95"] for r in at_n])
            sem = float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0
            out.append(
                {
                    "method": method,
                    "labels": n,
                    "normalized": float(values.mean()),
                    "normalized_sem": sem,
                    "normalized_ci95": float(np.sqrt((ci**2).sum()) / len(ci)),
                    "seeds": len(values),
                }
            )
    return out


__all__ = [
    "EVAL_SEED",
    "METHOD_BC",
    "METHOD_LAPO",
    "evaluate_checkpoint",
    "label_sweep",
    "result_dict",
    "sweep_table",
]
