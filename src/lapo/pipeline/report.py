"""The report of ``lapo run``: ``report.md``, a self-contained ``report.html``, figures and
``metrics.json``, assembled from the artifacts each stage left in the run directory."""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np

from lapo.envs import ACTION_MEANINGS
from lapo.envs.games import REFERENCE_RETURNS, reference_returns
from lapo.pipeline.expert_stage import expert_origin

#: Keys of ``metrics.json`` that every report has (``sweep`` and ``online`` when they ran).
METRICS_FIELDS = ("env", "preset", "created", "data", "lam", "bc", "decode", "returns", "seconds")

#: The banner's first line; its items are ``report_warnings``.
BANNER_HEADING = "Warning: the numbers of this run cannot mean what they seem to."
#: A probe this close to the majority-class accuracy (or below) has found no action information.
PROBE_MARGIN = 0.02
#: Joint code perplexity on held-out transitions (exp of the entropy of the whole code tuple of
#: all codebooks and latents: the effective number of distinct latent actions) at or below this:
#: the codebook has collapsed.
COLLAPSED_PERPLEXITY = 1.5


def report_warnings(metrics: dict) -> list[str]:
    """Why the numbers of a run cannot mean anything: one sentence per finding, none if none.

    Args:
        metrics: ``metrics.json``'s content (``_collect_metrics``); read are ``preset``,
            ``returns.{expert,random}.{mean,normalized,normalized_ci95}`` and
            ``lam.{probe_mlp_accuracy,majority_accuracy,distinct_codes,heldout_transitions,
            heldout_distinct_codes,heldout_joint_perplexity}``. Missing entries skip their
            check.

    Returns: sentences for, in order: the ``smoke`` preset; an expert not above the uniform
        random policy (95% CIs overlapping, an unknown CI, or a mean return not above); a
        collapsed codebook (one distinct joint code on held-out transitions or in the probe
        sample, or a held-out joint perplexity <= ``COLLAPSED_PERPLEXITY``); a
        latent probe at the majority class (accuracy <= majority + ``PROBE_MARGIN``).
    """
    lam = metrics.get("lam", {})
    found = (
        _smoke_warning(metrics.get("preset")),
        _expert_warning(metrics.get("returns", {})),
        _collapse_warning(lam),
        _probe_warning(lam),
    )
    return [w for w in found if w]


def _smoke_warning(preset: str | None) -> str | None:
    if preset != "smoke":
        return None
    return (
        "This run used the `smoke` preset (a few updates on a few frames, sized to test the "
        "code), so none of its numbers measure how well LAPO works."
    )


def _count(n: int, noun: str) -> str:
    """``"1 code"``, ``"2,048 codes"``."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _ci_text(value: float, ci: float) -> str:
    return f"{value:.3f} ± {ci:.3f}" if math.isfinite(ci) else f"{value:.3f} (no CI)"


def _expert_warning(returns: dict) -> str | None:
    expert, rand = returns.get("expert"), returns.get("random")
    if not expert or not rand:
        return None
    lowest_expert = expert["normalized"] - expert["normalized_ci95"]  # NaN CI: NaN, not above
    highest_random = rand["normalized"] + rand["normalized_ci95"]
    if expert["mean"] > rand["mean"] and lowest_expert > highest_random:
        return None
    shown_expert = _ci_text(expert["normalized"], expert["normalized_ci95"])
    shown_random = _ci_text(rand["normalized"], rand["normalized_ci95"])
    return (
        f"The expert's normalized return ({shown_expert}, 95% CI) is not above the uniform "
        f"random policy's ({shown_random}), so the data hold no skill to "
        "imitate and no return of this run can show that a method learned anything."
    )


def _collapse_warning(lam: dict) -> str | None:
    heldout, joint = lam.get("heldout_distinct_codes"), lam.get("heldout_joint_perplexity")
    probed = lam.get("distinct_codes")
    one_code = any(n is not None and n <= 1 for n in (heldout, probed))
    if not (one_code or (joint is not None and joint <= COLLAPSED_PERPLEXITY)):
        return None
    facts = []
    if heldout is not None:
        facts.append(
            f"{_count(heldout, 'distinct latent action')} among "
            f"{lam['heldout_transitions']:,} held-out transitions, joint perplexity {joint:.2f}"
        )
    if probed is not None:
        facts.append(f"{probed} in the probe's sample")
    return (
        f"The codebook collapsed ({'; '.join(facts)}), so the quantized latent action is "
        "(nearly) the same for every transition and carries no action for stages 2 and 3 to "
        "imitate and decode."
    )


def _probe_warning(lam: dict) -> str | None:
    probe, majority = lam.get("probe_mlp_accuracy"), lam.get("majority_accuracy")
    if probe is None or majority is None or probe > majority + PROBE_MARGIN:
        return None
    return (
        f"The MLP probe predicts the true action from the latents no better than always guessing "
        f"the most common action (held-out accuracy {probe:.3f} vs majority class "
        f"{majority:.3f}), so the latents show no information about the actions taken."
    )


def precision_text(requested: bool, device) -> str:
    """The arithmetic a stage computes in, as ``lapo.device.bf16_enabled`` decides it.

    Args:
        requested: the config's ``bf16``.
        device: where the stage ran (``torch.device`` or a string such as ``"cpu"``).

    Returns: ``"bf16 (native)"``, ``"fp32"`` (not requested) or ``"fp32 (bf16 requested; no
        native bf16 on this cpu: REASON)"``.
    """
    import torch

    from lapo.device import native_bf16

    if not requested:
        return "fp32"
    # bf16_enabled(requested, device) == requested and native_bf16(device)[0]; asked directly
    # for the reason, and so that writing the report does not repeat the fallback warning.
    native, why = native_bf16(device)
    if native:
        return "bf16 (native)"
    return f"fp32 (bf16 requested; no native bf16 on this {torch.device(device).type}: {why})"


def sweep_ci95(row: dict) -> float:
    """95% CI half-width of one label-sweep cell (a ``sweep_table`` row).

    With several seeds: Student t over the seeds, ``t_{0.975, seeds-1} * normalized_sem`` (the
    spread between label draws and trainings); with one seed: the episodes' ``normalized_ci95``.
    """
    from lapo.eval.rollouts import student_t_quantile

    if row["seeds"] > 1:
        return student_t_quantile(0.975, row["seeds"] - 1) * row["normalized_sem"]
    return row["normalized_ci95"]


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _series(rows: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    pts = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
    return np.array([p[0] for p in pts]), np.array([p[1] for p in pts], dtype=float)


def _curves(rows: list[dict], keys: dict[str, str]) -> dict:
    return {label: s for label, key in keys.items() if len((s := _series(rows, key))[0])}


#: Codes coloured apart in the latent map of action-free data (the rest share one colour).
MAP_CODES = 9


def code_classes(codes: np.ndarray, top: int = MAP_CODES) -> tuple[np.ndarray, list[str]]:
    """Colour classes of a latent map of data without true actions: the ``top`` most used code
    tuples, then "other".

    Args:
        codes: ``(N, G, L) int`` code indices of N transitions.
        top: code tuples coloured apart.

    Returns:
        ``classes (N,) int64`` in ``[0, K]`` (K = min(top, distinct tuples); K = "other") and K + 1
        names (``"code #1 (12%)"``, ..., ``"other codes"``).
    """
    from lapo.eval.fdm_samples import most_used_codes

    codes = np.asarray(codes)
    flat = codes.reshape(len(codes), -1)
    chosen, counts = most_used_codes(codes, top)
    classes = np.full(len(codes), len(chosen), np.int64)
    for i, code in enumerate(chosen.reshape(len(chosen), -1)):
        classes[(flat == code).all(axis=1)] = i
    names = [f"code #{i + 1} ({100 * c / len(codes):.0f}%)" for i, c in enumerate(counts)]
    return classes, [*names, "other codes"]


def _latent_figures(
    run_dir: Path, figures: Path, hide_noop: bool, samples: int = 3000, data_dir: Path | None = None
) -> dict:
    """Latent map, FDM predictions and codebook usage from held-out windows.

    ``data_dir``: the dataset stage 1 trained on (default ``run_dir/data``). Without true
    actions the map is coloured by the most used codes instead.
    """
    from lapo.data import open_dataset, split_windows
    from lapo.eval import plots
    from lapo.eval.fdm_samples import fdm_predictions, format_code, most_used_codes
    from lapo.load import load_lam
    from lapo.stages.bc import label_windows
    from lapo.stages.decode import WindowSubset

    lam, cfg = load_lam(run_dir / "lam")
    dataset = open_dataset(run_dir / "data" if data_dir is None else data_dir)
    index = split_windows(dataset, cfg.context, cfg.test_fraction, cfg.seed)[1]
    windows = np.sort(index.labelled_subset(min(samples, len(index)), seed=7))
    latents = label_windows(lam, WindowSubset(index, windows))
    import torch

    with torch.no_grad():
        device = next(lam.parameters()).device
        codes = lam.quantizer(torch.from_numpy(latents).to(device)).indices
    codes = None if codes is None else codes.cpu()  # (N, G, L) int64 on the host
    out = {}
    if dataset.has_actions and not dataset.continuous_actions:
        actions = np.asarray(dataset.actions[index.frame_index(windows)])
        out["latent_map"] = plots.plot_latent_map(
            latents, actions, figures / "latent_map.png", hide_noop=hide_noop
        )
        out["map_colour"] = "the true action (never used in training)"
    else:  # no actions to colour by: the most used codes (or one colour without a codebook)
        classes, names = (
            code_classes(codes.numpy())
            if codes is not None
            else (np.zeros(len(latents), np.int64), ["transition"])
        )
        out["latent_map"] = plots.plot_latent_map(
            latents, classes, figures / "latent_map.png", action_names=names, noop_action=None,
            title="Latent actions of data without true actions", colour_by="quantized code",
        )  # fmt: skip
        out["map_colour"] = "its quantized code (the data have no discrete true actions)"
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
        counts = plots.codebook_counts(codes, cfg.codebook_size)  # (G, S)
        out["codebook"] = plots.plot_codebook_usage(counts, figures / "codebook_usage.png")
        out["codebook_metrics"] = heldout_codebook_metrics(codes, cfg.codebook_size)
    return out


def heldout_codebook_metrics(codes: np.ndarray, codebook_size: int) -> dict:
    """``metrics.json`` entries of code use on held-out transitions, counted as the codebook
    figure counts them.

    Args:
        codes: ``(N, G, L) int`` code indices of N transitions (G codebooks, L latents each).
        codebook_size: S, codes per codebook.

    Returns: ``heldout_transitions`` (N); per codebook g ``heldout_codes_used/g`` (codes chosen
        by any latent of any transition) and ``heldout_perplexity/g`` of those N * L choices
        (``plots.codebook_stats``: the figure's panel titles); ``heldout_distinct_codes``
        (distinct whole code tuples, i.e. latent actions) and ``heldout_joint_perplexity``
        (exp of their entropy; 1 = every transition gets the same latent action).
    """
    from lapo.eval.plots import codebook_counts, codebook_stats

    codes = np.asarray(codes)
    used, perplexity = codebook_stats(codebook_counts(codes, codebook_size))
    _, joint_counts = np.unique(codes.reshape(len(codes), -1), axis=0, return_counts=True)
    share = joint_counts / len(codes)
    out = {"heldout_transitions": len(codes)}
    for g, (u, p) in enumerate(zip(used.tolist(), perplexity.tolist(), strict=True)):
        out[f"heldout_codes_used/{g}"] = int(u)
        out[f"heldout_perplexity/{g}"] = float(p)
    out["heldout_distinct_codes"] = len(joint_counts)
    out["heldout_joint_perplexity"] = float(np.exp(-(share * np.log(share)).sum()))
    return out


def _codebook_rows(lam: dict, codebook_size: int) -> list[list[str]]:
    """Rows of the stage-1 code-use table: the held-out count (the one the summary and the figure
    give) and, named apart, stage 1's training-time usage-EMA count (``codes_used/g`` in
    ``lam/metrics.jsonl``)."""
    groups = sorted(int(k.split("/")[1]) for k in lam if k.startswith("heldout_codes_used/"))
    rows = [
        [
            f"codebook {g + 1}",
            f"{lam[f'heldout_codes_used/{g}']}/{codebook_size}",
            f"{lam[f'heldout_perplexity/{g}']:.2f}",
            f"{lam[k]}/{codebook_size}" if (k := f"train_ema_codes_alive/{g}") in lam else "n/a",
        ]
        for g in groups
    ]
    return rows


def _codebook_summary(lam: dict, codebook_size: int) -> str | None:
    """``"4/64 and 5/64 (perplexity 2.10, 3.30) on 3,000 held-out transitions, which get 17
    distinct latent actions (joint perplexity 9.12)"``: the held-out counts
    (``heldout_codebook_metrics``); None without them."""
    rows = _codebook_rows(lam, codebook_size)
    if not rows:
        return None
    return (
        f"{' and '.join(r[1] for r in rows)} (perplexity {', '.join(r[2] for r in rows)}) on "
        f"{lam['heldout_transitions']:,} held-out transitions, which get "
        f"{_count(lam['heldout_distinct_codes'], 'distinct latent action')} (joint perplexity "
        f"{lam['heldout_joint_perplexity']:.2f})"
    )


def _collect_metrics(config, run_dir: Path) -> tuple[dict, dict]:
    """``metrics.json``'s content and the raw stage files (``quality``, ``decode``, ``returns``)."""
    stages = json.loads((run_dir / "pipeline.json").read_text())["stages"]
    files = {
        "quality": run_dir / "lam" / "latent_quality.json",  # only for data with true actions
        "decode": run_dir / "decode" / "decode.json",  # not on given data without labels
        "returns": run_dir / "eval" / "returns.json",  # not on given data (no game to play)
    }
    raw = {k: json.loads(f.read_text()) if f.exists() else {} for k, f in files.items()}
    metrics = {
        "env": None if getattr(config, "data", None) else config.env,
        "preset": config.preset,
        "created": time.strftime("%Y-%m-%d %H:%M"),
        "data": stages["collect"]["summary"],
        "lam": {k: v for k, v in raw["quality"].items() if isinstance(v, int | float)}
        | {k: v for k, v in stages["lam"]["summary"].items() if k.startswith("test/")}
        | _training_code_counts(stages["lam"]["summary"]),
        "bc": {
            k: v for k, v in stages["bc"]["summary"].items() if k.startswith(("test/", "train/"))
        },
        "decode": {k: v for k, v in raw["decode"].items() if isinstance(v, int | float)},
        "returns": {
            name: {k: r[k] for k in ("mean", "ci95", "normalized", "normalized_ci95", "episodes")}
            for name, r in raw["returns"].items()
        },
        "seconds": {s: v["seconds"] for s, v in stages.items()},
        "expert_origin": expert_origin(config, stages),
    }
    if "expert" in stages:
        metrics["expert_stage"] = stages["expert"]["summary"]
    if "online" in stages:
        metrics["online"] = stages["online"]["summary"]
        metrics["online_steps"] = stages["online"]["settings"]["steps"]
    return metrics, raw


def _training_code_counts(summary: dict) -> dict:
    """Stage 1's ``codes_used/g`` (codes whose training usage EMA is above the dead-code
    threshold; it starts with every code at 1/S, so a short run counts them all) renamed
    ``train_ema_codes_alive/g``: "codes used" in the report is the held-out count of the figure."""
    prefix = "codes_used/"
    return {
        f"train_ema_codes_alive/{k[len(prefix) :]}": v
        for k, v in summary.items()
        if k.startswith(prefix)
    }


def _policy_names(labels: int) -> dict[str, str]:
    return {
        "expert": "expert (data)",
        "random": "uniform random",
        "label_bc": f"label-only BC ({labels} labels)",
        "lapo_decoded": f"LAPO decoded ({labels} labels)",
        "lapo_pseudo_label": f"LAPO decoded + pseudo-label fine-tuning ({labels} labels)",
    }


def _summary_section(rep, metrics: dict, codebook_size: int) -> None:
    """The headline figures first: latent probe, code use, normalized returns, wall time."""
    lam, returns = metrics["lam"], metrics["returns"]
    rows = []
    if "probe_mlp_accuracy" in lam:  # the data had true actions
        rows.append(
            [
                "latent probe accuracy (MLP, held-out)",
                f"{lam['probe_mlp_accuracy']:.3f} (frame-difference baseline "
                f"{lam['frame_difference_mlp_accuracy']:.3f}, majority "
                f"{lam['majority_accuracy']:.3f})",
            ]
        )
    elif "probe_mlp_r2" in lam:  # continuous actions: regression probes
        rows.append(
            [
                "latent probe R^2 (MLP regression of the [-1, 1]-scaled action, held-out)",
                f"{lam['probe_mlp_r2']:.3f} (frame-difference baseline "
                f"{lam['frame_difference_mlp_r2']:.3f})",
            ]
        )
    if "expert_origin" in metrics:
        rows.append(["expert (records the data)", metrics["expert_origin"]])
    if "test/fdm_mse" in lam:
        rows.append(["next-frame MSE of the FDM (held-out)", f"{lam['test/fdm_mse']:.5f}"])
    if "test/decoder_accuracy" in metrics["decode"]:
        rows.append(
            [
                "decoded action accuracy (held-out labelled transitions)",
                f"decoder on IDM latents {metrics['decode']['test/decoder_accuracy']:.3f}, "
                f"decoded policy {metrics['decode']['test/decoded_policy_accuracy']:.3f}",
            ]
        )
    codes = _codebook_summary(lam, codebook_size)
    if codes:
        rows.append(["codes used per codebook (held-out, as in the codebook figure)", codes])
    for key, name in _policy_names(metrics["decode"].get("labels", 0)).items():
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


def _data_text(config) -> str:
    """The configuration table's data row: the recording, or the given dataset."""
    if getattr(config, "data", None):
        return (
            f"the given dataset {config.data} (not copied; its manifest digest is in pipeline.json)"
        )
    return (
        f"{config.frames} frames of the expert{_temperature_note(config)} in {config.env}, "
        f"{config.num_envs} envs, seed {config.seed}"
    )


def _lam_options(lam) -> str:
    """The stage-1 departures from the paper that are on, as ``"; ..."`` (empty when none)."""
    options = [
        *([f"IDM IMPALA x{lam.idm_multiplier}"] if lam.idm_multiplier else []),
        *(["IDM also sees frame differences"] if lam.idm_frame_differences else []),
        *(["FDM predicts the change from o_t"] if lam.fdm_residual else []),
        *(["dead codes restarted"] if lam.restart_dead_codes else []),
    ]
    return "".join(f"; {o}" for o in options)


def _config_section(rep, config, decoded: bool = True) -> None:
    """The settings that matter in one table; every field in a folded JSON block.

    The precision is the one computed on this machine's default device, where ``lapo run``
    trains every stage (the report is written by the same run).
    """
    from lapo.device import default_device
    from lapo.pipeline.plan import stage_configs

    device = default_device()
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
            ["data", _data_text(config)],
            ["stage 1: IDM + FDM", f"size {lam.size}, k={lam.context}{_lam_options(lam)}; "
             f"{quantizer}; {lam.steps} updates of {lam.batch_size}, lr {lam.learning_rate:g}, "
             f"{precision_text(lam.bf16, device)}"],
            ["stage 2: latent BC", f"{bc.encoder} x{bc.multiplier} ({bc.features} features), "
             f"{bc.target} target, {bc.steps} updates of {bc.batch_size}, lr {bc.learning_rate:g}, "
             f"{precision_text(bc.bf16, device)}"],
            ["stage 3: offline decoding", (f"MLP {dec.hidden} on {dec.labels} labels "
             f"({dec.validation_fraction:.0%} for early stopping); label-only BC "
             f"{dec.bc_steps} updates" + (f"; labels from {config.labels_from}"
                                          if getattr(config, "labels_from", None) else ""))
             if decoded else "skipped: no action labels (--labels-from DIR)"],
            ["evaluation", "none: nothing to play (the run trained on given data)"
             if getattr(config, "data", None) else f"{config.eval_episodes} episodes per "
             "policy, sampling from the policy's softmax; 95% CIs are Student t intervals of the "
             "mean"],
        ],
    )  # fmt: skip
    full = {
        "run": {
            k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(config).items()
        },
        **{k: dataclasses.asdict(v) for k, v in cfgs.items()},
    }
    rep.code(json.dumps(full, indent=1, default=str), collapsed="every setting (JSON)")


def _lam_section(
    rep,
    run_dir: Path,
    figures: Path,
    quality: dict,
    latent: dict,
    metrics: dict,
    codebook_size: int,
) -> None:
    """Stage 1: training curves, probes, latent map, FDM predictions, codebook usage.

    ``latent`` is ``_latent_figures``'s result; ``metrics`` the report's (its ``lam`` entries).
    """
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
    if "probe_mlp_r2" in quality:  # continuous actions: regression probes
        rep.table(
            ["probe (held-out)", "R^2 of the [-1, 1]-scaled action"],
            [["linear on latents", quality["probe_linear_r2"]],
             ["MLP (128, 128) on latents", quality["probe_mlp_r2"]],
             ["MLP on 4x-pooled frame difference (baseline)",
              quality["frame_difference_mlp_r2"]]],
        )  # fmt: skip
    elif quality:
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
    else:
        rep.paragraph("No action probes: the data have no true actions to probe the latents for.")
    m = latent["latent_map"]
    rep.figure(
        m.path,
        f"Pre-quantization latent actions of {m.num_points} held-out transitions "
        f"({m.method.upper()}), each coloured by {latent['map_colour']}.",
    )
    if "fdm" in latent:
        rep.figure(
            latent["fdm"],
            "FDM predictions of o_(t+1) under the window's own latent and "
            "under each of the 4 most used codes, next to the real next frame.",
        )
        rep.table(["code", "indices (codebook 1 | codebook 2)"], latent["fdm_codes"])
        lam = metrics["lam"]
        rep.figure(
            latent["codebook"],
            f"Code usage per codebook: {_codebook_summary(lam, codebook_size)}.",
        )
        rep.table(
            ["codebook", "codes used (held-out, as in the figure)", "perplexity (held-out)",
             "codes alive in training (usage EMA above the dead-code threshold)"],
            _codebook_rows(lam, codebook_size),
        )  # fmt: skip
        rep.paragraph(
            '"Codes used" in this report is the held-out count of the figure. The training '
            "count (`codes_used/g` in `lam/metrics.jsonl`, `train_ema_codes_alive/g` in "
            "`metrics.json`) counts codes whose usage moving average is above the dead-code "
            "threshold; that average starts with every code at an equal share and decays slowly, "
            "so after a short run it still counts codes that are no longer chosen."
        )


def _policy_sections(rep, run_dir: Path, figures: Path, decode: dict, metrics: dict) -> None:
    """Stage 2 curves, stage 3 decoding accuracy and confusion matrix, the returns."""
    from lapo.eval import plots

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
    if not decode:
        rep.heading("Stage 3: offline decoding")
        rep.paragraph(
            "Skipped: the run has no action labels (pass `--labels-from DIR`, a small "
            "action-labelled dataset of the same source, to train and measure the decoder)."
        )
    else:
        _decode_section(rep, figures, decode)
    if not metrics["returns"]:
        rep.heading("Returns")
        rep.paragraph(
            "Not measured: the run trained on a given dataset, so there is no game to play the "
            "policies in (`lapo run --env GAME` records an expert and measures returns)."
        )
        return
    _returns_section(rep, figures, decode, metrics)


def _decode_section(rep, figures: Path, decode: dict) -> None:
    """Stage 3 decoding accuracy and the confusion matrix."""
    from lapo.eval import plots

    rep.heading("Stage 3: offline decoding")
    if "test/decoder_r2" in decode:  # continuous actions: regression, no confusion matrix
        rep.paragraph(
            f"{decode['labels']} labelled transitions; the decoder and label-only BC regress the "
            "action scaled to [-1, 1] by mean squared error. Held-out R^2: decoder on IDM "
            f"latents {decode['test/decoder_r2']:.3f}, decoded policy on o_t "
            f"{decode['test/decoded_policy_r2']:.3f}, label-only BC on o_t "
            f"{decode.get('test/label_bc_r2', float('nan')):.3f}."
        )
        return
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


def _returns_section(rep, figures: Path, decode: dict, metrics: dict) -> None:
    """The returns table and figure."""
    from lapo.eval import return_plots

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
    from lapo.pipeline.plan import stage_configs

    run_dir, report_dir = Path(run_dir), Path(report_dir)
    figures = report_dir / "figures"
    metrics, raw = _collect_metrics(config, run_dir)
    own = getattr(config, "data", None)
    latent = _latent_figures(
        run_dir, figures, config.hide_noop, data_dir=Path(own) if own else None
    )
    metrics["lam"] |= latent.get("codebook_metrics", {})
    codebook_size = stage_configs(config)["lam"].codebook_size
    data, game = metrics["data"], config.env
    if own:
        rep = Report(f"LAPO on {Path(own).name} (preset {config.preset})")
        rep.banner(BANNER_HEADING, report_warnings(metrics))
        rep.paragraph(
            f"Generated by `lapo run --data` on {metrics['created']} from the dataset {own} "
            f"({data['frames']:,} frames in {data['episodes']:,} episodes, manifest sha256 "
            f"{data['manifest_sha256'][:16]}...; not copied). Nothing was played in a game."
        )
        _summary_section(rep, metrics, codebook_size)
        _config_section(rep, config, decoded=bool(raw["decode"]))
        _lam_section(rep, run_dir, figures, raw["quality"], latent, metrics, codebook_size)
        _policy_sections(rep, run_dir, figures, raw["decode"], metrics)
        return _write(rep, report_dir, metrics)
    rep = Report(f"LAPO on {game} (preset {config.preset})")
    rep.banner(BANNER_HEADING, report_warnings(metrics))
    ref = reference_returns(game)
    whose = "the paper's" if game in REFERENCE_RETURNS else "lapo's measured (lapo.envs)"
    rep.paragraph(
        f"Generated by `lapo run` on {metrics['created']}. Normalized return = (R - R_random) / "
        f"(R_expert - R_random) with {whose} reference returns for {game} (random "
        f"{ref.random if ref else 'unknown'}, expert {ref.expert if ref else 'unknown'}). "
        "Evaluation levels (episode seeds) are drawn with a seed other than the recording's."
    )
    _summary_section(rep, metrics, codebook_size)
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
    _lam_section(rep, run_dir, figures, raw["quality"], latent, metrics, codebook_size)
    _policy_sections(rep, run_dir, figures, raw["decode"], metrics)
    _optional_sections(rep, run_dir, figures, metrics)
    return _write(rep, report_dir, metrics)


def _write(rep, report_dir: Path, metrics: dict) -> dict:
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
        _ilpo_section(rep, run_dir / "online" / "ilpo" / "offline")


def _ilpo_section(rep, offline_dir: Path) -> None:
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


def load_run_config(run_dir: str | Path):
    """The ``RunConfig`` of the run in ``run_dir``, from its ``run_config.json``.

    Runs written before that file existed are read from ``pipeline.json``: the game from the
    recording's settings and the preset whose stage-1 settings match the recorded ones.

    Raises:
        FileNotFoundError: ``run_dir`` has no ``pipeline.json`` (not a ``lapo run`` directory).
        ValueError: an old run whose stage-1 settings match no preset.
    """
    from lapo.pipeline.plan import RUN_PRESETS, RunConfig, stage_configs

    run_dir = Path(run_dir)
    if not (run_dir / "pipeline.json").is_file():
        raise FileNotFoundError(f"{run_dir}: no pipeline.json (expected a `lapo run` directory)")
    saved = run_dir / "run_config.json"
    if saved.is_file():
        fields = json.loads(saved.read_text())
        fields["sweep"] = tuple(fields.get("sweep") or ())
        known = {f.name for f in dataclasses.fields(RunConfig)}
        return RunConfig(**{k: v for k, v in fields.items() if k in known})
    stages = json.loads((run_dir / "pipeline.json").read_text())["stages"]
    collect = stages.get("collect", {}).get("settings", {})
    lam = stages.get("lam", {}).get("settings", {})
    for preset in RUN_PRESETS:
        config = RunConfig(env=collect.get("env", "coinrun"), preset=preset, out=run_dir)
        wanted = json.loads(
            json.dumps(dataclasses.asdict(stage_configs(config)["lam"]), default=str)
        )
        if all(lam.get(k) == v for k, v in wanted.items() if k != "steps"):
            return dataclasses.replace(config, lam_steps=lam.get("steps"))
    raise ValueError(f"{run_dir}: no run_config.json and its stage-1 settings match no preset")


def rebuild_report(run_dir: str | Path) -> dict:
    """Write the report of the run in ``run_dir`` again (``lapo report RUN_DIR``), into
    ``run_dir/report``, from what its stages left; stages 1 and 2 must have finished.

    Returns: ``{"report": path of report.html}``.

    Raises:
        FileNotFoundError: not a ``lapo run`` directory.
        ValueError: stage 1 or 2 has not finished in it.
        lapo.safety.InUseError: another lapo process holds ``run_dir``.
    """
    from lapo.safety import exclusive

    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    stages = json.loads((run_dir / "pipeline.json").read_text())["stages"]
    missing = [s for s in ("collect", "lam", "bc") if s not in stages]
    if missing:
        raise ValueError(
            f"{run_dir}: stage(s) {', '.join(missing)} not finished; a report needs stages 1 "
            "and 2 (rerun the `lapo run` command to finish them)"
        )
    from lapo.pipeline.run_log import log_run

    config = dataclasses.replace(config, out=run_dir, wandb=False)  # the run mirrored it
    with exclusive(run_dir):
        summary = build_report(config, run_dir, run_dir / "report")
        log_run(config, run_dir, run_dir / "report")
        return summary
