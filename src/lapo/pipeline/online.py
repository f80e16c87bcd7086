"""The online stage of ``lapo run``: LAPO fine-tuning vs PPO from scratch (paper Figure 3),
and with ``online_ilpo`` the ILPO baseline beside them.

For each seed, ``train_finetune`` runs twice with the same network and budget: from the latent
policy (frozen conv trunk, lr 0.01) and from scratch (everything trained, lr 5e-4). Both resume
from their checkpoints when the command is rerun. Each finished policy is then evaluated as the
offline policies are (``lapo.eval.evaluate.evaluate_checkpoint``, ``eval_episodes`` episodes).
``online.json`` holds the curves of normalized return against environment steps (the periodic
held-out evaluations during training), those final evaluations and the training speed.

The ILPO arm (``RunConfig.online_ilpo``) is treated as LAPO is: its offline phase (latent
policy, forward model, collapse diagnostic; ``lapo.stages.ilpo.run_ilpo``) trains once per run
on the recorded data in ``ilpo/offline`` with the run's seed, as LAPO's stages 1-2 do, and each
online seed trains the action remapping from it for the same number of environment steps in
``ilpo-seed<N>/``; its acting policy is evaluated like the others.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lapo.config import (
    FINETUNE_PRESETS,
    ILPO_PRESETS,
    SCRATCH_LEARNING_RATE,
    FinetuneConfig,
    ILPOConfig,
)
from lapo.device import resolve_device
from lapo.eval.evaluate import evaluate_checkpoint, result_dict
from lapo.load import latent_policy_network
from lapo.paths import write_json_atomic
from lapo.pipeline.expert_stage import format_duration
from lapo.pipeline.plan import StageInterrupted
from lapo.stages.finetune import train_finetune
from lapo.stages.ilpo import run_ilpo, train_ilpo_online

METHODS = {"LAPO fine-tuned": "lapo", "PPO from scratch": "ppo"}
ILPO_METHOD = "ILPO"


def _read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _curve(rows: list[dict]) -> dict:
    key = "return/eval_normalized"
    points = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
    if not points:  # no evaluation logged: fall back to the training episodes
        key = "return/train_normalized"
        points = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
    return {"steps": [p[0] for p in points], "normalized": [p[1] for p in points], "key": key}


def _final_evaluation(run_dir: Path, episodes: int) -> dict:
    """``result_dict`` of the finished policy over ``episodes`` episodes, cached in
    ``run_dir/final_eval.json`` (recomputed when the episode count changed)."""

    path = run_dir / "final_eval.json"
    if path.exists():
        cached = json.loads(path.read_text())
        if cached.get("episodes") == episodes:
            return cached
    result = result_dict(evaluate_checkpoint(run_dir, episodes))
    write_json_atomic(path, result)
    return result


def _stopped(run_dir: Path, reason: str | None) -> None:
    if reason is not None:
        raise StageInterrupted(
            f"{run_dir} stopped ({reason}) with a checkpoint; rerun the same command to resume",
            reason=reason,
        )


#: Measured speed of ILPO's online phase, env steps per second, per (preset, machine class):
#: ``(steps/s, where)``. docs/results/ilpo.md: `train_ilpo_online` on the coinrun offline model,
#: 4 rollouts, one thread, 2026-12-04: 83-91 (the K forward-model passes per transition).
ILPO_ONLINE_STEPS_PER_SECOND: dict[tuple[str, str], tuple[float, str]] = {
    ("cpu", "cpu"): (85.0, "one core of an AMD EPYC, bf16"),
}


def ilpo_duration_note(config, machine: str) -> str | None:
    """One line estimating the ILPO arm's online training (``online_seeds`` x ``online_steps``
    env steps) where its speed was measured for ``config.preset`` on a ``machine`` ("cpu",
    "cuda", ...); None where it was not."""
    measured = ILPO_ONLINE_STEPS_PER_SECOND.get((config.preset, machine))
    if measured is None:
        return None
    speed, where = measured
    steps = config.online_seeds * config.online_steps
    return (
        f"ILPO arm: {steps:,} online env steps at about {speed:g} steps/s ({where}): about "
        f"{format_duration(steps / speed / 60)} one seed after another; scripts/ilpo_seeds.py "
        f"trains the seeds side by side on a GPU or more cores"
    )


#: Folder of the online stage holding the ILPO arm's offline phase (``ilpo/offline``).
ILPO_OFFLINE = "ilpo"


def ilpo_offline(config, data_dir: Path, directory: Path, progress: bool = True) -> Path:
    """The ILPO arm's offline phase in ``directory/ilpo/offline``, trained once per run with
    the run's seed on ``data_dir`` (resumed or reused when it exists); returns that folder.

    Args:
        config: the run's ``RunConfig`` (preset, env, seed, device).

    Raises:
        StageInterrupted: the phase stopped on a signal (its checkpoint is saved).
    """
    base = {**ILPO_PRESETS[config.preset], "env": config.env, "online_steps": 0}
    offline = ILPOConfig(**{**base, "seed": config.seed})
    shared = directory / ILPO_OFFLINE
    result = run_ilpo(offline, data_dir, shared, resume=True, progress=progress,
                      device=config.device)  # fmt: skip
    _stopped(shared, result["stop_reason"])
    return shared


def ilpo_seed(config, data_dir: Path, directory: Path, seed: int, progress: bool = True) -> Path:
    """ILPO's online phase for one seed in ``directory/ilpo-seed<seed>`` (``online_steps``
    environment steps), after the offline phase (``ilpo_offline``); resumes a stopped one and
    returns the online run directory. Seeds can run in separate processes
    (``scripts/ilpo_seeds.py``).

    Raises:
        StageInterrupted: a phase stopped on a signal (its checkpoint is saved).
    """
    base = {**ILPO_PRESETS[config.preset], "env": config.env, "online_steps": config.online_steps}
    shared = ilpo_offline(config, data_dir, directory, progress)
    run_dir = directory / f"ilpo-seed{seed}"
    metrics = train_ilpo_online(ILPOConfig(**{**base, "seed": seed}), shared / "offline",
                                run_dir, resume=True, progress=progress,
                                device=config.device)  # fmt: skip
    _stopped(run_dir, metrics.get("stop_reason"))
    return run_dir


def run_online_comparison(
    config,
    bc_dir: Path,
    lam_dir: Path,
    directory: Path,
    progress: bool = True,
    data_dir: Path | None = None,
) -> dict:
    """Fine-tune the latent policy of ``bc_dir`` and train PPO from scratch, ``online_seeds`` each
    (and ILPO on ``data_dir`` when ``config.online_ilpo``).

    Args:
        config: the ``RunConfig`` (env, preset, online_steps, online_seeds, eval_episodes,
            online_ilpo).
        data_dir: the recorded dataset (needed by the ILPO arm).

    Returns:
        ``{method: normalized return of the finished policies, mean over seeds}`` (each policy
        evaluated over ``eval_episodes`` episodes); writes ``online.json`` with keys ``curves``
        (``{method: [{"steps", "normalized", "key"} per seed]}``), ``evaluation``
        (``{method: [result_dict per seed]}``), ``final`` (the returned dict) and
        ``steps_per_second`` (``{method: median over every update of every seed}``).
    """

    ilpo = getattr(config, "online_ilpo", False)
    if ilpo and data_dir is None:
        raise ValueError("the ILPO arm needs the recorded dataset (data_dir)")
    note = ilpo_duration_note(config, resolve_device(config.device).type) if ilpo else None
    if note is not None:
        tqdm.write(note)
    network = latent_policy_network(bc_dir)
    base = {**FINETUNE_PRESETS[config.preset], **network, "total_steps": config.online_steps}
    methods = {**METHODS, **({ILPO_METHOD: "ilpo"} if ilpo else {})}
    curves: dict[str, list[dict]] = {name: [] for name in methods}
    evaluation: dict[str, list[dict]] = {name: [] for name in methods}
    speed: dict[str, list[float]] = {name: [] for name in methods}
    for seed in range(config.online_seeds):
        for name, short in methods.items():
            if short == "ilpo":
                run_dir = ilpo_seed(config, data_dir, directory, seed, progress)
                rows = [{**r, "step": r["env_steps"]} for r in _read_metrics(run_dir)]
                curves[name].append(_curve(rows))
                speed[name] += [r["steps_per_second"] for r in rows if "steps_per_second" in r]
                evaluation[name].append(_final_evaluation(run_dir, config.eval_episodes))
                continue
            if short == "lapo":
                cfg = FinetuneConfig(
                    env=config.env, **base, latent_policy=str(bc_dir.resolve()), seed=seed
                )
            else:
                cfg = FinetuneConfig(env=config.env, **base, seed=seed)
                cfg = dataclasses.replace(cfg, learning_rate=SCRATCH_LEARNING_RATE)
            run_dir = directory / f"{short}-seed{seed}"
            metrics = train_finetune(cfg, run_dir, resume=True, progress=progress,
                                     device=config.device,
                                     allow_unfinished=config.bc_minutes is not None)  # fmt: skip
            _stopped(run_dir, metrics.get("stop_reason"))
            rows = _read_metrics(run_dir)
            curves[name].append(_curve(rows))
            speed[name] += [r["steps_per_second"] for r in rows if "steps_per_second" in r]
            evaluation[name].append(_final_evaluation(run_dir, config.eval_episodes))
    final = {
        name: float(np.mean([r["normalized"] for r in runs])) for name, runs in evaluation.items()
    }
    summary = {
        "curves": curves,
        "evaluation": {
            name: [{k: v for k, v in r.items() if k != "returns"} for r in runs]
            for name, runs in evaluation.items()
        },
        "final": final,
        "steps_per_second": {name: float(np.median(v)) for name, v in speed.items() if v},
    }
    directory.mkdir(parents=True, exist_ok=True)
    write_json_atomic(directory / "online.json", summary)
    return final
