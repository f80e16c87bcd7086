"""The label sweep (paper Figure 4): normalized return against the number of labelled
transitions, for the decoded LAPO policy and, beside it, label-only behaviour cloning."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from lapo.config import DecodeConfig
from lapo.data import open_dataset, split_windows
from lapo.eval.actors import PolicyActor, action_diagnostics
from lapo.eval.evaluate import EVAL_SEED, result_dict
from lapo.eval.rollouts import EvalResult, evaluate_policy
from lapo.load import load_lam, load_latent_policy
from lapo.models.policy import DecodedPolicy
from lapo.paths import write_json_atomic
from lapo.stages.decode import draw_labelled_set, train_decoder, train_label_bc

#: ``method`` of the label sweep's rows: the decoded LAPO policy and label-only BC.
METHOD_LAPO, METHOD_BC = "lapo", "label-bc"
#: Per-row facts of how a policy acts on held-out frames (``action_diagnostics``).
DIAGNOSTICS = ("heldout_accuracy", "action_entropy", "top_action_fraction")


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
    heldout_frames: int = 1024,
    config: DecodeConfig | None = None,
    progress: bool = True,
    device: str | torch.device | None = None,
) -> list[dict]:
    """Normalized return against the number of labels (paper Figure 4), with the BC baseline.

    For each label count N (skipped when larger than the training windows) and seed, a decoder is
    trained on N labels (``DecodeConfig`` with ``labels=N``, ``seed``) and the decoded policy is
    evaluated for ``episodes`` episodes. With ``baseline`` (not in the paper's figure), label-only
    behaviour cloning is trained on the same N labels and evaluated on the same levels (same
    evaluation seed), so the two methods are compared pairwise. The labelled sets are nested:
    for one seed the N labels are the first N of the largest count's. Rows are appended to
    ``out_path`` (JSON list) as they finish, each time rewriting it atomically (a temporary file
    beside it, then a rename: it must be a regular file in a writable directory). The latent
    policy, the IDM and the decoded policies compute on ``device`` (None:
    ``lapo.device.default_device``); decoders fit on the CPU.
    With ``heldout_frames`` > 0 (discrete actions), each policy is also run on that many frames
    of stage 1's held-out episodes (``lapo.eval.actors.action_diagnostics``): its accuracy
    against the true actions there and how decisively it acts, which tells a decoder that has
    become sharp on an uninformative latent policy (returns falling as labels grow) from one
    that is wrong.

    Returns: the rows ``method`` (``lapo`` or ``label-bc``), ``labels, seed, mean, ci95,
    normalized, normalized_ci95, episodes, validation_accuracy`` (``validation_r2`` for
    continuous actions) and, with held-out frames,
    ``heldout_accuracy, action_entropy, top_action_fraction, true_top_action_fraction``.

    Raises:
        ValueError: the dataset is not a Procgen recording or has no true actions, or every
            label count exceeds its training transitions (those that do are skipped, said).
    """
    base = config or DecodeConfig()
    latent_policy, bc_config = load_latent_policy(policy_path, device)  # None: default device
    lam, lam_config = load_lam(lam_path, device)
    device = next(latent_policy.parameters()).device
    dataset = open_dataset(data_dir)
    game = dataset.manifest.get("source", {}).get("game")
    if not game:
        raise ValueError(f"{data_dir} does not come from a Procgen recording; cannot evaluate")
    index, test_index = split_windows(dataset, lam_config.context, lam_config.test_fraction,
                                      lam_config.seed)  # fmt: skip
    counts = [n for n in labels if n <= len(index)]
    dropped = [n for n in labels if n > len(index)]
    if dropped and not counts:
        raise ValueError(
            f"label sweep: every count ({', '.join(map(str, dropped))}) exceeds the "
            f"{len(index)} training transitions of {data_dir}; pass smaller --sweep counts"
        )
    if dropped:
        tqdm.write(f"label sweep: {', '.join(map(str, dropped))} labels skipped, more than the "
                   f"{len(index)} training transitions of {data_dir}")  # fmt: skip
    bounds = dataset.action_bounds  # continuous actions: regressed in unit space; None: discrete
    num_actions = len(bounds[0]) if bounds is not None else (dataset.num_actions or 15)
    # Held-out frames with their true actions, for how each policy acts (action_diagnostics).
    heldout = None
    if heldout_frames and len(test_index) and not dataset.continuous_actions:
        heldout = draw_labelled_set(lam, test_index, min(heldout_frames, len(test_index)), 1,
                                    bc_config.target)  # fmt: skip
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
                **{k: info[k] for k in ("validation_accuracy", "validation_r2") if k in info},
                **(
                    action_diagnostics(net, heldout.observations, heldout.actions)
                    if heldout is not None
                    else {}
                ),
            }
        )
        write_json_atomic(Path(out_path), rows)

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
                decoder, info = train_decoder(subset, cfg, num_actions, bounds)
                evaluate(
                    METHOD_LAPO, DecodedPolicy(latent_policy, decoder.to(device)), n, seed, info
                )
                bar.update(1)
                if baseline:
                    net, info = train_label_bc(subset, cfg, bc_config, num_actions, bounds)
                    evaluate(METHOD_BC, net, n, seed, info)
                    bar.update(1)
    return rows


def _summary(result: EvalResult) -> dict:
    d = result_dict(result)
    return {k: d[k] for k in ("mean", "ci95", "normalized", "normalized_ci95", "episodes")}


def sweep_table(rows: list[dict]) -> list[dict]:
    """Per method and label count, the mean over seeds of the normalized return.

    Rows without ``method`` (sweeps written before the baseline existed) count as ``lapo``.

    Returns: rows ``method, labels, normalized, normalized_sem, normalized_ci95, seeds`` and the
    seed means of the ``DIAGNOSTICS`` every row of the cell has, sorted by method (lapo first)
    then labels. ``normalized_sem`` is the standard error over seeds (it holds
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
                    **{
                        key: float(np.mean([r[key] for r in at_n]))
                        for key in DIAGNOSTICS
                        if all(key in r for r in at_n)
                    },
                }
            )
    return out
