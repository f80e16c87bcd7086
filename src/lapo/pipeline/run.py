"""``lapo run``: the stage actions of the whole pipeline (see ``lapo.pipeline.plan``).

``run_pipeline`` builds, for every stage, the settings that determine it and the function that
runs it in its folder, then hands both to ``run_stages`` (skip finished stages, resume, refuse
changed settings). Each action returns a small JSON summary kept in ``pipeline.json``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from lapo.checkpoint import checkpoint_exists, read_meta
from lapo.config import CollectConfig
from lapo.envs import env_action_spec
from lapo.envs.gymnasium import ACTION_DRAWING_IDS
from lapo.envs.scripted import SCRIPTED_EXPERTS
from lapo.eval.actors import PolicyActor, ScriptedActor
from lapo.eval.evaluate import EVAL_SEED, result_dict
from lapo.eval.rollouts import evaluate_policy
from lapo.experts import shipped_expert, shipped_games
from lapo.load import checkpoint_game, checkpoint_path, load_policy
from lapo.paths import write_json_atomic
from lapo.pipeline.expert_stage import (
    below_bar_note,
    expert_config,
    run_expert_stage,
    trains_expert,
)
from lapo.pipeline.label_sweep import label_sweep, sweep_table
from lapo.pipeline.online import run_online_comparison
from lapo.pipeline.plan import (
    DIRS,
    Manifest,
    StageInterrupted,
    plan,
    run_stages,
    setting_defaults,
)
from lapo.pipeline.report import build_report
from lapo.pipeline.run_config import RunConfig, stage_configs
from lapo.pipeline.run_log import log_run, require_wandb
from lapo.safety import holds_lock
from lapo.stages.bc import train_bc
from lapo.stages.collect import collect as record
from lapo.stages.collect import make_policy
from lapo.stages.decode import decode_offline
from lapo.stages.lam import train_lam

SCRIPTED = "scripted"


def _expert_path(config: RunConfig) -> Path:
    """The expert checkpoint, or ``Path("scripted")`` for a task's scripted controller
    (``lapo.envs.scripted``; the default of the tasks that have one)."""
    if trains_expert(config):
        return Path(config.out) / DIRS["expert"]
    if config.expert:
        return Path(config.expert)
    if config.env in SCRIPTED_EXPERTS:
        return Path(SCRIPTED)
    return shipped_expert(config.env)


def unfinished_note(expert: Path) -> str | None:
    """A line saying that the expert checkpoint at ``expert`` is a training run stopped before
    its schedule ended (``env_steps`` below its config's ``total_steps``), or None; a checkpoint
    chosen from a run (``selected_by``: its ``best/``, an export) is no such run."""
    try:
        meta = read_meta(checkpoint_path(expert))
    except (OSError, ValueError):
        return None
    if "selected_by" in meta:
        return None
    steps, total = meta.get("env_steps"), (meta.get("config") or {}).get("total_steps")
    if isinstance(steps, int) and isinstance(total, int) and steps < total:
        return (
            f"note: the expert {expert} stopped at {steps:,} of its {total:,} training steps "
            "(rerun its lapo expert train --resume to finish it); it records the data as it is"
        )
    return None


def _expert_digest(path: Path, env: str) -> str:
    if str(path) == SCRIPTED:
        return SCRIPTED
    path = checkpoint_path(path)
    try:
        meta = read_meta(path)  # a lapo checkpoint, or one clear line saying what is there instead
    except FileNotFoundError as error:
        raise FileNotFoundError(f"expert {error}") from None
    game = checkpoint_game(meta)
    if game is not None and game != env:
        raise ValueError(
            f"the expert {path.parent} plays {game}, this run is on {env}: pass --env {game}, or "
            f"an expert of {env}"
        )
    return json.loads(path.with_name(path.name + ".json").read_text())["tensors_sha256"]


def _check_finished(metrics: dict, stage: str) -> dict:
    if metrics.get("stop_reason") not in (None, "time budget"):
        raise StageInterrupted(
            f"{stage} stopped ({metrics['stop_reason']}) with a checkpoint; rerun the same "
            f"command to resume",
            reason=metrics["stop_reason"],
        )
    return {k: v for k, v in metrics.items() if isinstance(v, int | float) or v is None}


def _given_data(config: RunConfig, configs: dict) -> tuple[dict, dict | None]:
    """Settings of the ``collect`` stage of a run on given data (``config.data``), and of the
    labelled dataset stage 3 decodes with: ``labels_from``, else the data itself when it has
    true actions, else None (no stage 3). Both are checked before any work, against what the
    stages will ask of them (``configs``, the run's stage configs): frames the latent action
    model and the policy encoder take, and as many labelled training transitions as stage 3's
    ``labels``.

    Raises:
        lapo.data.DatasetError: a dataset is missing or invalid, or too short to split into
            the training and test windows stage 1 takes.
        ValueError: the frames do not fit the models; the labelled dataset has no actions,
            another frame shape than ``data`` or fewer training transitions than ``labels``.
    """
    from lapo.data import manifest_digest, open_dataset
    from lapo.data.windows import split_windows
    from lapo.models.build import check_policy_frames
    from lapo.models.lam import check_lam_frames

    with open_dataset(config.data) as data:
        given = {
            "data": str(Path(config.data).resolve()),
            "manifest_sha256": manifest_digest(data),
            "frames": data.num_frames,
            "episodes": data.num_episodes,
            "has_actions": data.has_actions,
        }
        frame_shape = tuple(data.frame_shape)
        lam = configs["lam"]
        split_windows(data, lam.context, lam.test_fraction, lam.seed)  # too short: say so now
    check_lam_frames(configs["lam"], frame_shape, str(config.data))
    check_policy_frames(configs["bc"], frame_shape, str(config.data))
    labels_from = config.labels_from
    if labels_from is None and given["has_actions"]:
        labels_from = Path(config.data)  # the data's own actions label stage 3, as in a recording
    if labels_from is None:
        return given, None
    with open_dataset(labels_from) as labelled:
        if not labelled.has_actions:
            raise ValueError(
                f"{labels_from}: --labels-from needs a dataset with true actions, this one has none"
            )
        if tuple(labelled.frame_shape) != frame_shape:
            raise ValueError(
                f"{labels_from}: frames of shape {tuple(labelled.frame_shape)}, expected "
                f"{frame_shape} as in {config.data} (the same source, imported alike)"
            )
        if labelled.continuous_actions and configs["decode"].pseudo_label_updates:
            raise ValueError(
                f"{labels_from}: continuous actions; pseudo-label fine-tuning "
                "(--pseudo-label-updates) takes discrete ones only: leave it at 0"
            )
        train, _ = split_windows(labelled, lam.context, lam.test_fraction, lam.seed)
        labels = configs["decode"].labels
        if labels > train.num_windows:
            raise ValueError(
                f"{labels_from}: stage 3 draws {labels} labelled transitions (--labels), but the "
                f"training episodes hold only {train.num_windows}: pass --labels "
                f"{train.num_windows} or fewer, or label more frames"
            )
        return given, {
            "labels_from": str(Path(labels_from).resolve()),
            "labels_manifest_sha256": manifest_digest(labelled),
        }


def write_run_config(config: RunConfig) -> None:
    """``run_config.json`` in the run directory: the resolved ``RunConfig`` (every field), read
    back by ``lapo report RUN_DIR`` (``lapo.pipeline.report.load_run_config``). The inputs
    (``expert``, ``data``, ``labels_from``) are written as absolute paths, so that the run reads
    back from any working directory."""
    fields = {
        k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(config).items()
    }
    for key in ("expert", "data", "labels_from"):
        if fields[key] not in (None, SCRIPTED):  # "scripted" names the controller, no path
            fields[key] = str(Path(fields[key]).resolve())
    write_json_atomic(Path(config.out) / "run_config.json", fields)


def _inputs(config: RunConfig) -> list:
    return [p for p in (config.expert, config.data, config.labels_from) if p is not None]


def _check_pipeline_out(arguments: dict) -> None:
    """Refuse an ``out`` inside another ``lapo run`` directory (a stage folder of it, or below),
    or that is the run directory of a single training command (``checkpoint.json`` at its top:
    ``lapo train-lam``, ``lapo ppo``, ...): a run written there mixes its logs into that run's.

    Raises:
        FileExistsError: the message names the run ``out`` lies in.
    """
    out = Path(arguments["config"].out).resolve()
    for parent in out.parents:
        if (parent / "pipeline.json").is_file():
            raise FileExistsError(
                f"{arguments['config'].out} lies inside the lapo run {parent}; a run is written "
                "into a directory of its own: choose another --out"
            )
    if (out / "checkpoint.json").is_file() and not (out / "pipeline.json").is_file():
        raise FileExistsError(
            f"{arguments['config'].out} holds a training run of one stage (checkpoint.json), not "
            "a `lapo run` directory: choose another --out"
        )


@holds_lock(
    lambda a: a["config"].out, inputs=lambda a: _inputs(a["config"]), before=_check_pipeline_out
)
def run_pipeline(
    config: RunConfig, *, redo: tuple[str, ...] = (), progress: bool = True
) -> dict[str, dict]:
    """Run (or resume) the whole pipeline of ``config`` in ``config.out``.

    Returns:
        ``{stage: summary}``; the report's ``metrics.json`` holds the full figures.

    Raises:
        lapo.pipeline.plan.StageConflict: a finished stage's settings changed (pass ``redo``).
        FileNotFoundError: the ``expert`` given holds no checkpoint.
        StageInterrupted: a training stage was stopped by a signal (its checkpoint is saved).
        lapo.safety.InUseError: another lapo process holds ``config.out``.
        ValueError: ``config.out`` is, contains or lies inside the expert checkpoint given.
        FileExistsError: ``config.out`` lies inside another ``lapo run`` directory, or holds a
            single training command's run.
    """
    out = Path(config.out)
    if config.wandb:  # before any work: fail now, not after the training stages
        require_wandb()
    configs = stage_configs(config)
    d = {stage: out / name for stage, name in DIRS.items()}
    expert = None if config.own_data else _expert_path(config)
    if str(expert) == SCRIPTED and config.expert_temperature != 1.0:  # before any work
        raise ValueError(
            f"--expert-temperature samples a policy checkpoint's softmax; {config.env}'s scripted "
            "expert has none: leave it at 1"
        )
    if config.own_data:  # the given dataset stands for the recording; nothing is played
        d["collect"] = Path(config.data)
    settings = stage_settings(config, configs, expert)
    absent = [stage for stage in redo if stage not in settings]
    if absent:  # a redo of a stage the run does not have would do nothing, silently
        raise ValueError(
            f"redo {', '.join(absent)}: this run has no such stage (its stages: "
            f"{', '.join(settings)})"
        )

    def train_expert(directory: Path) -> dict:
        return _check_finished(run_expert_stage(config, directory, progress), "expert stage")

    def collect(directory: Path) -> dict:
        if config.own_data:  # recorded in pipeline.json only: the dataset is not copied
            return dict(settings["collect"])
        shipped = (
            config.env in shipped_games()
            and not trains_expert(config)
            and (
                config.expert is None
                or Path(config.expert).resolve() == shipped_expert(config.env).resolve()
            )
        )  # given by path too
        if shipped:
            note = below_bar_note(config.env)  # the shipped expert records: say if it is weak
            if note:
                print(note)
        if config.expert is not None:  # the user's: say if its training stopped early
            note = unfinished_note(Path(config.expert))
            if note:
                tqdm.write(note)
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
        summary = record(cc, progress=progress, device=config.device)
        return {
            "frames": summary.frames,
            "episodes": summary.episodes,
            "complete_episodes": summary.complete_episodes,
            "mean_return": summary.mean_return,
            "expert": str(expert),
        }

    def lam(directory: Path) -> dict:
        budget = config.lam_minutes * 60 if config.lam_minutes else None
        metrics = train_lam(
            configs["lam"],
            d["collect"],
            directory,
            resume=True,
            time_budget_s=budget,
            progress=progress,
            device=config.device,
        )
        return _check_finished(metrics, "stage 1")

    def bc(directory: Path) -> dict:
        budget = config.bc_minutes * 60 if config.bc_minutes else None
        metrics = train_bc(
            configs["bc"],
            d["lam"],
            d["collect"],
            directory,
            resume=True,
            allow_unfinished=config.lam_minutes is not None,  # stage 1 stopped on its budget
            time_budget_s=budget,
            progress=progress,
            device=config.device,
        )
        return _check_finished(metrics, "stage 2")

    def decode(directory: Path) -> dict:
        labelled = Path(settings["decode"]["labels_from"]) if config.own_data else d["collect"]
        facts = decode_offline(configs["decode"], d["bc"], d["lam"], labelled, directory,
                               allow_unfinished=config.bc_minutes is not None,
                               device=config.device)  # fmt: skip
        return {k: v for k, v in facts.items() if isinstance(v, float)}

    def evaluate(directory: Path) -> dict:
        return evaluate_all(config, expert, d["decode"], directory, progress)

    def sweep(directory: Path) -> dict:
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
            device=config.device,
        )
        return {f"{r['method']}/{r['labels']}": r["normalized"] for r in sweep_table(rows)}

    def online(directory: Path) -> dict:
        return run_online_comparison(config, d["bc"], d["lam"], directory, progress=progress,
                                     data_dir=d["collect"])  # fmt: skip

    def report(directory: Path) -> dict:
        summary = build_report(config, out, directory)
        log_run(config, out, directory)  # TensorBoard images and config text; W&B if asked
        return summary

    actions: dict[str, Callable[[Path], dict]] = {
        "expert": train_expert,
        "collect": collect,
        "lam": lam,
        "bc": bc,
        "decode": decode,
        "evaluate": evaluate,
        "sweep": sweep,
        "online": online,
        "report": report,
    }
    if config.own_data:  # a stage on data replaced before or while it ran is not recorded
        actions = {stage: _on_unchanged_data(action, settings) for stage, action in actions.items()}
    out.mkdir(parents=True, exist_ok=True)
    # A refused command (changed settings, StageConflict) leaves the run's run_config.json as
    # it was: `lapo report` and `lapo aggregate` read the run's preset and plan from it.
    plan(config, Manifest.load(out / "pipeline.json"), settings, redo, setting_defaults())
    write_run_config(config)
    return run_stages(
        config, settings, actions, redo=redo, weights=STAGE_WEIGHTS, progress=progress,
        defaults=setting_defaults(),
    )  # fmt: skip


def _on_unchanged_data(
    action: Callable[[Path], dict], settings: dict[str, dict]
) -> Callable[[Path], dict]:
    """``action`` checked, before and after it runs, against a given dataset (``--data``,
    ``--labels-from``) replaced since the run planned its stages (e.g. ``lapo data import
    --overwrite`` into it): a stage trained on other data than the run records is refused
    before it is recorded as finished."""

    def check() -> None:
        from lapo.data import manifest_digest, open_dataset

        given = [(settings["collect"]["data"], settings["collect"]["manifest_sha256"])]
        if "labels_from" in settings.get("decode", {}):
            decode = settings["decode"]
            given.append((decode["labels_from"], decode["labels_manifest_sha256"]))
        for path, digest in given:
            with open_dataset(path) as data:
                now = manifest_digest(data)
            if now != digest:
                raise ValueError(
                    f"{path} changed while this run used it (manifest sha256 {digest[:12]} -> "
                    f"{now[:12]}); rerun the command: it then says which finished stages to redo"
                )

    def guarded(directory: Path) -> dict:
        check()
        summary = action(directory)
        check()
        return summary

    return guarded


#: Relative duration of each stage, for the pipeline's progress bar (``run_stages``).
STAGE_WEIGHTS = {"expert": 20, "collect": 1, "lam": 12, "bc": 3, "decode": 1, "evaluate": 2,
                 "sweep": 4, "online": 20, "report": 1}  # fmt: skip


def stage_settings(config: RunConfig, configs: dict, expert: Path | None) -> dict[str, dict]:
    """The settings recorded for each stage of ``config`` in ``pipeline.json``: a finished stage
    whose settings differ from these is a ``StageConflict`` (``lapo.pipeline.plan``).

    Args:
        config: the run.
        configs: its stage configs, ``stage_configs(config)``.
        expert: the expert checkpoint that records the data (None: given data, or an expert the
            expert stage trains).

    Returns: ``{stage: settings}`` in the order the stages run.
    """
    trained = not config.own_data and trains_expert(config)
    lam = {**dataclasses.asdict(configs["lam"]), "minutes": config.lam_minutes}
    bc = {**dataclasses.asdict(configs["bc"]), "minutes": config.bc_minutes}
    if config.own_data:  # the given dataset stands for the recording; nothing is played
        given, labelled = _given_data(config, configs)
        settings: dict[str, dict] = {"collect": given, "lam": lam, "bc": bc}
        if labelled is not None:
            settings["decode"] = {**dataclasses.asdict(configs["decode"]), **labelled}
        settings["report"] = {"hide_noop": config.hide_noop, "own_data": True}
    else:
        settings = {
            "collect": {
                "env": config.env,
                "frames": config.frames,
                "num_envs": config.num_envs,
                "seed": config.seed,
                # a trained expert is the expert stage's; redoing that stage redoes this one
                "expert_sha256": "expert stage" if trained else _expert_digest(expert, config.env),
                "expert_temperature": config.expert_temperature,
            },
            "lam": lam,
            "bc": bc,
            "decode": dataclasses.asdict(configs["decode"]),
            "evaluate": {
                "episodes": config.eval_episodes,
                "expert_temperature": config.expert_temperature,
            },
            "report": {"hide_noop": config.hide_noop},
        }
    if not config.own_data and config.env in ACTION_DRAWING_IDS:  # frames without the action
        settings["collect"]["action_hidden"] = True  # (a recording made before differs)
    if trained:
        ppo = dataclasses.asdict(expert_config(config))
        settings = {"expert": {**ppo, "minutes": config.expert_minutes}, **settings}
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
            **({"ilpo": True} if config.online_ilpo else {}),  # absent in runs without ILPO
        }
    return settings


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
        on_env = None
        if name == "random":
            act = make_policy("random", EVAL_SEED, action_spec=env_action_spec(config.env)).act
        elif name == "expert" and str(expert) == SCRIPTED:
            actor = ScriptedActor(config.env)
            act, on_env = actor.act, actor.bind
        else:  # the expert as it recorded the data; the learned policies as trained
            temperature = config.expert_temperature if name == "expert" else 1.0
            net = load_policy(policies[name], config.device)[0]
            act = PolicyActor(net, seed=EVAL_SEED, temperature=temperature).act
        result = evaluate_policy(act, config.env, config.eval_episodes, seed=EVAL_SEED,
                                 on_env=on_env)  # fmt: skip
        results[name] = result_dict(result)
        if progress:
            tqdm.write(f"  {name:>13}: {result.summary()}")
    directory.mkdir(parents=True, exist_ok=True)
    write_json_atomic(directory / "returns.json", results)
    keys = ("mean", "ci95", "normalized", "normalized_ci95")
    return {name: {k: r[k] for k in keys} for name, r in results.items()}
