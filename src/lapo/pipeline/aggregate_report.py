"""The document of ``lapo aggregate`` (``lapo.pipeline.aggregate`` reads the runs and computes
the statistics): report.md, a self-contained report.html and the figures across games."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from lapo.envs.games import REFERENCE_RETURNS, reference_returns
from lapo.eval import aggregate_plots, return_plots
from lapo.eval.aggregate_stats import mean_of, stratified_bootstrap
from lapo.eval.report import Report
from lapo.pipeline.report.banner import expert_above_random

#: Offline policies of ``eval/returns.json``, in the report's order, with their report names.
OFFLINE = {
    "expert": "expert (data)",
    "random": "uniform random",
    "label_bc": "label-only BC",
    "lapo_decoded": "LAPO decoded",
    "lapo_pseudo_label": "LAPO decoded + pseudo-labels",
}


def _cell(values: list[float], record_ci: float | None = None) -> str:
    if not values:
        return "–"
    mean = float(np.mean(values))
    if len(values) == 1 and record_ci is not None:
        return f"{mean:.3f} ± {record_ci:.3f}"
    return f"{mean:.3f} ({len(values)} runs)" if len(values) > 1 else f"{mean:.3f}"


def game_table(games: dict[str, list], methods: list[str]) -> tuple[list, list]:
    """Header and rows of the per-game table: the reference returns (the paper's for Procgen,
    lapo's measured ones, marked, for continuous control; "–" for an unknown task) beside this
    expert's, each method's normalized return (mean over runs; ± the episodes' 95% CI with one
    run) and the stage-1 probe beside the frame-difference probe."""
    header = ["game", "runs", "reference: random / expert return", "expert here: return"]
    header += methods + ["latent probe (frame difference)"]
    rows = []
    for game, runs in games.items():
        ref = reference_returns(game)
        whose = "" if game in REFERENCE_RETURNS else " (lapo's)"
        expert = [r.returns["expert"]["mean"] for r in runs if "expert" in r.returns]
        row = [game, len(runs), f"{ref.random:g} / {ref.expert:g}{whose}" if ref else "–",
               f"{np.mean(expert):.2f}" if expert else "–"]  # fmt: skip
        for method in methods:
            values = [s for r in runs for s in r.scores.get(method, [])]
            name = {v: k for k, v in OFFLINE.items()}.get(method)
            cis = [r.returns[name]["normalized_ci95"] for r in runs if name in r.returns]
            row.append(_cell(values, cis[0] if len(cis) == 1 else None))
        probes = [(r.probe["probe_mlp_accuracy"], r.probe["frame_difference_mlp_accuracy"])
                  for r in runs if r.probe.get("probe_mlp_accuracy") is not None]  # fmt: skip
        probe = np.mean(probes, axis=0) if probes else None
        row.append(f"{probe[0]:.3f} ({probe[1]:.3f})" if probe is not None else "–")
        rows.append(row)
    return header, rows


def _interval(v: list[float]) -> str:
    return f"{v[0]:.3f} [{v[1]:.3f}, {v[2]:.3f}]"


def _aggregate_section(rep: Report, result: dict, figures: Path) -> None:
    methods = result["aggregate"]["methods"]
    rep.heading("Aggregate over games")
    rep.table(
        ["method", "games", "runs", "IQM [95% CI]", "mean [95% CI]", "paper (16-game mean)"],
        [
            [
                m,
                s["games"],
                s["runs"],
                _interval(s["iqm"]),
                _interval(s["mean"]),
                result["paper"][m],
            ]
            for m, s in methods.items()
        ],  # fmt: skip
    )
    boot = result["bootstrap"]
    pairs = result["aggregate"].get("improvement") or []
    if pairs:
        rep.paragraph(
            "Probability of improvement (Agarwal et al. 2021): the chance that a run of the first "
            "method beats a run of the second on a game drawn at random (0.5: no difference), "
            "over the games where both ran, with its 95% stratified-bootstrap CI."
        )
        rep.table(
            ["P(X > Y)", "games", "probability [95% CI]"],
            [[f"{p['x']} > {p['y']}", p["games"], _interval(p["probability"])] for p in pairs],
        )
    rep.figure(
        aggregate_plots.plot_aggregate_intervals(
            {
                "IQM": {m: s["iqm"] for m, s in methods.items()},
                "mean": {m: s["mean"] for m, s in methods.items()},
            },
            figures / "aggregate_intervals.png",
        ),
        f"IQM and mean normalized return over games: point (line) and 95% stratified-bootstrap "
        f"percentile CI (bar; {boot['reps']:,} resamples, seed {boot['seed']}).",
    )
    rep.figure(
        aggregate_plots.plot_performance_profiles(
            result["aggregate"]["taus"],
            {
                m: tuple(s["profile"][k] for k in ("point", "low", "high"))
                for m, s in methods.items()
            },
            figures / "performance_profiles.png",
        ),
        "Performance profiles: the fraction of runs whose normalized return exceeds τ (per game, "
        "averaged over games), with 95% stratified-bootstrap CI bands.",
    )


def _online_section(rep: Report, games: dict, figures: Path) -> None:
    curves: dict[str, dict[str, list]] = {}
    for game, runs in games.items():  # every run directory of the game adds its seeds
        for r in runs:
            for method, seeds in r.curves.items():
                curves.setdefault(game, {}).setdefault(method, []).extend(seeds)
    if not curves:
        return
    steps = sorted({r.online_steps for runs in games.values() for r in runs if r.online_steps})
    rep.heading("Online fine-tuning (paper Figure 3)")
    rep.figure(
        aggregate_plots.plot_online_grid(curves, figures / "online_curves.png"),
        f"Normalized return against environment steps ({', '.join(f'{s:,}' for s in steps)} "
        "steps per run), mean over seeds, for each game with online runs; first panel: mean over "
        "those games. Paper: LAPO about 1.0 and PPO from scratch about 0.44 after 4M steps.",
    )


def _sweep_section(rep: Report, games: dict, result: dict, figures: Path) -> None:
    from lapo.pipeline.label_sweep import METHOD_BC, METHOD_LAPO

    rows = [(g, row) for g, runs in games.items() for r in runs for row in r.sweep]
    if not rows:
        return
    curves = {}
    boot = result["bootstrap"]
    for method in (METHOD_LAPO, METHOD_BC):
        mine = [(g, row) for g, row in rows if row.get("method", METHOD_LAPO) == method]
        points = []
        for n in sorted({row["labels"] for _, row in mine}):
            tasks: dict[str, list[float]] = {}
            for game, row in mine:
                if row["labels"] == n:
                    tasks.setdefault(game, []).append(row["normalized"])
            iv = stratified_bootstrap(
                list(tasks.values()), mean_of, reps=boot["reps"], seed=boot["seed"]
            )
            points.append((n, float(iv.point[0]), float(iv.high[0] - iv.low[0]) / 2, len(tasks)))
        if points:
            curves[method] = points
    swept = len({g for g, _ in rows})
    lapo = curves[METHOD_LAPO]
    bc = curves.get(METHOD_BC)
    rep.heading("Label sweep (paper Figure 4)")
    rep.figure(
        return_plots.plot_label_sweep(
            [p[0] for p in lapo],
            [p[1] for p in lapo],
            [p[2] for p in lapo],
            figures / "label_sweep.png",
            who=f"mean of {swept} game{'s' * (swept > 1)}",
            baseline=([p[0] for p in bc], [p[1] for p in bc], [p[2] for p in bc]) if bc else None,
        ),  # fmt: skip
        f"Mean normalized return over the {swept} swept games against the number of labels; "
        "bars: half the width of the 95% stratified-bootstrap CI (seeds within games).",
    )
    table = {(m, p[0]): p for m, pts in curves.items() for p in pts}
    paper = return_plots.PAPER_LABEL_CURVE
    body = []
    for n in sorted({p[0] for pts in curves.values() for p in pts}):
        cells = [f"{table[(m, n)][1]:.3f} ({table[(m, n)][3]})" if (m, n) in table else "–"
                 for m in (METHOD_LAPO, METHOD_BC)]  # fmt: skip
        body.append([n, *cells, f"{paper[n]:.2f}" if n in paper else "–"])
    rep.table(["labels", "LAPO decoded (games)", "label-only BC (games)", "paper, LAPO"], body)


def _partial_methods(scores: dict[str, dict[str, list[float]]], games: list[str]) -> list[str]:
    """``"METHOD (k of n games: GAME, ...)"`` for every method of ``scores`` (``{method: {game:
    [score per run]}}``) that has no run in some of ``games`` (e.g. online fine-tuning where
    only some run directories ran it)."""
    return [
        f"{method} ({len(per_game)} of {len(games)} games: {', '.join(per_game)})"
        for method, per_game in scores.items()
        if len(per_game) < len(games)
    ]


def _expert_not_above_random(record) -> bool:
    expert, rand = record.returns.get("expert"), record.returns.get("random")
    return bool(expert and rand and not expert_above_random(expert, rand))


def _differing_settings(records: list, shown: int = 4) -> list[str]:
    """``"stage.setting (values)"`` for the recorded settings whose values differ between runs
    (``RunRecord.settings``; among the runs that have the setting: a stage only some runs have
    is warned of apart), at most ``shown`` of them and a count of the rest."""
    keys = sorted({k for r in records for k in r.settings})
    differing = []
    for key in keys:
        values = {json.dumps(r.settings[key], sort_keys=True) for r in records if key in r.settings}
        if len(values) > 1:
            differing.append(f"{key} ({', '.join(sorted(values))})")
    more = len(differing) - shown
    return differing[:shown] + ([f"{more} more"] if more > 0 else [])


def _warnings(games: dict, records: list, result: dict) -> list[str]:
    """The report's opening warnings: what would make its aggregates misleading (smoke runs,
    one run per game, mixed presets, label counts or other settings, seeds of one game recorded
    by different experts, methods run on only some games, games whose expert is not above
    random)."""
    presets = sorted({r.preset for r in records})
    warnings = []
    if "smoke" in presets:
        warnings.append(
            "runs of the `smoke` preset are tests of the code: their numbers mean nothing"
        )
    single = sorted({g for per_game in result["scores"].values() for g, v in per_game.items()
                     if len(v) == 1})  # fmt: skip
    if single:
        warnings.append(
            f"{len(single)} game{'s' * (len(single) > 1)} ({', '.join(single)}) have one run of "
            "some method: the stratified bootstrap has nothing to resample there, so the CIs "
            "leave out the variation between seeds (zero width when every game has one run); "
            "run several seeds per game (`lapo run --seed S`)"
        )
    if len(presets) > 1:
        warnings.append(f"the runs mix presets ({', '.join(presets)}); compare like with like")
    labels = sorted({r.labels for r in records})
    if len(labels) > 1:
        warnings.append(
            f"the runs decode from different label counts ({', '.join(map(str, labels))}): "
            "each method's figures pool them; compare like with like"
        )
    differing = _differing_settings(records) if len(presets) == 1 else []
    if differing:
        warnings.append(
            f"the runs differ in {'; '.join(differing)}: each method's figures pool them; "
            "compare like with like"
        )
    experts = [g for g, runs in games.items() if len({r.expert_digest for r in runs}) > 1]
    if experts:
        warnings.append(
            f"the seeds of {', '.join(experts)} were recorded by different experts: their spread "
            "mixes the experts' with the methods'; record every seed of a game with one expert "
            "(--expert)"
        )
    partial = _partial_methods(result["scores"], list(games))
    if partial:
        its = "their" if len(partial) > 1 else "its"
        warnings.append(
            f"{'; '.join(partial)}: aggregated over fewer games than the other methods, so "
            f"{its} IQM and mean cannot be compared with theirs (compare per game); give every "
            "game the same methods (e.g. --online on every run) or aggregate those games apart"
        )
    unskilled = [g for g, runs in games.items() if any(_expert_not_above_random(r) for r in runs)]
    if unskilled:
        warnings.append(
            f"{len(unskilled)} game{'s' * (len(unskilled) > 1)} ({', '.join(unskilled)}) "
            f"{'were' if len(unskilled) > 1 else 'was'} recorded by an expert not above the "
            "uniform random policy (95% CIs overlapping): their data hold no skill to imitate, "
            "so the returns of the methods that learn from them cannot tell those methods apart "
            "there; aggregate without them by leaving their run directories out"
        )
    return warnings


def write_report(games: dict, records: list, result: dict, out: Path) -> list[str]:
    """Write ``out/report.md``, ``out/report.html`` and ``out/figures/``; return the figures'
    names. ``games``: ``{game: [RunRecord]}``; ``result``: ``aggregate.json``'s content."""
    figures = out / "figures"
    rep = Report(f"LAPO across {len(games)} game{'s' * (len(games) > 1)}")
    warnings = _warnings(games, records, result)
    rep.banner("Warning: these numbers cannot mean what they seem to.", warnings)
    rep.paragraph(
        f"Generated by `lapo aggregate` on {time.strftime('%Y-%m-%d %H:%M')} from "
        f"{len(records)} `lapo run` directories. Normalized return = (R - R_random) / "
        "(R_expert - R_random) with the paper's reference returns per game (lapo's measured ones "
        "for continuous-control tasks). A run is one seed of "
        "a method on a game (an offline policy: one per run directory; online fine-tuning: one "
        "per seed). Aggregates follow Agarwal et al. 2021 (rliable): IQM (the mean of the middle "
        "50% of all runs), mean over games of the per-game mean, stratified-bootstrap percentile "
        "95% CIs (runs resampled within each game). With unequal run counts per game the IQM "
        "weighs games by their runs."
    )
    _aggregate_section(rep, result, figures)
    rep.heading("Per game")
    rep.table(*game_table(games, list(result["scores"])))
    _online_section(rep, games, figures)
    _sweep_section(rep, games, result, figures)
    # A game's first run directory that has a map (a run without a stage-1 probe has none).
    maps = {
        g: next(r.latent_map for r in runs if r.latent_map)
        for g, runs in games.items()
        if any(r.latent_map for r in runs)
    }
    if maps:
        rep.heading("Latent-space maps (paper Figure 5)")
        rep.figure(
            aggregate_plots.tile_images(maps, figures / "latent_maps.png"),
            "Each game's map of held-out pre-quantization latent actions coloured by the true "
            "action, as its `lapo run` report drew it (the first run directory of the game that "
            "has one).",
        )
    rep.heading("Runs")
    rep.table(
        ["directory", "game", "seed", "preset", "labels", "expert"],
        [[str(r.path), r.game, r.seed, r.preset, r.labels, r.expert] for r in records],
    )
    rep.write(out)
    return sorted(p.name for p in figures.glob("*.png"))
