"""The ``expert`` stage of ``lapo run``: a PPO expert trained in the run directory.

It runs first, when the game has no shipped expert and the user gave none (``--expert DIR``),
or when ``train_expert`` asks for it. The PPO loop is ``lapo.stages.expert.train_expert``
(Cobbe et al. 2020 settings, ``PPO_PRESETS`` networks) for ``expert_steps`` environment steps;
rerunning ``lapo run`` resumes it bitwise from its checkpoint, ``expert_minutes`` ends it on a
wall-clock budget (the expert as trained by then records the data), and SIGINT/SIGTERM stop it
with a checkpoint. Before training it prints an estimate of its duration.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from tqdm import tqdm

from lapo.config import PPO_PRESETS, PPOConfig
from lapo.experts import shipped_games

#: Measured PPO training speed of each preset's expert network, in environment steps per second,
#: per machine class (``machine_class``: ``"cpu"`` a CPU with native bf16, ``"cpu-fp32"`` one
#: without, which computes in fp32): ``(steps/s, where it was measured)``. Only measured
#: figures are listed; a preset without one prints no duration estimate. A resumed run uses its
#: own measured speed instead (``metrics.jsonl``).
EXPERT_STEPS_PER_SECOND: dict[tuple[str, str], tuple[float, str]] = {
    # docs/experts.md: `python benchmarks/ppo_steps.py --updates 1`, Nature-CNN x1 bf16,
    # 2026-11-21; shipped experts trained at 1,000-2,400 steps/s on the same machine.
    ("cpu", "cpu"): (1900.0, "AMD EPYC, 2 cores, bf16"),
    # tiny Nature-CNN of the smoke preset, online smoke runs 2026-12-04: 2,000-2,400 steps/s
    ("smoke", "cpu"): (2000.0, "AMD EPYC, 2 cores"),
    # docs/experts.md: the starpilot expert of 2026-12-04 on an AVX2-only AMD EPYC (fp32), one
    # thread, the other core busy with a `lapo run` main job: 390-520 steps/s, median 455 (its
    # first 17 updates).
    ("cpu", "cpu-fp32"): (455.0, "AMD EPYC, 2 cores, AVX2 only, fp32"),
    # docs/benchmarks.md: `benchmarks/gpu_check.py`, IMPALA x4, 64 Procgen envs, one process,
    # 2026-12-04 (bf16; the 16 host cores step the environments).
    ("paper", "cuda"): (8756.0, "NVIDIA H200, 16 host cores, bf16"),
    # docs/experts.md: 13 `cpu`-preset experts at once on one H200, 3,700-5,200 steps/s each
    # (medians, 2026-12-04); one alone is faster, so this errs long.
    ("cpu", "cuda"): (4300.0, "NVIDIA H200 shared by 13 runs, 16 host cores"),
}


def trains_expert(config) -> bool:
    """Whether ``lapo run`` trains its expert (``RunConfig``): asked for with ``train_expert``,
    or no ``expert`` given and none shipped for ``config.env`` (nor a scripted expert,
    ``lapo.envs.scripted``)."""
    if config.train_expert:
        return True
    from lapo.envs.scripted import SCRIPTED_EXPERTS  # these tasks record their scripted expert

    return config.expert is None and config.env not in (*shipped_games(), *SCRIPTED_EXPERTS)


def expert_config(config) -> PPOConfig:
    """The ``PPOConfig`` of the expert stage: ``PPO_PRESETS[config.preset]`` trained for
    ``config.expert_steps`` environment steps with seed ``config.seed``."""
    preset = {**PPO_PRESETS[config.preset], "total_steps": config.expert_steps}
    return PPOConfig(env=config.env, **preset, seed=config.seed)


def _measured_speed(run_dir: Path) -> float | None:
    """Median steps/s of the updates already logged in ``run_dir/metrics.jsonl`` (None: none)."""
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return None
    speeds = sorted(
        row["steps_per_second"]
        for line in path.read_text().splitlines()
        if line.strip() and "steps_per_second" in (row := json.loads(line))
    )
    return speeds[len(speeds) // 2] if speeds else None


def machine_class(device) -> str:
    """``EXPERT_STEPS_PER_SECOND``'s machine class of a torch device: its type (``"cuda"``,
    ``"mps"``), except that a CPU without native bf16 (``lapo.device.native_bf16``; it trains in
    fp32, about four times slower for these networks) is ``"cpu-fp32"``."""
    import torch

    from lapo.device import native_bf16

    kind = torch.device(device).type
    return "cpu-fp32" if kind == "cpu" and not native_bf16(device)[0] else kind


def duration_estimate(config, run_dir: Path, machine: str) -> str:
    """One line: steps still to train and, where a speed was measured, the expected duration.

    Args:
        config: the ``RunConfig``.
        run_dir: the expert stage's folder (a checkpoint there counts as steps done, and its
            ``metrics.jsonl`` gives this machine's measured speed).
        machine: the machine class that trains (``machine_class``: ``"cpu"``, ``"cpu-fp32"``,
            ``"cuda"`` or ``"mps"``).
    """
    from lapo.checkpoint import CHECKPOINT, checkpoint_exists, read_meta  # imports torch

    cfg = expert_config(config)
    total = cfg.num_updates * cfg.batch_size  # what the PPO loop trains (whole updates)
    path = run_dir / CHECKPOINT
    done = read_meta(path)["env_steps"] if checkpoint_exists(path) else 0
    left = max(total - done, 0)
    text = f"expert stage: PPO on {config.env} ({cfg.encoder} x{cfg.multiplier}), {left:,} of "
    text += f"{total:,} env steps to train"
    speed, where = _measured_speed(run_dir), "measured in this run"
    if speed is None and (config.preset, machine) in EXPERT_STEPS_PER_SECOND:
        speed, where = EXPERT_STEPS_PER_SECOND[(config.preset, machine)]
        where = f"measured for preset {config.preset} on {where}"
    if speed is None:
        return text + f"; no measured speed for preset {config.preset} on a {machine} machine"
    minutes = left / speed / 60
    budget = config.expert_minutes
    capped = f", capped at {budget:g} min by expert_minutes" if budget else ""
    return text + (
        f"; estimated {format_duration(minutes)} at {speed:,.0f} steps/s ({where}; an estimate, "
        f"shared or different machines differ){capped}"
    )


def format_duration(minutes: float) -> str:
    """``minutes`` as a reader wants it: "under a minute", "7 min" or "2.5 h"."""
    if minutes < 1:
        return "under a minute"
    if minutes < 90:
        return f"{math.ceil(minutes)} min"
    return f"{minutes / 60:.1f} h"


def run_expert_stage(config, directory: Path, progress: bool = True) -> dict:
    """Train (or resume) the run's expert in ``directory``; return its summary.

    Returns:
        ``{"env_steps", "total_steps", "heldout_normalized", "heldout_mean", "budget_stopped",
        "stop_reason"}``: steps trained, steps planned, the held-out evaluation
        (``eval_episodes`` of the preset on levels from ``eval_start_level``; made here when the
        run ended between evaluations), whether ``expert_minutes`` ended it, and the PPO loop's
        stop reason. On a signal stop only the loop's metrics are returned (the caller raises
        ``StageInterrupted``; the checkpoint is saved).
    """
    from lapo.checkpoint import CHECKPOINT, read_meta
    from lapo.device import resolve_device
    from lapo.load import load_expert
    from lapo.stages.expert import evaluate_expert, train_expert

    tqdm.write(duration_estimate(config, directory, machine_class(resolve_device(config.device))))
    cfg = expert_config(config)
    budget = config.expert_minutes * 60 if config.expert_minutes else None
    metrics = train_expert(cfg, directory, resume=True, progress=progress, time_budget_s=budget,
                           device=config.device)  # fmt: skip
    if metrics.get("stop_reason") not in (None, "time budget"):
        return metrics  # the caller raises StageInterrupted
    heldout = {k: metrics.get(f"return/eval_{k}") for k in ("normalized", "mean")}
    if heldout["normalized"] is None:  # stopped between evaluations: evaluate what records
        net, _ = load_expert(directory, config.device)
        result = evaluate_expert(net, cfg, cfg.eval_episodes)
        heldout = {"normalized": result.normalized, "mean": result.mean}
    return {
        "env_steps": read_meta(directory / CHECKPOINT)["env_steps"],
        "total_steps": cfg.num_updates * cfg.batch_size,
        "heldout_normalized": heldout["normalized"],
        "heldout_mean": heldout["mean"],
        "budget_stopped": metrics.get("stop_reason") == "time budget",
        "stop_reason": metrics.get("stop_reason"),
    }


def expert_origin(config, stages: dict) -> str:
    """Which expert recorded the data, for the report: trained here (steps, held-out normalized
    return), the user's (path) or the shipped one (its steps, recorded evaluation and whether it
    meets ``lapo.experts.BAR_NORMALIZED_RETURN``).

    Args:
        config: the ``RunConfig``; stages: ``pipeline.json``'s ``stages``.
    """
    if "expert" in stages:
        s = stages["expert"]["summary"]
        stop = " (ended by expert_minutes)" if s.get("budget_stopped") else ""
        return (
            f"trained here by the expert stage: {s['env_steps']:,} of {s['total_steps']:,} env "
            f"steps{stop}, held-out normalized return {s['heldout_normalized']:.3f} "
            f"(return {s['heldout_mean']:.2f}; preset {config.preset})"
        )
    from lapo.envs.scripted import SCRIPTED_EXPERTS

    if config.expert in (None, "scripted") and config.env in SCRIPTED_EXPERTS:
        return f"the scripted state-feedback controller of {config.env} (lapo.envs.scripted)"
    if config.expert is not None:
        return f"the user's: {config.expert}"
    from lapo.experts import expert_card

    card = expert_card(config.env)
    ev = card.evaluation or {}
    figure = ""
    if "normalized" in ev:
        seed = f", seed {ev['seed']}" if "seed" in ev else ""
        figure = (
            f", held-out normalized return {ev['normalized']:.3f} ({ev.get('episodes', '?')} "
            f"episodes{seed}; {card.standing})"
        )
    steps = card.env_steps + card.prior_env_steps
    return f"shipped with lapo ({config.env}, {steps:,} env steps{figure})"


def below_bar_note(game: str) -> str | None:
    """One line telling the user that the shipped expert about to record ``game`` is below
    ``lapo.experts.BAR_NORMALIZED_RETURN`` (what it records, how to record a better one), or
    None when it meets the bar or records no evaluation.

    Raises:
        FileNotFoundError: no expert is shipped for ``game``.
    """
    from lapo.experts import expert_card

    card = expert_card(game)
    if card.meets_bar is not False:
        return None
    return (
        f"note: the shipped {game} expert is {card.standing} (held-out "
        f"normalized return {card.evaluation['normalized']:.3f}; docs/experts.md), so the "
        "recording holds little skill and LAPO's returns are bounded by it; --train-expert "
        "(with --expert-steps) or --expert DIR records with a stronger one"
    )
