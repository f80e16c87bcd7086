"""``lapo run``: the whole pipeline on one game, from expert recording to a report."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from lapo.cli.common import ENV_CHOICES, HelpFormatter, budget_seconds, env_name, label_counts
from lapo.cli.options import add_config_options, config_overrides, device_name, parse_assignment

#: ``lapo run`` options of the recording and the evaluation in the game: refused with ``--data``.
PLAYING_OPTIONS = ("env", "expert", "train_expert", "expert_steps", "expert_minutes",
                   "expert_temperature", "frames", "num_envs", "eval_episodes")  # fmt: skip
REDO_STAGES = ("expert", "collect", "lam", "bc", "decode", "evaluate", "sweep", "online", "report")
#: ``RunConfig`` fields without a ``lapo run`` option: ``overrides`` is given by ``--set``.
RUN_EXCLUDE = ("overrides",)


def _add_run(sub: argparse._SubParsersAction) -> None:
    from lapo.pipeline.run_config import RUN_DEFAULTS, RUN_PRESETS, STAGE_CONFIGS, RunConfig

    p = sub.add_parser(
        "run",
        help="the whole pipeline: expert recording -> stages 1-3 -> evaluation -> report",
        description="Record a shipped or given expert (or train one first, the expert stage, for "
        "a game without a shipped expert), train the latent action model, the latent policy "
        "and the offline decoder, evaluate expert / random / label-only BC / LAPO in the game "
        "and write report.md + report.html. With --data, train on your own dataset instead "
        "(e.g. imported video): stages 1-2, stage 3 with labels, no game. Rerun the same "
        "command to resume after an interruption; finished stages are skipped.",
        formatter_class=HelpFormatter,
    )
    add_config_options(
        p, RunConfig, {name: {**RUN_DEFAULTS, **values} for name, values in RUN_PRESETS.items()},
        exclude=RUN_EXCLUDE,
        choices={"env": ENV_CHOICES, "preset": RUN_PRESETS},
        types_={"env": env_name, "sweep": label_counts, "device": device_name},
        help_={
            "env": "game (default: the game of --expert; else the first shipped expert's, "
            "coinrun when shipped)",
            "preset": "cpu, paper or smoke: every stage's preset and the defaults of the "
            "options below (default: paper with a GPU, cpu without)",
            "out": "run directory (default: runs/lapo-GAME-PRESET)",
        },
    )  # fmt: skip
    p.add_argument(
        "--set",
        action="append",
        default=[],
        dest="assignments",
        metavar="STAGE.FIELD=VALUE",
        help="set a field of a stage's config on top of the preset, e.g. --set lam.steps=500 "
        f"--set bc.batch_size=32 (repeatable; stages: {', '.join(STAGE_CONFIGS)}; their fields "
        "are the options of lapo train-lam, train-bc and decode-offline, with _ for -)",
    )
    p.add_argument(
        "--redo",
        action="append",
        default=[],
        choices=REDO_STAGES,
        help="run this finished stage again, with the stages that read its output "
        "(bc: decode, evaluate, sweep, online, report)",
    )
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=_run)


def run_config_from_args(args: argparse.Namespace):
    """The ``RunConfig`` of parsed ``lapo run`` arguments: the options given and the ``--set``
    assignments; ``RunConfig`` itself fills the rest from the preset (the same code as the API).

    Raises:
        ValueError: a malformed ``--set``, an unknown stage or field (listing the valid names)
            or a value of the wrong type, or an invalid ``RunConfig``.
    """
    from lapo.pipeline.run_config import STAGE_CONFIGS, RunConfig

    overrides: dict[str, dict] = {}
    for text in args.assignments:
        stage, name, value = parse_assignment(text, STAGE_CONFIGS)
        overrides.setdefault(stage, {})[name] = value
    given = config_overrides(RunConfig, args, exclude=RUN_EXCLUDE)
    if given.get("data") is None and given.get("labels_from") is not None:
        raise ValueError("--labels-from needs --data (the unlabelled dataset it labels)")
    unused = [k for k in PLAYING_OPTIONS if given.get(k) not in (None, False)]
    if given.get("data") is not None and unused:  # they were ignored without a word
        flags = ", ".join("--" + k.replace("_", "-") for k in unused)
        raise ValueError(
            f"{flags}: a run on given data (--data) records and plays no game; leave "
            f"{'it' if len(unused) == 1 else 'them'} out (lapo evaluate plays a trained policy)"
        )
    if "env" not in given and given.get("expert") is not None:  # the game the expert plays
        given["env"] = _expert_game(given["expert"]) or default_env()
    if "env" not in given:  # a run on given data plays no game: no shipped expert needed
        given["env"] = "coinrun" if given.get("data") is not None else default_env()
    config = RunConfig(**given, overrides=overrides)
    from lapo.pipeline.expert_stage import trains_expert

    unused = [k for k in ("expert_steps", "expert_minutes") if given.get(k) is not None]
    if unused and not config.own_data and not trains_expert(config):  # ignored without a word
        flags = " and ".join("--" + k.replace("_", "-") for k in unused)
        raise ValueError(
            f"{flags} size the expert stage, which this run does not have (a shipped or given "
            "expert records the data): pass --train-expert to train one"
        )
    return config


def _expert_game(expert) -> str | None:
    """The game the expert checkpoint at ``expert`` plays, or None when it cannot say (no
    checkpoint there: ``lapo run`` names the problem)."""
    from lapo.checkpoint import checkpoint_path, read_meta
    from lapo.load import checkpoint_game

    try:
        return checkpoint_game(read_meta(checkpoint_path(expert)))
    except (OSError, ValueError):
        return None


def default_env() -> str:
    """coinrun if its expert is shipped, else the first shipped game.

    Raises:
        FileNotFoundError: no expert is shipped at all.
    """
    from lapo.experts import shipped_games

    games = shipped_games()
    if not games:
        raise FileNotFoundError("no shipped expert; pass --env GAME and --expert CHECKPOINT")
    return "coinrun" if "coinrun" in games else games[0]


def _run(args: argparse.Namespace) -> None:
    from lapo.pipeline import run_pipeline

    budget_seconds(args.lam_minutes, "--lam-minutes")  # refuse bad budgets before any work
    budget_seconds(args.bc_minutes, "--bc-minutes")
    budget_seconds(args.expert_minutes, "--expert-minutes")
    config = run_config_from_args(args)
    summaries = run_pipeline(config, redo=tuple(args.redo), progress=not args.no_progress)
    print(summary_table(summaries), file=sys.stdout)
    print(f"report: {config.out / 'report' / 'report.html'}")


def summary_table(summaries: dict[str, dict]) -> str:
    """The console summary: probe accuracy, stage 3's held-out accuracy (or R^2) and normalized
    returns with 95% CIs."""
    lines, nan = [], float("nan")
    lam = summaries.get("lam", {})
    for metric, name in (("accuracy", "accuracy"), ("r2", "R^2")):  # discrete; continuous
        if f"probe_mlp_{metric}" in lam:
            lines.append(
                f"latent probe {name} (MLP, held-out): {lam[f'probe_mlp_{metric}']:.3f} "
                f"(frame-difference baseline {lam.get(f'frame_difference_mlp_{metric}', nan):.3f})"
            )
    decode = summaries.get("decode", {})
    for metric in ("accuracy", "r2"):  # discrete actions: accuracy; continuous: R^2
        if f"test/decoder_{metric}" in decode:
            baseline = decode.get(f"test/label_bc_{metric}")
            lines.append(
                f"decoded action {metric.replace('r2', 'R^2')} (held-out): decoder on IDM "
                f"latents {decode[f'test/decoder_{metric}']:.3f}, decoded policy "
                f"{decode[f'test/decoded_policy_{metric}']:.3f}"
                + (f", label-only BC {baseline:.3f}" if baseline is not None else "")
            )
    returns = summaries.get("evaluate", {})
    if returns:
        lines.append(f"{'policy':<14}{'return':>16}{'normalized':>20}")
        for name, r in returns.items():
            normalized = (  # a task without reference returns: undefined, said once
                f"{r['normalized']:>12.3f} +- {r['normalized_ci95']:<5.3f}"
                if math.isfinite(r["normalized"])
                else f"{'(no reference returns)':>24}"
            )
            lines.append(f"{name:<14}{r['mean']:>9.2f} +- {r['ci95']:<5.2f}{normalized}")
    return "\n".join(lines)


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="rebuild the report of a run directory",
        description="Write report.md, report.html, figures and metrics.json again into "
        "RUN_DIR/report from the stage folders a `lapo run` left in RUN_DIR (finished or not "
        "past stage 2).",
        formatter_class=HelpFormatter,
    )
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a `lapo run` directory")
    p.set_defaults(func=_report)


def _report(args: argparse.Namespace) -> None:
    from lapo.pipeline.report import rebuild_report

    print(f"report: {rebuild_report(args.run_dir)['report']}")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``run`` and ``report`` to the ``lapo`` subcommands."""
    _add_run(sub)
    _add_report(sub)
