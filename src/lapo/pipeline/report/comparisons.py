"""The report's sections of the comparisons ``lapo run`` can add: the label sweep (paper Figure
4), online fine-tuning against PPO from scratch (Figure 3) and ILPO's collapse diagnostic
(appendix A.4)."""

from __future__ import annotations

import json
from pathlib import Path


def optional_sections(rep, run_dir: Path, figures: Path, metrics: dict) -> None:
    """Label sweep and online fine-tuning, when those stages ran."""
    from lapo.eval import return_plots

    sweep_file = run_dir / "sweep" / "label_sweep.json"
    if sweep_file.exists():
        table = _sweep_section(rep, json.loads(sweep_file.read_text()), figures)
        metrics["sweep"] = table
    online_file = run_dir / "online" / "online.json"
    if online_file.exists():
        online = json.loads(online_file.read_text())  # metrics["online"] is its "final"
        rep.heading("Online fine-tuning")
        curves = {
            name: [(run["steps"], run["normalized"]) for run in runs]
            for name, runs in online["curves"].items()
        }
        rep.figure(
            return_plots.plot_online_curves(curves, figures / "online.png"),
            "Normalized return against environment steps (mean and spread over seeds). Each "
            "point is an evaluation during training on the few episodes of the online preset "
            "(its eval_episodes); the table below evaluates each final policy on the run's "
            "--eval-episodes, so it can differ from the curves' last points.",
        )
        rep.table(*online_table(online))
        ilpo_section(rep, run_dir / "online" / "ilpo" / "offline")


def ilpo_section(rep, offline_dir: Path) -> None:
    """ILPO's collapse diagnostic (appendix A.4) of the online comparison's seed 0, if it ran."""
    if not (offline_dir / "collapse.json").exists():
        return
    diagnostic = json.loads((offline_dir / "collapse.json").read_text())
    rep.heading("ILPO collapse diagnostic")
    accuracy = diagnostic.get("argmin_action_accuracy")
    rep.figure(
        offline_dir / "collapse.png",
        f"How often each of ILPO's {diagnostic['num_latents']} latents attains the minimum of "
        f"its forward model's error on {diagnostic['samples']} held-out transitions (seed 0): "
        f"the most frequent takes {diagnostic['argmin_max_fraction']:.0%}, effective number "
        f"{diagnostic['effective_latents']:.1f}"
        + (f"; the argmin latent predicts the true action with accuracy {accuracy:.3f} "
           f"(majority action {diagnostic['majority_accuracy']:.3f})" if accuracy is not None
           else "")
        + ". The paper (appendix A.4) finds one latent chosen almost always on the full level "
        "distribution.",
    )  # fmt: skip
    rep.figure(
        offline_dir / "fdm_latents.png",
        "ILPO's forward model: o_t, o_(t+1) and the prediction under every latent.",
    )


def sweep_ci95(row: dict) -> float:
    """95% CI half-width of one label-sweep cell (a ``sweep_table`` row).

    With several seeds: Student t over the seeds, ``t_{0.975, seeds-1} * normalized_sem`` (the
    spread between label draws and trainings); with one seed: the episodes' ``normalized_ci95``.
    """
    from lapo.eval.rollouts import student_t_quantile

    if row["seeds"] > 1:
        return student_t_quantile(0.975, row["seeds"] - 1) * row["normalized_sem"]
    return row["normalized_ci95"]


def _sweep_section(rep, rows: list[dict], figures: Path) -> list[dict]:
    """Figure and table of the label sweep (``label_sweep`` rows); returns ``sweep_table``."""
    from lapo.eval import return_plots
    from lapo.pipeline.label_sweep import METHOD_BC, METHOD_LAPO, sweep_table

    table = sweep_table(rows)

    def curve(method: str) -> tuple[list[int], list[float], list[float]]:
        mine = [r for r in table if r["method"] == method]
        # Between-seed spread when there are seeds to measure it, else the episodes' CI.
        return (
            [r["labels"] for r in mine],
            [r["normalized"] for r in mine],
            list(map(sweep_ci95, mine)),
        )

    has_bc = any(r["method"] == METHOD_BC for r in table)
    rep.heading("Label sweep")
    rep.figure(
        return_plots.plot_label_sweep(
            *curve(METHOD_LAPO),
            figures / "label_sweep.png",
            baseline=curve(METHOD_BC) if has_bc else None,
        ),
        "Normalized return against the number of labels: mean over seeds, 95% CI (Student t) "
        "from the spread between seeds (from the episodes with one seed)"
        + ("; label-only BC on the same labels and levels." if has_bc else "."),
    )
    cell = {(r["method"], r["labels"]): r for r in table}
    seeds = max(r["seeds"] for r in table)
    spread = f"mean of {seeds} seeds, +- SEM" if seeds > 1 else "one seed, +- 95% CI of episodes"
    header = ["labels", f"LAPO decoded ({spread})"]
    header += [f"label-only BC ({spread})"] if has_bc else []
    header += ["paper, LAPO (16-game mean, approx.)"]
    body = []
    for n in sorted({r["labels"] for r in table}):
        row = [n]
        for method in (METHOD_LAPO, METHOD_BC) if has_bc else (METHOD_LAPO,):
            r = cell.get((method, n))
            half = (r["normalized_sem"] if r["seeds"] > 1 else r["normalized_ci95"]) if r else 0
            row.append(f"{r['normalized']:.3f} +- {half:.3f}" if r else "n/a")
        ref = return_plots.PAPER_LABEL_CURVE.get(n)
        body.append([*row, f"{ref:.2f}" if ref is not None else "n/a"])
    rep.table(header, body)
    _sweep_diagnostics(rep, table)
    return table


def _sweep_diagnostics(rep, table: list[dict]) -> None:
    """How each policy of the sweep acts on held-out frames (``action_diagnostics``), if the
    sweep measured it: accuracy, entropy and the greedy action's share, per method and count."""
    from lapo.pipeline.label_sweep import DIAGNOSTICS

    measured = [r for r in table if all(k in r for k in DIAGNOSTICS)]
    if not measured:
        return
    rep.paragraph(
        "How the sweep's policies act on held-out frames (stage 1's test episodes), mean over "
        "seeds: greedy accuracy against the true actions, entropy of the action distribution "
        "(nats) and the share of frames taking the most common greedy action. A decoded policy "
        "whose return falls as labels grow while its entropy falls and that share nears 1 acts "
        "the same everywhere: its latent policy does not tell the states apart."
    )
    rep.table(
        ["method", "labels", "held-out accuracy", "action entropy (nats)",
         "most common action's share"],
        [[r["method"], r["labels"], f"{r['heldout_accuracy']:.3f}",
          f"{r['action_entropy']:.2f}", f"{r['top_action_fraction']:.2f}"] for r in measured],
    )  # fmt: skip


#: Paper section 6.1, Figure 3: mean normalized return over the 16 games after 4M steps.
PAPER_ONLINE = {"LAPO fine-tuned": "about 1.0", "PPO from scratch": "about 0.44",
                "ILPO": "about 0.3"}  # fmt: skip


def online_table(online: dict) -> tuple[list[str], list[list]]:
    """Header and rows: per method the finished policies' evaluations per seed, their mean, the
    median training speed and the paper's figure (``online.json`` of ``run_online_comparison``)."""
    header = ["method", "normalized return per seed (95% CI)", "mean over seeds",
              "env steps/s (median)", "paper, 4M steps (16 games)"]  # fmt: skip
    rows = []
    for name, mean in online["final"].items():
        seeds = "; ".join(
            f"{r['normalized']:.3f} +- {r['normalized_ci95']:.3f} ({r['episodes']} ep)"
            for r in online["evaluation"][name]
        )
        rows.append([name, seeds, f"{mean:.3f}", f"{online['steps_per_second'][name]:,.0f}",
                     PAPER_ONLINE.get(name, "")])  # fmt: skip
    return header, rows
