"""Train a PPO expert on a Procgen game (``lapo expert train``), with exact resume.

The PPO loop itself (rollout, GAE, clipped-PPO epochs with Cobbe et al. 2020 settings, bitwise
resumable checkpoints) is ``lapo.rl.trainer`` and ``lapo.rl.loop``, shared with online fine-tuning
(``lapo.stages.finetune``); this module chooses the network and the environments.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from lapo.checkpoint import (
    CHECKPOINT,
    checkpoint_exists,
    checkpoint_path,
    read_meta,
    save_checkpoint,
)
from lapo.config import PPOConfig
from lapo.device import resolve_device
from lapo.envs import VecEnv, make_env_from_config
from lapo.eval.actors import PolicyActor
from lapo.eval.rollouts import evaluate_policy
from lapo.load import load_expert
from lapo.models.build import build_expert_policy
from lapo.paths import write_json_atomic
from lapo.rl.loop import check_run_dir, run_ppo
from lapo.rl.trainer import PPOTrainer
from lapo.safety import check_run_output, holds_lock

#: Sub-folder of an expert run holding its best checkpoint (``run_ppo``'s ``best_dir``).
BEST = "best"

__all__ = ["evaluate_expert", "export_expert", "make_expert_trainer", "train_expert"]


def make_expert_trainer(
    config: PPOConfig, env: VecEnv | None = None, device: str | None = None
) -> PPOTrainer:
    """A fresh expert run: the network of ``config`` (seeded) in ``config.num_envs`` envs.

    Args:
        env: an environment with ProcgenVecEnv's interface to train in instead of the game
            ``config.env`` (e.g. a test environment).
        device: torch device; default ``cuda`` when available, else ``cpu``.
    """
    torch.manual_seed(config.seed)
    device = resolve_device(device)
    env = env or make_env_from_config(config)
    return PPOTrainer(config, build_expert_policy(config).to(device), env, device=device)


def evaluate_expert(net: nn.Module, config: PPOConfig, episodes: int, seed: int = 1):
    """Held-out-level evaluation of a sampling policy; returns an ``EvalResult``.

    Works for any actor-critic ``net(obs) -> (logits, value)`` trained with a ``PPOConfig``
    (experts, fine-tuned latent policies, PPO from scratch): levels
    ``[eval_start_level, eval_start_level + eval_num_levels)`` of ``config.env``.
    """
    policy = PolicyActor(net, bf16=config.bf16, seed=seed)
    return evaluate_policy(
        policy.act,
        config.env,
        episodes,
        start_level=config.eval_start_level,
        num_levels=config.eval_num_levels,
        distribution_mode=config.distribution_mode,
        seed=seed,
    )


@holds_lock(lambda a: a["run_dir"])
def train_expert(
    config: PPOConfig,
    run_dir: Path,
    *,
    resume: bool = False,
    progress: bool = True,
    env: VecEnv | None = None,
    time_budget_s: float | None = None,
    max_updates: int | None = None,
    device: str | None = None,
    init_from: str | Path | None = None,
) -> dict:
    """Train (or resume) a PPO expert in ``run_dir``; return the final metrics.

    Files in ``run_dir``: ``checkpoint.json`` + ``checkpoint.*.safetensors`` (latest state, kind
    ``ppo-expert``), ``best/`` (weights-only, the network of the best held-out evaluation so
    far after the first update, or from the start with ``init_from``; that evaluation under
    ``selected_by`` in its meta; ``load_expert`` and ``lapo expert export`` take it),
    ``metrics.jsonl`` and ``tb/`` (TensorBoard). Logged x-axis: environment
    steps (``lapo.rl.loop.run_ppo`` lists the metrics).

    Args:
        time_budget_s: stop (with a checkpoint) after this many seconds of wall clock; resume
            later with ``resume=True``. Run control only: results do not depend on it.
        max_updates: stop (with a checkpoint) after this many updates in this call.
        device: torch device; default ``cuda`` when available, else ``cpu``.
        env: an environment with ProcgenVecEnv's interface (reset, step, get_state, set_state,
            num_envs) to train in instead of the game ``config.env`` (e.g. a test environment).
        init_from: a new run starts from this expert's weights (a run directory or a shipped
            expert, ``load_expert``) instead of a random network: the optimizer, the step
            count and the learning-rate schedule start afresh, so training continues across
            machines and sessions from a weights-only file. Written to ``init_from.json``.

    Holds ``run_dir``'s lock (``lapo.safety.exclusive``) for the whole call.

    Raises:
        FileExistsError: ``run_dir`` has a checkpoint and ``resume`` is False.
        ValueError: ``resume`` with a config that differs from the checkpoint's (fields named);
            a negative ``time_budget_s``; ``init_from`` with a checkpoint to resume, or with
            another network (encoder, multiplier, features or action count named).
        lapo.safety.InUseError: another lapo process holds ``run_dir``.
    """
    try:
        restore = check_run_dir(Path(run_dir), config, resume)
    except ValueError as error:
        if "total_steps" not in str(error):
            raise
        raise ValueError(  # a longer schedule is a new run: the learning rate decays over it
            f"{error}; total_steps sets the learning-rate schedule, so a run is not lengthened "
            f"in place: train a new one from its weights (--init-from {run_dir}, into another "
            "--out)"
        ) from None
    start = _initial_weights(init_from, config, restore, Path(run_dir))
    trainer = make_expert_trainer(config, env, device)
    if start is not None:
        trainer.net.load_state_dict(start)
    return run_ppo(
        trainer,
        Path(run_dir),
        kind="ppo-expert",
        restore=restore,
        evaluate=lambda net: evaluate_expert(net, config, config.eval_episodes),
        progress=progress,
        time_budget_s=time_budget_s,
        max_updates=max_updates,
        best_dir=Path(run_dir) / BEST,
        best_from_start=start is not None,  # an untrained network is no candidate
    )


def _initial_weights(
    init_from: str | Path | None, config: PPOConfig, restore: bool, run_dir: Path
) -> dict[str, torch.Tensor] | None:
    """``init_from``'s state dict after checking it fits ``config``'s network (None: no init);
    records the source in ``run_dir/init_from.json``."""
    if init_from is None:
        return None
    if restore:
        raise ValueError(
            f"{run_dir} holds a checkpoint to resume, and init_from starts a new run from "
            f"{init_from}: pass one of them (or another run directory)"
        )
    net, source = load_expert(init_from, device="cpu")
    fields = ("encoder", "multiplier", "features")
    differ = [f"{k} {getattr(source, k)} vs {getattr(config, k)}" for k in fields
              if getattr(source, k) != getattr(config, k)]  # fmt: skip
    mine = build_expert_policy(config).state_dict()
    shapes = [k for k, v in net.state_dict().items() if k in mine and mine[k].shape != v.shape]
    if shapes:
        differ.append(f"action count or layer shapes differ ({', '.join(shapes)})")
    if differ:
        raise ValueError(
            f"init_from {init_from}: its network does not fit this run's ({'; '.join(differ)})"
        )
    meta = read_meta(checkpoint_path(init_from))
    run_dir.mkdir(parents=True, exist_ok=True)
    record = {
        "init_from": str(init_from),
        "env": source.env,
        "env_steps": meta.get("env_steps"),
        "prior_env_steps": meta.get("prior_env_steps", 0),  # what the source itself started from
        "evaluation": meta.get("evaluation"),
    }
    write_json_atomic(run_dir / "init_from.json", record)
    return net.state_dict()


def check_export_output(out: str | Path) -> None:
    """Refuse an export directory that is not new or empty (``lapo.safety.check_run_output``)
    or already holds a checkpoint: an export never replaces one.

    Raises:
        FileExistsError: naming ``out`` and what it holds.
    """
    check_run_output(out)
    if checkpoint_exists(Path(out) / CHECKPOINT):
        raise FileExistsError(f"{out} already holds a checkpoint; remove it first")


def export_expert(run: str | Path, out: str | Path, evaluation: dict | None = None) -> Path:
    """Write a weights-only copy of an expert (for shipping in ``lapo/experts/<game>/``).

    The copy keeps kind ``ppo-expert``, the config, the training step count and metrics, and
    ``evaluation`` (e.g. ``lapo.eval.evaluate.result_dict`` of a held-out evaluation); it drops
    the optimizer, sampling and environment state, so it loads with ``load_expert`` but cannot be
    resumed. A run started with ``init_from`` (its ``init_from.json`` in ``run``, or in the run
    directory above ``run`` for its ``best/``) adds ``prior_env_steps``: the environment steps
    its initial weights had trained, through every earlier ``init_from``, so that ``env_steps +
    prior_env_steps`` is the expert's whole training.

    Raises:
        FileExistsError: ``out`` already holds a checkpoint or something else
            (``check_export_output``).
        lapo.checkpoint.CheckpointError: ``run`` is not a PPO expert.
    """
    out = Path(out)
    check_export_output(out)
    net, config = load_expert(run, device="cpu")  # weights only: nothing computes
    meta = read_meta(checkpoint_path(run))
    keep = {k: meta[k] for k in ("config", "update", "env_steps", "metrics", "selected_by")
            if k in meta}  # fmt: skip
    prior = _prior_env_steps(Path(run))
    if prior:
        keep["prior_env_steps"] = prior
    save_checkpoint(
        out / CHECKPOINT,
        modules={"policy": net},
        meta={"kind": "ppo-expert", **keep, "evaluation": evaluation},
    )
    return out


def _prior_env_steps(run: Path) -> int:
    """Environment steps behind a run's initial weights (0 for a run from scratch), from the
    ``init_from.json`` of ``run`` or, for a ``best/`` copy, of the run directory above it."""
    here = run if run.is_dir() else run.parent  # a run directory or its checkpoint path
    for folder in (here, here.parent) if here.name == BEST else (here,):
        record_path = folder / "init_from.json"
        if record_path.is_file():
            record = json.loads(record_path.read_text())
            return int(record.get("env_steps") or 0) + int(record.get("prior_env_steps") or 0)
    return 0
