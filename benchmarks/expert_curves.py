"""Draw the learning curves of PPO expert runs, one panel per game (docs/experts.md's figure).

Reads each run's ``metrics.jsonl`` (``lapo expert train``): the training return of the last 100
episodes (line) and the held-out evaluations with their 95% intervals (points), both normalized
against the reference returns of ``lapo.envs``; x: environment steps. A dashed line marks the
0.5 bar of docs/experts.md. Runs of one game continued in several folders (``--init-from``)
are drawn in one panel, each folder its own colour.

    python benchmarks/expert_curves.py runs/expert-* --out docs/results/figures/expert-curves.png
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from lapo.envs.games import reference_returns  # noqa: E402


def read_curve(run: Path) -> dict:
    """``{"env", "train": (steps, normalized), "eval": (steps, normalized, half-widths)}``."""
    config = json.loads((run / "checkpoint.json").read_text()).get("meta", {}).get("config", {})
    train, held_out = ([], []), ([], [], [])
    for line in (run / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        if "return/train_normalized" in row:
            train[0].append(row["step"])
            train[1].append(row["return/train_normalized"])
        if "return/eval_normalized" in row:
            held_out[0].append(row["step"])
            held_out[1].append(row["return/eval_normalized"])
            ref = reference_returns(config.get("env", ""))
            scale = (ref.expert - ref.random) if ref else math.nan
            held_out[2].append(row.get("return/eval_ci95", math.nan) / scale)
    return {"env": config.get("env", run.name), "train": train, "eval": held_out}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="expert run directories")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    args = parser.parse_args(argv)
    by_game: dict[str, list[tuple[Path, dict]]] = {}
    for run in args.runs:
        curve = read_curve(run)
        by_game.setdefault(curve["env"], []).append((run, curve))
    cols = min(4, len(by_game))
    rows = math.ceil(len(by_game) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False)
    for ax, (game, curves) in zip(axes.flat, sorted(by_game.items()), strict=False):
        for i, (run, c) in enumerate(curves):
            colour = f"C{i}"
            ax.plot([s / 1e6 for s in c["train"][0]], c["train"][1], color=colour, lw=0.8,
                    alpha=0.6, label=f"{run.name}: train")  # fmt: skip
            ax.errorbar([s / 1e6 for s in c["eval"][0]], c["eval"][1], yerr=c["eval"][2],
                        fmt="o", ms=3, color=colour, capsize=2, label="held-out")  # fmt: skip
        ax.axhline(0.5, ls="--", color="grey", lw=0.8)
        ax.set_title(game, fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in axes.flat[len(by_game) :]:
        ax.axis("off")
    fig.supxlabel("environment steps (M)", fontsize=9)
    fig.supylabel("normalized return", fontsize=9)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out} ({len(by_game)} games)")


if __name__ == "__main__":
    main()
