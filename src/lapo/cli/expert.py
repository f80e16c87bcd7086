"""``lapo expert train|eval|export|list``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lapo.cli.common import (
    PROCGEN_CHOICES,
    PROCGEN_TYPES,
    HelpFormatter,
    add_training_options,
    budget_seconds,
)
from lapo.cli.options import (
    add_config_options,
    add_device_option,
    at_least,
    config_from_args,
    json_file,
    with_device,
)

#: ``PPOConfig`` fields without an ``expert train`` option (none: every field has one).
PPO_EXCLUDE: tuple[str, ...] = ()
#: Old spellings kept as aliases of the generated options.
PPO_ALIASES = {"total_steps": "--steps"}


def _add_expert(sub: argparse._SubParsersAction) -> None:
    from lapo.config import PPO_PRESETS, PPOConfig

    p = sub.add_parser(
        "expert",
        help="train and evaluate PPO experts",
        description="Train and evaluate PPO experts for Procgen games.",
    )
    ex_sub = p.add_subparsers(dest="expert_command", required=True, metavar="COMMAND")
    tr = ex_sub.add_parser(
        "train",
        help="train a PPO expert (resumable)",
        description="Train a PPO expert (Cobbe et al. 2020 settings) with periodic evaluation on "
        "held-out levels, TensorBoard and jsonl logs and atomic checkpoints. Rerun with --resume "
        "to continue exactly where a run stopped (Ctrl-C/SIGTERM save a checkpoint first).",
        formatter_class=HelpFormatter,
    )
    tr.add_argument(
        "--preset",
        default="cpu",
        choices=sorted(PPO_PRESETS),
        help="paper: IMPALA x4, 50M steps; cpu: Nature-CNN for 2 cores; smoke: tests",
    )
    tr.add_argument("--out", type=Path, help="run directory (default: runs/expert-GAME)")
    tr.add_argument(
        "--init-from",
        type=Path,
        metavar="EXPERT",
        help="start a new run from this expert's weights (a run directory or a shipped expert; "
        "fresh optimizer and step count)",
    )
    add_training_options(tr)
    add_config_options(
        tr, PPOConfig, PPO_PRESETS, exclude=PPO_EXCLUDE, aliases=PPO_ALIASES,
        choices=PROCGEN_CHOICES, types_=PROCGEN_TYPES, required=("env",),
    )  # fmt: skip
    tr.set_defaults(func=_run_expert_train)
    ev = ex_sub.add_parser(
        "eval",
        help="evaluate an expert checkpoint",
        description="Roll out an expert on held-out levels; print mean return with a 95% CI "
        "and the normalized return.",
        formatter_class=HelpFormatter,
    )
    ev.add_argument(
        "checkpoint", type=Path, metavar="CHECKPOINT", help="run directory or checkpoint path"
    )
    ev.add_argument("--episodes", type=at_least(1), default=100, help="episodes to average over")
    ev.add_argument(
        "--start-level",
        type=int,
        help="first evaluation level (default: the checkpoint's held-out levels)",
    )
    ev.add_argument("--num-levels", type=int, default=0, help="evaluation levels, 0 = all")
    ev.add_argument("--seed", type=int, default=1, help="evaluation seed")
    ev.add_argument("--json", type=json_file, help="also write the result to this JSON file")
    add_device_option(ev)
    ev.set_defaults(func=_run_expert_eval)
    exp = ex_sub.add_parser(
        "export",
        help="write a weights-only copy of an expert, with its held-out evaluation",
        description="Evaluate an expert on held-out levels and write a weights-only checkpoint "
        "(no optimizer or environment state) that records the evaluation: the form in which "
        "experts are shipped in lapo/experts/GAME/.",
        formatter_class=HelpFormatter,
    )
    exp.add_argument("checkpoint", type=Path, metavar="RUN", help="expert run directory")
    exp.add_argument("--out", type=Path, required=True, help="output directory")
    exp.add_argument(
        "--episodes", type=at_least(0), default=200, help="evaluation episodes (0: none)"
    )
    exp.add_argument("--seed", type=int, default=1, help="evaluation seed")
    add_device_option(exp)
    exp.set_defaults(func=_run_expert_export)
    ls = ex_sub.add_parser(
        "list",
        help="the shipped expert of every Procgen game, with its held-out evaluation",
        description="One row per Procgen game: whether an expert is shipped, its recorded "
        "held-out normalized return (95% CI, episodes, evaluation seed), its training steps (all "
        "of them, through --init-from) and "
        "encoder, and whether it meets the 0.5 bar. A game without one trains its own in "
        "`lapo run --env GAME` (the expert stage).",
        formatter_class=HelpFormatter,
    )
    ls.add_argument("--json", action="store_true", help="print the rows as JSON instead")
    ls.set_defaults(func=_run_expert_list)


def _run_expert_train(args: argparse.Namespace) -> str | None:
    from lapo.config import PPO_PRESETS, PPOConfig
    from lapo.stages.expert import train_expert

    budget = budget_seconds(args.time_budget)
    config = config_from_args(PPOConfig, PPO_PRESETS, args.preset, args, exclude=PPO_EXCLUDE)
    out = args.out or Path("runs") / f"expert-{args.env}"
    metrics = train_expert(
        config, out, resume=args.resume, progress=not args.no_progress, time_budget_s=budget,
        device=args.device, init_from=args.init_from,
    )  # fmt: skip
    shown = {k: round(v, 4) for k, v in metrics.items() if k.startswith("return/")}
    print(f"{out}: {shown}")
    return metrics.get("stop_reason")


def _run_expert_eval(args: argparse.Namespace) -> None:
    import dataclasses

    from lapo.load import load_expert
    from lapo.stages.expert import evaluate_expert

    net, config = load_expert(args.checkpoint, **with_device(load_expert, args.device))
    if args.start_level is not None:
        config = dataclasses.replace(config, eval_start_level=args.start_level)
    config = dataclasses.replace(config, eval_num_levels=args.num_levels)
    result = evaluate_expert(
        net, config, args.episodes, seed=args.seed, **with_device(evaluate_expert, args.device)
    )
    print(result.summary())
    print(
        f"levels: start {result.start_level}, count {result.num_levels or 'all'}; "
        f"trained on start {config.start_level}, count {config.num_levels or 'all'}"
    )
    if args.json:
        from lapo.eval.evaluate import result_dict

        args.json.write_text(json.dumps(result_dict(result), indent=2))


def _run_expert_export(args: argparse.Namespace) -> None:
    from lapo.eval.evaluate import result_dict
    from lapo.load import load_expert
    from lapo.stages.expert import check_export_output, evaluate_expert, export_expert

    check_export_output(args.out)  # before the evaluation, not after it
    evaluation = None
    if args.episodes > 0:
        net, config = load_expert(args.checkpoint, **with_device(load_expert, args.device))
        result = evaluate_expert(
            net, config, args.episodes, seed=args.seed, **with_device(evaluate_expert, args.device)
        )
        print(result.summary())
        evaluation = {k: v for k, v in result_dict(result).items() if k != "returns"}
        evaluation["seed"] = args.seed
    out = export_expert(args.checkpoint, args.out, evaluation)
    print(f"wrote {out}")


def _run_expert_list(args: argparse.Namespace) -> None:
    from lapo.envs import GAMES
    from lapo.experts import BAR_NORMALIZED_RETURN, expert_card, shipped_games

    shipped = set(shipped_games())
    rows = []
    for game in GAMES:
        if game not in shipped:
            rows.append({"game": game, "shipped": False})
            continue
        card = expert_card(game)
        rows.append({"game": game, "shipped": True, "env_steps": card.env_steps,
                     "prior_env_steps": card.prior_env_steps, "encoder": card.encoder,
                     "evaluation": card.evaluation, "meets_bar": card.meets_bar,
                     "standing": card.standing})  # fmt: skip
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    header = ("game", "expert", "held-out normalized (95% CI)", "episodes", "seed", "steps",
              "encoder")  # fmt: skip
    lines = [header]
    for row in rows:
        if not row["shipped"]:
            lines.append((row["game"], "none", "-", "-", "-", "-", "-"))
            continue
        ev = row["evaluation"] or {}
        lines.append((
            row["game"], row["standing"],
            f"{ev['normalized']:.3f} +- {ev['normalized_ci95']:.3f}" if ev else "-",
            str(ev.get("episodes", "-")), str(ev.get("seed", "-")),
            f"{(row['env_steps'] + row['prior_env_steps']) / 1e6:.2f}M", row["encoder"],
        ))  # fmt: skip
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for line in lines:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())
    print(
        f"bar: held-out normalized return >= {BAR_NORMALIZED_RETURN} (200 episodes, a seed not "
        "used to choose the checkpoint; docs/experts.md). Without a shipped expert, `lapo run "
        "--env GAME` trains one first."
    )


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``expert`` to the ``lapo`` subcommands."""
    _add_expert(sub)
