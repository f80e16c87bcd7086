"""The report of ``lapo run``: ``report.md``, a self-contained ``report.html``, figures and
``metrics.json``, assembled from the artifacts each stage left in the run directory."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from lapo.envs import ACTION_MEANINGS
from lapo.envs.games import REFERENCE_RETURNS

#: Keys of ``metrics.json`` that every report has (``sweep`` and ``online`` when they ran).
METRICS_FIELDS = ("env", "preset", "created", "data", "lam", "bc", "decode", "returns", "seconds")


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _series(rows: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    pts = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
    return np.array([p[0] for p in pts]), np.array([p[1] for p in pts], dtype=float)


def _curves(rows: list[dict], keys: dict[str, str]) -> dict:
    return {label: s for label, key in keys.items() if len((s := _series(rows, key))[0])}


def _latent_figures(run_dir: Path, figures: Path, hide_noop: bool, samples: int = 3000) -> dict:
    """Latent map, FDM predictions and codebook usage from held-out windows."""
    from lapo.data import WindowIndex, open_dataset, split_episodes
    from lapo.eval import plots
    from lapo.eval.fdm_samples import fdm_predictions, format_code, most_used_codes
    from lapo.stages.bc import label_windows
    from lapo.stages.decode import WindowSubset
    from lapo.stages.lam import load_lam

    lam, cfg = load_lam(run_dir / "lam")
    dataset = open_dataset(run_dir / "data")
    _, test_eps = split_episodes(dataset, cfg.test_fraction, cfg.seed)
    index = WindowIndex(dataset, cfg.context, test_eps)
    windows = np.sort(index.labelled_subset(min(samples, len(index)), seed=7))
    latents = label_windows(lam, WindowSubset(index, windows))
    actions = np.asarray(dataset.actions[index.frame_index(windows)])
    out = {}
    out["latent_map"] = plots.plot_latent_map(
        latents, actions, figures / "latent_map.png", hide_noop=hide_noop
    )
    import torch

    with torch.no_grad():
        codes = lam.quantizer(torch.from_numpy(latents)).indices
    if codes is not None:
        codes = codes.numpy()
        top, counts = most_used_codes(codes, 4)
        picked = index.read(windows[np.linspace(0, len(windows) - 1, 4).astype(int)])
        fdm = fdm_predictions(lam, picked, top)
        share = counts / len(codes)
        labels = [f"code #{i + 1} ({100 * s:.0f}%)" for i, s in enumerate(share)]
        out["fdm"] = plots.plot_fdm_predictions(
            picked[:, -2],
            picked[:, -1],
            fdm.predictions,
            labels,
            figures / "fdm_predictions.png",
            own_predictions=fdm.own,
        )
        out["fdm_codes"] = [[labels[i], format_code(c)] for i, c in enumerate(top)]
        out["codebook"] = plots.plot_codebook_usage(
            plots.codebook_counts(codes, cfg.codebook_size), figures / "codebook_usage.png"
        )
    return out


def _collect_metrics(config, run_dir: Path) -> tuple[dict, dict]:
    """``metrics.json``'s content and the raw stage files (``quality``, ``decode``, ``returns``)."""
    stages = json.loads((run_dir / "pipeline.json").read_text())["stages"]
    raw = {
        "quality": json.loads((run_dir / "lam" / "latent_quality.json").read_text()),
        "decode": json.loads((run_dir / "decode" / "decode.json").read_text()),
        "returns": json.loads((run_dir / "eval" / "returns.json").read_text()),
    }
    metrics = {
        "env": config.env,
        "preset": config.preset,
        "created": time.strftime("%Y-%m-%d %H:%M"),
        "data": stages["collect"]["summary"],
        "lam": {k: v for k, v in raw["quality"].items() if isinstance(v, int | float)}
        | {k: v for k, v in stages["lam"]["summary"].items() if k.startswith("test/")},
        "bc": {
            k: v for k, v in stages["bc"]["summary"].items() if k.startswith(("test/", "train/"))
        },
        "decode": {k: v for k, v in raw["decode"].items() if isinstance(v, int | float)},
        "returns": {
            name: {k: r[k] for k in ("mean", "ci95", "normalized", "normalized_ci95", "episodes")}
            for name, r in raw["returns"].items()
        },
        "seconds": {s: v["seconds"] for s, v in stages.items()},
    }
    if "online" in stages:
        metrics["online"] = stages["online"]["summary"]
        metrics["online_steps"] = stages["online"]["settings"]["steps"]
    return metrics, raw


def _policy_names(labels: int) -> dict[str, str]:
    return {
        "expert": "expert (data)",
        "random": "uniform random",
        "label_bc": f"label-only BC ({labels} labels)",
        "lapo_decoded": f"LAPO decoded ({labels} labels)",
        "lapo_pseudo_label": f"LAPO decoded + pseudo-label fine-tuning ({labels} labels)",
    }


def _summary_section(rep, metrics: dict) -> None:
    """The headline figures first: latent probe, normalized returns, wall time."""
    lam, returns = metrics["lam"], metrics["returns"]
    rows = [
        [
            "latent probe accuracy (MLP, held-out)",
            f"{lam['probe_mlp_accuracy']:.3f} (frame-difference baseline "
            f"{lam['frame_difference_mlp_accuracy']:.3f}, majority {lam['majority_accuracy']:.3f})",
        ]
    ]
    for key, name in _policy_names(metrics["decode"]["labels"]).items():
        if key in returns:
            r = returns[key]
            rows.append(
                [
                    f"normalized return, {name}",
                    f"{r['normalized']:.3f} ± {r['normalized_ci95']:.3f} "
                    f"(return {r['mean']:.2f} ± {r['ci95']:.2f}, {r['episodes']} episodes)",
                ]
            )
    if "online" in metrics:
        rows.append(
            [
                "normalized return after online PPO (mean over seeds)",
                ", ".join(f"{name} {v:.3f}" for name, v in metrics["online"].items())
                + f" ({metrics['online_steps']:,} env steps)",
            ]
        )
    seconds = metrics["seconds"]
    per_stage = ", ".join(f"{s} {v / 60:.1f}" for s, v in seconds.items() if s != "report")
    rows.append(["wall time (minutes)", f"{sum(seconds.values()) / 60:.1f} ({per_stage})"])
    rep.heading("Summary")
    rep.table(["", "value (95% CI)"], rows)


def _temperature_note(config) -> str:
    """`` (sampling temperature T)`` when the expert recorded at T != 1, else empty."""
    t = config.expert_temperature
    return "" if t == 1.0 else f" (sampling temperature {t:g}, also in its evaluation)"


def _lam_options(lam) -> str:
    """The stage-1 departures from the paper that are on, as ``"; ..."`` (empty when none)."""
    options = [
        *([f"IDM IMPALA x{lam.idm_multiplier}"] if lam.idm_multiplier else []),
        *(["IDM also sees frame differences"] if lam.idm_frame_differences else []),
        *(["FDM predicts the change from o_t"] if lam.fdm_residual else []),
        *(["dead codes restarted"] if lam.restart_dead_codes else []),
    ]
    return "".join(f"; {o}" for o in options)


def _config_section(rep, config) -> None:
    """The settings that matter in one table; every field in a folded JSON block."""
    from lapo.stages.run import stage_configs

    cfgs = stage_configs(config)
    lam, bc, dec = cfgs["lam"], cfgs["bc"], cfgs["decode"]
    quantizer = {
        "vq": f"EMA VQ, {lam.num_codebooks} codebooks x {lam.num_latents} "
        f"latent{'s' if lam.num_latents != 1 else ''} of "
        f"{lam.codebook_size} codes (dim {lam.code_dim}), commitment {lam.commitment_cost}, "
        f"decay {lam.ema_decay}",
        "none": "none (no-VQ ablation)",
        "fsq": "FSQ",
    }[lam.quantizer]
    rep.heading("Configuration")
    rep.table(
        ["stage", "settings"],
        [
            ["data", f"{config.frames} frames of the expert{_temperature_note(config)} in "
             f"{config.env}, "
             f"{config.num_envs} envs, seed {config.seed}"],
            ["stage 1: IDM + FDM", f"size {lam.size}, k={lam.context}{_lam_options(lam)}; "
             f"{quantizer}; {lam.steps} updates of {lam.batch_size}, lr {lam.learning_rate:g}, "
             f"bf16 {lam.bf16}"],
            ["stage 2: latent BC", f"{bc.encoder} x{bc.multiplier} ({bc.features} features), "
             f"{bc.target} target, {bc.steps} updates of {bc.batch_size}, lr {bc.learning_rate:g}"],
            ["stage 3: offline decoding", f"MLP {dec.hidden} on {dec.labels} labels "
             f"({dec.validation_fraction:.0%} for early stopping); label-only BC "
             f"{dec.bc_steps} updates"],
            ["evaluation", f"{config.eval_episodes} episodes per policy, sampling from the "
             "policy's softmax"],
        ],
    )  # fmt: skip
    full = {
        "run": {
            k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(config).items()
        },
        **{k: dataclasses.asdict(v) for k, v in cfgs.items()},
    }
    rep.code(json.dumps(full, indent=1, default=str), collapsed="every setting (JSON)")


def _lam_section(rep, run_dir: Path, figures: Path, quality: dict, hide_noop: bool) -> None:
    """Stage 1: training curves, probes, latent map, FDM predictions, codebook usage."""
    from lapo.eval import plots

    rep.heading("Stage 1: latent action model")
    lam_rows = _jsonl(run_dir / "lam" / "metrics.jsonl")
    rep.figure(
        plots.plot_training_curves(
            _curves(lam_rows, {"train": "train/fdm_mse", "test (held-out)": "test/fdm_mse"}),
            figures / "lam_loss.png",
            "Stage 1: next-frame prediction",
            ylabel="FDM MSE",
            log_y=True,
            smooth=0.6,
        ),
        "Next-frame MSE of the FDM, training and held-out episodes.",
    )
    perplexity = _curves(lam_rows, {f"codebook {g}": f"perplexity/{g}" for g in range(4)})
    if perplexity:
        rep.figure(
            plots.plot_training_curves(
                perplexity,
                figures / "perplexity.png",
                "Stage 1: code perplexity",
                ylabel="perplexity",
            ),
            "Perplexity of each codebook's code use per batch.",
        )
    rep.table(
        ["probe (held-out)", "accuracy"],
        [
            ["linear on latents", quality["probe_linear_accuracy"]],
            ["MLP (128, 128) on latents", quality["probe_mlp_accuracy"]],
            [
                "MLP on 4x-pooled frame difference (baseline)",
                quality["frame_difference_mlp_accuracy"],
            ],
            ["majority class", quality["majority_accuracy"]],
            ["NMI(code, action)", quality.get("nmi", float("nan"))],
        ],
    )
    latent = _latent_figures(run_dir, figures, hide_noop)
    m = latent["latent_map"]
    rep.figure(
        m.path,
        f"Pre-quantization latent actions of {m.num_points} held-out transitions "
        f"({m.method.upper()}), coloured by the true action (never used in training).",
    )
    if "fdm" in latent:
        rep.figure(
            latent["fdm"],
            "FDM predictions of o_(t+1) under the window's own latent and "
            "under each of the 4 most used codes, next to the real next frame.",
        )
        rep.table(["code", "indices (codebook 1 | codebook 2)"], latent["fdm_codes"])
        rep.figure(latent["codebook"], "Code usage per codebook on held-out transitions.")


def _policy_sections(rep, run_dir: Path, figures: Path, decode: dict, metrics: dict) -> None:
    """Stage 2 curves, stage 3 decoding accuracy and confusion matrix, the returns."""
    from lapo.eval import plots, return_plots

    rep.heading("Stage 2: latent behaviour cloning")
    rep.figure(
        plots.plot_training_curves(
            _curves(
                _jsonl(run_dir / "bc" / "metrics.jsonl"),
                {"train": "train/mse", "test (held-out)": "test/mse"},
            ),
            figures / "bc_loss.png",
            "Stage 2: latent policy regression",
            ylabel="latent MSE",
            log_y=True,
            smooth=0.6,
        ),
        "MSE between pi(o_t) and the IDM's latent action.",
    )
    rep.heading("Stage 3: offline decoding")
    rep.paragraph(
        f"{decode['labels']} labelled transitions. Held-out accuracy: decoder on IDM latents "
        f"{decode['test/decoder_accuracy']:.3f}, decoded policy on o_t "
        f"{decode['test/decoded_policy_accuracy']:.3f}, label-only BC on o_t "
        f"{decode.get('test/label_bc_accuracy', float('nan')):.3f}"
        + (
            f", decoded policy after pseudo-label fine-tuning on o_t "
            f"{decode['test/pseudo_label_accuracy']:.3f} (not in the paper: the decoded policy "
            f"fine-tuned on the decoder's labels of {decode['pseudo_label']['pseudo_labelled']:,} "
            f"unlabelled transitions, {decode['pseudo_label']['updates']:,} updates)"
            if "test/pseudo_label_accuracy" in decode
            else ""
        )
        + "."
    )
    rep.figure(
        plots.plot_confusion_matrix(
            np.array(decode["test/true_actions"]),
            np.array(decode["test/decoded_actions"]),
            figures / "confusion.png",
            ACTION_MEANINGS,
        ),
        "Decoded policy's action against the true action on held-out transitions.",
    )
    rep.heading("Returns")
    names = _policy_names(decode["labels"])
    returns = metrics["returns"]
    rows = [{"name": names[k], **returns[k]} for k in names if k in returns]
    rep.table(
        ["policy", "return", "95% CI", "normalized", "95% CI", "episodes"],
        [
            [r["name"], r["mean"], r["ci95"], r["normalized"], r["normalized_ci95"], r["episodes"]]
            for r in rows
        ],
    )
    rep.figure(
        return_plots.plot_returns(
            rows, figures / "returns.png", title=f"{metrics['env']}: returns"
        ),
        "Mean return with 95% confidence intervals.",
    )


def build_report(config, run_dir: Path, report_dir: Path) -> dict:
    """Write ``report_dir/{report.md, report.html, metrics.json}`` and figures; return metrics.

    ``config`` is the ``RunConfig`` of the run; ``run_dir`` holds the stage folders.
    """
    from lapo.eval.report import Report

    run_dir, report_dir = Path(run_dir), Path(report_dir)
    figures = report_dir / "figures"
    metrics, raw = _collect_metrics(config, run_dir)
    data, game = metrics["data"], config.env
    rep = Report(f"LAPO on {game} (preset {config.preset})")
    ref = REFERENCE_RETURNS[game]
    rep.paragraph(
        f"Generated by `lapo run` on {metrics['created']}. Normalized return = (R - R_random) / "
        f"(R_expert - R_random) with the paper's reference returns for {game} (random "
        f"{ref.random}, expert {ref.expert}). Evaluation levels are drawn from all levels with a "
        "seed other than the recording's."
    )
    _summary_section(rep, metrics)
    _config_section(rep, config)
    rep.heading("Data")
    rep.table(
        ["frames", "episodes (complete)", "expert return while recording", "expert"],
        [
            [
                data["frames"],
                f"{data['episodes']} ({data['complete_episodes']})",
                data["mean_return"],
                Path(data["expert"]).name,
            ]
        ],
    )
    _lam_section(rep, run_dir, figures, raw["quality"], config.hide_noop)
    _policy_sections(rep, run_dir, figures, raw["decode"], metrics)
    _optional_sections(rep, run_dir, figures, metrics)
    report_dir.mkdir(parents=True, exist_ok=True)
    rep.write(report_dir)
    (report_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float))
    return {"report": str(report_dir / "report.html")}


def _optional_sections(rep, run_dir: Path, figures: Path, metrics: dict) -> None:
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
            "Normalized return against environment steps (mean and spread over seeds).",
        )
        rep.table(*_online_table(online))


def _sweep_section(rep, rows: list[dict], figures: Path) -> list[dict]:
    """Figure and table of the label sweep (``label_sweep`` rows); returns ``sweep_table``."""
    from lapo.eval import return_plots
    from lapo.stages.evaluate import METHOD_BC, METHOD_LAPO, sweep_table

    table = sweep_table(rows)

    def curve(method: str) -> tuple[list[int], list[float], list[float]]:
        mine = [r for r in table if r["method"] == method]
        # Between-seed spread when there are seeds to measure it, else the episodes' CI.
        ci = [1.96 * r["normalized_sem"] if r["seeds"] > 1 else r["normalized_ci95"] for r in mine]
        return [r["labels"] for r in mine], [r["normalized"] for r in mine], ci

    has_bc = any(r["method"] == METHOD_BC for r in table)
    rep.heading("Label sweep")
    rep.figure(
        return_plots.plot_label_sweep(
            *curve(METHOD_LAPO),
            figures / "label_sweep.png",
            baseline=curve(METHOD_BC) if has_bc else None,
        ),
        "Normalized return against the number of labels: mean over seeds, 95% CI from the "
        "spread between seeds (from the episodes with one seed)"
        + ("; label-only BC on the same labels and levels." if has_bc else "."),
    )
    cell = {(r["method"], r["labels"]): r for r in table}
    seeds = max(r["seeds"] for r in table)
    header = ["labels", f"LAPO decoded (mean of {seeds} seeds, +- SEM)"]
    header += [f"label-only BC (mean of {seeds} seeds, +- SEM)"] if has_bc else []
    header += ["paper, LAPO (16-game mean, approx.)"]
    body = []
    for n in sorted({r["labels"] for r in table}):
        row = [n]
        for method in (METHOD_LAPO, METHOD_BC) if has_bc else (METHOD_LAPO,):
            r = cell.get((method, n))
            row.append(f"{r['normalized']:.3f} +- {r['normalized_sem']:.3f}" if r else "n/a")
        ref = return_plots.PAPER_LABEL_CURVE.get(n)
        body.append([*row, f"{ref:.2f}" if ref is not None else "n/a"])
    rep.table(header, body)
    return table


#: Paper section 6.1, Figure 3: mean normalized return over the 16 games after 4M steps.
PAPER_ONLINE = {"LAPO fine-tuned": "about 1.0", "PPO from scratch": "about 0.44"}


def _online_table(online: dict) -> tuple[list[str], list[list]]:
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
