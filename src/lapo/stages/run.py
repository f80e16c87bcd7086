"""``lapo run``: the stage actions of the whole pipeline (see ``lapo.stages.pipeline``).

``run_pipeline`` builds, for every stage, the settings that determine it and the function that
runs it in its folder, then hands both to ``run_stages`` (skip finished stages, resume, refuse
changed settings). Each action returns a small JSON summary kept in ``pipeline.json``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from lapo.config import BC_PRESETS, LAM_PRESETS, BCConfig, CollectConfig, DecodeConfig, LAMConfig
from lapo.data.format import write_json_atomic
from lapo.runtime import field_defaults
from lapo.stages.pipeline import DIRS, RunConfig, run_stages


class StageInterrupted(KeyboardInterrupt):
    """A stage stopped on a signal after saving its checkpoint; rerun the command to resume."""


def _expert_path(config: RunConfig) -> Path:
    from lapo.experts import shipped_expert

    return Path(config.expert) if config.expert else shipped_expert(config.env)


def _expert_digest(path: Path) -> str:
    from lapo.stages.policy_io import checkpoint_path

    return json.loads(checkpoint_path(path).with_suffix(".json").read_text())["tensors_sha256"]


def setting_defaults() -> dict[str, dict]:
    """Per stage, the value of each setting in runs recorded before that setting existed
    (``lapo.stages.pipeline.plan``): the config classes' field defaults, and the expert's
    sampling temperature 1."""
    temperature = {"expert_temperature": field_defaults(RunConfig)["expert_temperature"]}
    return {
        "collect": temperature,
        "lam": field_defaults(LAMConfig),
        "bc": field_defaults(BCConfig),
        "decode": field_defaults(DecodeConfig),
        "evaluate": temperature,
    }


def stage_configs(config: RunConfig) -> dict:
    """The typed configs of stages 1-3 for ``config.preset`` (``lam``, ``bc``, ``decode``)."""
    lam_steps = {"steps": config.lam_steps} if config.lam_steps is not None else {}
    return {
        "lam": LAMConfig(**{**LAM_PRESETS[config.preset], **lam_steps}),
        "bc": BCConfig(**BC_PRESETS[config.preset]),
        "decode": DecodeConfig(
            labels=config.labels,
            seed=config.seed,
            pseudo_label_updates=config.pseudo_label_updates,
            **({"max_epochs": 20, "bc_steps": 20} if config.preset == "smoke" else {}),
        ),
    }


def _check_finished(metrics: dict, stage: str) -> dict:
    if metrics.get("stop_reason") not in (None, "time budget"):
        raise StageInterrupted(
            f"{stage} stopped ({metrics['stop_reason']}) with a checkpoint; rerun the same "
            f"command to resume"
        )
    return {k: v for k, v in metrics.items() if isinstance(v, int | float) or v is None}


def run_pipeline(
    config: RunConfig, *, redo: tuple[str, ...] = (), progress: bool = True
) -> dict[str, dict]:
    """Run (or resume) the whole pipeline of ``config`` in ``config.out``.

    Returns:
        ``{stage: summary}``; the report's ``metrics.json`` holds the full figures.

    Raises:
        lapo.stages.pipeline.StageConflict: a finished stage's settings changed (pass ``redo``).
        FileNotFoundError: no shipped expert for the game and no ``expert`` given.
        StageInterrupted: a training stage was stopped by a signal (its checkpoint is saved).
    """
    out = Path(config.out)
    expert = _expert_path(config)
    configs = stage_configs(config)
    d = {stage: out / name for stage, name in DIRS.items()}
    settings: dict[str, dict] = {
        "collect": {
            "env": config.env,
            "frames": config.frames,
            "num_envs": config.num_envs,
            "seed": config.seed,
            "expert_sha256": _expert_digest(expert),
            "expert_temperature": config.expert_temperature,
        },
        "lam": {**dataclasses.asdict(configs["lam"]), "minutes": config.lam_minutes},
        "bc": {**dataclasses.asdict(configs["bc"]), "minutes": config.bc_minutes},
        "decode": dataclasses.asdict(configs["decode"]),
        "evaluate": {
            "episodes": config.eval_episodes,
            "expert_temperature": config.expert_temperature,
        },
        "report": {"hide_noop": config.hide_noop},
    }
    if config.sweep:
        settings["sweep"] = {
            "labels": list(config.sweep),
            "seeds": config.sweep_seeds,
            "episodes": config.sweep_episodes,
            "baseline": config.sweep_baseline,
        }
    if config.online:
        settings["online"] = {
            "steps": config.online_steps,
            "seeds": config.online_seeds,
            "preset": config.preset,
            "episodes": config.eval_episodes,
        }

    def collect(directory: Path) -> dict:
        from lapo.stages.collect import collect as record

        cc = CollectConfig(
            env=config.env,
            frames=config.frames,
            out=directory,
            policy=str(expert),
            num_envs=config.num_envs,
            seed=config.seed,
            temperature=config.expert_temperature,
            overwrite=True,
        )
        summary = record(cc, progress=progress)
        return {
            "frames": summary.frames,
            "episodes": summary.episodes,
            "complete_episodes": summary.complete_episodes,
            "mean_return": summary.mean_return,
            "expert": str(expert),
        }

    def lam(directory: Path) -> dict:
        from lapo.stages.lam import train_lam

        budget = config.lam_minutes * 60 if config.lam_minutes else None
        metrics = train_lam(
            configs["lam"],
            d["collect"],
            directory,
            resume=True,
            time_budget_s=budget,
            progress=progress,
        )
        return _check_finished(metrics, "stage 1")

    def bc(directory: Path) -> dict:
        from lapo.stages.bc import train_bc

        budget = config.bc_minutes * 60 if config.bc_minutes else None
        metrics = train_bc(
            configs["bc"],
            d["lam"],
            d["collect"],
            directory,
            resume=True,
            time_budget_s=budget,
            progress=progress,
        )
        return _check_finished(metrics, "stage 2")

    def decode(directory: Path) -> dict:
        from lapo.stages.decode import decode_offline

        facts = decode_offline(configs["decode"], d["bc"], d["lam"], d["collect"], directory)
        return {k: v for k, v in facts.items() if isinstance(v, float)}

    def evaluate(directory: Path) -> dict:
        return evaluate_all(config, expert, d["decode"], directory, progress)

    def sweep(directory: Path) -> dict:
        from lapo.stages.evaluate import label_sweep, sweep_table

        directory.mkdir(parents=True, exist_ok=True)
        rows = label_sweep(
            d["bc"],
            d["lam"],
            d["collect"],
            directory / "label_sweep.json",
            labels=config.sweep,
            seeds=tuple(range(config.sweep_seeds)),
            episodes=config.sweep_episodes,
            baseline=config.sweep_baseline,
            config=configs["decode"],
            progress=progress,
        )
        return {f"{r['method']}/{r['labels']}": r["normalized"] for r in sweep_table(rows)}

    def online(directory: Path) -> dict:
        from lapo.stages.online_compare import run_online_comparison

        return run_online_comparison(config, d["bc"], d["lam"], directory, progress=progress)

    def report(directory: Path) -> dict:
        from lapo.stages.report import build_report

        return build_report(config, out, directory)

    actions = {
        "collect": collect,
        "lam": lam,
        "bc": bc,
        "decode": decode,
        "evaluate": evaluate,
        "sweep": sweep,
        "online": online,
        "report": report,
    }
    weights = {
        "collect": 1,
        "lam": 12,
        "bc": 3,
        "decode": 1,
        "evaluate": 2,
        "sweep": 4,
        "online": 20,
        "report": 1,
    }
    return run_stages(
        config, settings, actions, redo=redo, weights=weights, progress=progress,
        defaults=setting_defaults(),
    )  # fmt: skip


def evaluate_all(
    config: RunConfig, expert: Path, decode_dir: Path, directory: Path, progress: bool = True
) -> dict:
    """Returns of expert, uniform random, label-only BC and LAPO decoded policies (and of the
    pseudo-label fine-tuned decoded policy where stage 3 made one).

    Every policy plays ``config.eval_episodes`` complete episodes with the same environment seed
    (levels drawn from all levels, independently of the recording's). Writes ``returns.json``
    (full ``result_dict`` per policy) and returns ``{policy: {mean, ci95, normalized,
    normalized_ci95}}``.
    """
    from tqdm import tqdm

    from lapo.checkpoint import checkpoint_exists
    from lapo.eval.rollouts import evaluate_policy
    from lapo.stages.collect import RandomPolicy
    from lapo.stages.evaluate import EVAL_SEED, result_dict
    from lapo.stages.policy_io import PolicyActor, load_policy

    policies = {
        "expert": expert,
        "label_bc": decode_dir / "label-bc",
        "lapo_decoded": decode_dir / "decoded",
        "lapo_pseudo_label": decode_dir / "pseudo-label",  # only with pseudo-label fine-tuning
    }
    names = ["expert", "random", "label_bc", "lapo_decoded"]
    if checkpoint_exists(policies["lapo_pseudo_label"] / "checkpoint"):
        names.append("lapo_pseudo_label")
    results = {}
    for name in names:
        if name == "random":
            act = RandomPolicy(seed=EVAL_SEED).act
        else:  # the expert as it recorded the data; the learned policies as trained
            temperature = config.expert_temperature if name == "expert" else 1.0
            net = load_policy(policies[name])[0]
            act = PolicyActor(net, seed=EVAL_SEED, temperature=temperature).act
        result = evaluate_policy(act, config.env, config.eval_episodes, seed=EVAL_SEED)
        results[name] = result_dict(result)
        if progress:
            tqdm.write(f"  {name:>13}: {result.summary()}")
    directory.mkdir(parents=True, exist_ok=True)
    write_json_atomic(directory / "returns.json", results)
    keys = ("mean", "ci95", "normalized", "normalized_ci95")
    return {name: {k: r[k] for k in keys} for name, r in results.items()}
