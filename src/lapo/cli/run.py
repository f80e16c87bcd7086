"""``lapo run``: the whole pipeline on one game, from expert recording to a report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lapo.cli.common import HelpFormatter, budget_seconds, label_counts
from lapo.envs.games import GAMES

REDO_STAGES = ("collect", "lam", "bc", "decode", "evaluate", "sweep", "online", "report")


def _add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="the whole pipeline: expert recording -> stages 1-3 -> evaluation -> report",
        description="Record a shipped (or given) expert, train the latent action model, the "
        "latent policy and the offline decoder, evaluate expert / random / label-only BC / "
        "LAPO in the game and write report.md + report.html. Rerun the same command to resume "
        "after an interruption; finished stages are skipped.",
        formatter_class=HelpFormatter,
    )
    p.add_argument(
        "--env",
        choices=GAMES,
        metavar="GAME",
        help="game (default: the first shipped expert's, coinrun when shipped)",
    )
    p.add_argument(
        "--preset", choices=("cpu", "paper", "smoke"), help="default: paper with a GPU, cpu without"
    )
    p.add_argument("--out", type=Path, help="run directory (default: runs/lapo-GAME-PRESET)")
    p.add_argument("--expert", help="expert checkpoint to record (default: the shipped one)")
    p.add_argument(
        "--expert-temperature",
        type=float,
        help="the expert records (and is evaluated) sampling softmax(logits / T) (default 1)",
    )
    p.add_argument("--frames", type=int, help="frames to record (default: preset)")
    p.add_argument("--labels", type=int, help="labelled transitions for decoding (256)")
    p.add_argument("--eval-episodes", type=int, help="episodes per evaluated policy (100)")
    p.add_argument(
        "--pseudo-label-updates",
        type=int,
        metavar="U",
        help="not in the paper: also fine-tune the decoded policy for U updates on the "
        "decoder's labels of unlabelled transitions, and evaluate it (default: preset's; 0)",
    )
    p.add_argument("--sweep", type=label_counts, metavar="N,N,...", help="also run a label sweep")
    p.add_argument("--sweep-seeds", type=int, help="sweep: seeds per label count (3)")
    p.add_argument("--sweep-episodes", type=int, help="sweep: episodes per evaluation (32)")
    p.add_argument(
        "--sweep-baseline",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="sweep: also label-only BC on the same labels and levels (default: on)",
    )
    p.add_argument(
        "--online",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="online fine-tuning vs PPO from scratch (default: on in paper)",
    )
    p.add_argument("--online-steps", type=int, help="env steps per online run")
    p.add_argument("--online-seeds", type=int, help="seeds per online method")
    p.add_argument(
        "--lam-steps", type=int, help="stage-1 updates (default: the preset's; cpu 3,000)"
    )
    p.add_argument("--lam-minutes", type=float, help="wall-clock budget of stage 1")
    p.add_argument("--bc-minutes", type=float, help="wall-clock budget of stage 2")
    p.add_argument("--hide-noop", action="store_true", help="hide NOOP in the latent map")
    p.add_argument(
        "--redo",
        action="append",
        default=[],
        choices=REDO_STAGES,
        help="run this finished stage (and all later ones) again",
    )
    p.add_argument("--seed", type=int, help="recording seed (default 0)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=_run)


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
    from lapo.pipeline import RunConfig, run_pipeline

    budget_seconds(args.lam_minutes, "--lam-minutes")  # refuse bad budgets before any work
    budget_seconds(args.bc_minutes, "--bc-minutes")
    env = args.env or default_env()
    given = {
        "frames": args.frames,
        "labels": args.labels,
        "eval_episodes": args.eval_episodes,
        "pseudo_label_updates": args.pseudo_label_updates,
        "sweep": args.sweep,
        "sweep_seeds": args.sweep_seeds,
        "sweep_episodes": args.sweep_episodes,
        "sweep_baseline": args.sweep_baseline,
        "online": args.online,
        "online_steps": args.online_steps,
        "online_seeds": args.online_seeds,
        "lam_steps": args.lam_steps,
        "lam_minutes": args.lam_minutes,
        "bc_minutes": args.bc_minutes,
        "seed": args.seed,
        "expert": args.expert,
        "expert_temperature": args.expert_temperature,
    }
    given = {k: v for k, v in given.items() if v is not None}
    config = RunConfig(env=env, preset=args.preset, out=args.out, hide_noop=args.hide_noop, **given)
    summaries = run_pipeline(config, redo=tuple(args.redo), progress=not args.no_progress)
    print(summary_table(summaries), file=sys.stdout)
    print(f"report: {config.out / 'report' / 'report.html'}")


def summary_table(summaries: dict[str, dict]) -> str:
    """The console summary: probe accuracy and normalized returns with 95% CIs."""
    lines, nan = [], float("nan")
    lam = summaries.get("lam", {})
    if "probe_mlp_accuracy" in lam:
        lines.append(
            f"latent probe accuracy (MLP, held-out): {lam['probe_mlp_accuracy']:.3f} "
            f"(frame-difference baseline {lam.get('frame_difference_mlp_accuracy', nan):.3f})"
        )
    returns = summaries.get("evaluate", {})
    if returns:
        lines.append(f"{'policy':<14}{'return':>16}{'normalized':>20}")
        for name, r in returns.items():
            lines.append(
                f"{name:<14}{r['mean']:>9.2f} +- {r['ci95']:<5.2f}"
                f"{r['normalized']:>12.3f} +- {r['normalized_ci95']:<5.3f}"
            )
    return "\n".join(lines)


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``run`` to the ``lapo`` subcommands."""
    _add_run(sub)
