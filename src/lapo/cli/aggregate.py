"""``lapo aggregate``: one report over several ``lapo run`` directories (games, seeds)."""

from __future__ import annotations

import argparse
from pathlib import Path

from lapo.cli.common import HelpFormatter


def _add_aggregate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "aggregate",
        help="one report over several `lapo run` directories: per-game table, IQM and mean "
        "with bootstrap CIs, performance profiles, the paper's figures across games",
        description="Read finished `lapo run` directories (any games and seeds, made on any "
        "machines and copied together) and write report.md, report.html, figures/ and "
        "aggregate.json: a per-game table beside the paper's numbers, IQM and mean normalized "
        "return over games with stratified-bootstrap 95% CIs and performance profiles "
        "(Agarwal et al. 2021), online curves (paper Figure 3) and label sweeps (Figure 4) where "
        "the runs have them, and a grid of the games' latent-space maps (Figure 5).",
        formatter_class=HelpFormatter,
    )
    p.add_argument(
        "runs",
        nargs="+",
        type=Path,
        metavar="RUN_DIR",
        help="finished `lapo run` directories, one seed of a game each (a second copy of a "
        "game's seed is refused)",
    )
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        help="output directory: new, empty, or an earlier `lapo aggregate` output (its files "
        "are replaced); not inside a run directory",
    )
    p.add_argument("--reps", type=int, help="bootstrap resamples per CI (default 50,000)")
    p.add_argument("--seed", type=int, help="bootstrap seed (default 0)")
    p.set_defaults(func=_run_aggregate)


def _run_aggregate(args: argparse.Namespace) -> None:
    from lapo.config import AggregateConfig
    from lapo.pipeline.aggregate import aggregate

    given = {k: v for k, v in {"reps": args.reps, "seed": args.seed}.items() if v is not None}
    config = AggregateConfig(runs=tuple(args.runs), out=args.out, **given)
    result = aggregate(config)
    for method, s in result["aggregate"]["methods"].items():
        iqm, mean, games = s["iqm"], s["mean"], f"{s['games']} game{'s' * (s['games'] > 1)}"
        print(
            f"{method:<30} IQM {iqm[0]:.3f} [{iqm[1]:.3f}, {iqm[2]:.3f}]  "
            f"mean {mean[0]:.3f} [{mean[1]:.3f}, {mean[2]:.3f}]  ({games})"
        )
    for pair in result["aggregate"].get("improvement", []):
        poi = pair["probability"]
        print(f"P({pair['x']} > {pair['y']}) {poi[0]:.3f} [{poi[1]:.3f}, {poi[2]:.3f}]  "
              f"({pair['games']} games)")  # fmt: skip
    print(f"report: {config.out / 'report.html'}")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``aggregate`` to the ``lapo`` subcommands."""
    _add_aggregate(sub)
