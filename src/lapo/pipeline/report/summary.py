"""The report's head: the metrics of a run (``metrics.json``), the summary table of headline
figures and the configuration table."""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

from lapo.pipeline.expert_stage import expert_origin
from lapo.pipeline.report.codes import codebook_summary, training_code_counts
from lapo.pipeline.report.stage_sections import policy_names

#: Keys of ``metrics.json`` that every report has (``sweep`` and ``online`` when they ran).
METRICS_FIELDS = ("env", "preset", "created", "data", "lam", "bc", "decode", "returns", "seconds")


def collect_metrics(config, run_dir: Path) -> tuple[dict, dict]:
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
        | training_code_counts(stages["lam"]["summary"]),
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
    if raw["returns"]:  # the same levels for every policy: paired differences
        from lapo.eval.evaluate import paired_differences

        metrics["paired"] = paired_differences(raw["returns"], config.env)
    if getattr(config, "data", None):  # given data: no expert recorded it
        metrics["data_origin"] = f"the given dataset {config.data}"
    else:
        metrics["expert_origin"] = expert_origin(config, stages)
    if "expert" in stages:
        metrics["expert_stage"] = stages["expert"]["summary"]
    if "online" in stages:
        metrics["online"] = stages["online"]["summary"]
        metrics["online_steps"] = stages["online"]["settings"]["steps"]
    return metrics, raw


def summary_section(rep, metrics: dict, codebook_size: int) -> None:
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
    if "data_origin" in metrics:
        rows.append(["data", metrics["data_origin"]])
    if "test/fdm_mse" in lam:
        rows.append(["next-frame MSE of the FDM (held-out)", f"{lam['test/fdm_mse']:.5f}"])
    if "test/relative_mse" in metrics.get("bc", {}):
        rows.append(
            [
                "latent policy, held-out relative MSE (stage 2; 1 = the mean latent's)",
                f"{metrics['bc']['test/relative_mse']:.2f}",
            ]
        )
    if "test/decoder_accuracy" in metrics["decode"]:
        rows.append(
            [
                "decoded action accuracy (held-out labelled transitions)",
                f"decoder on IDM latents {metrics['decode']['test/decoder_accuracy']:.3f}, "
                f"decoded policy {metrics['decode']['test/decoded_policy_accuracy']:.3f}",
            ]
        )
    codes = codebook_summary(lam, codebook_size)
    if codes:
        rows.append(["codes used per codebook (held-out, as in the codebook figure)", codes])
    for key, name in policy_names(metrics["decode"].get("labels", 0)).items():
        if key in returns:
            r = returns[key]
            raw = f"{r['mean']:.2f} ± {r['ci95']:.2f}"
            rows.append(
                [
                    f"normalized return, {name}",
                    f"{r['normalized']:.3f} ± {r['normalized_ci95']:.3f} "
                    f"(return {raw}, {r['episodes']} episodes)",
                ]
                if math.isfinite(r["normalized"])
                else [f"return, {name}", f"{raw} ({r['episodes']} episodes)"]
            )
    if "online" in metrics:
        rows.append(
            [
                "normalized return after online training (mean over seeds)",
                ", ".join(f"{name} {v:.3f}" for name, v in metrics["online"].items())
                + f" ({metrics['online_steps']:,} env steps)",
            ]
        )
    seconds = metrics["seconds"]
    per_stage = ", ".join(f"{s} {v / 60:.1f}" for s, v in seconds.items() if s != "report")
    rows.append(["wall time (minutes)", f"{sum(seconds.values()) / 60:.1f} ({per_stage})"])
    rep.heading("Summary")
    rep.table(["", "value (95% CI)"], rows)


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


def lam_options(lam) -> str:
    """The stage-1 departures from the paper that are on, as ``"; ..."`` (empty when none)."""
    options = [
        *([f"IDM IMPALA x{lam.idm_multiplier}"] if lam.idm_multiplier else []),
        *(["IDM also sees frame differences"] if lam.idm_frame_differences else []),
        *(["FDM predicts the change from o_t"] if lam.fdm_residual else []),
        *(["dead codes restarted"] if lam.restart_dead_codes else []),
    ]
    return "".join(f"; {o}" for o in options)


def config_section(rep, config, decoded: bool = True) -> None:
    """The settings that matter in one table; every field in a folded JSON block.

    The precision is the one computed on this machine's default device, where ``lapo run``
    trains every stage (the report is written by the same run).
    """
    from lapo.device import default_device
    from lapo.pipeline.run_config import stage_configs

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
            ["stage 1: IDM + FDM", f"size {lam.size}, k={lam.context}{lam_options(lam)}; "
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
             "policy, each on the same levels (discrete actions sampled from the softmax of "
             "its logits; continuous: a Gaussian policy samples, a regressor acts with its "
             "output); 95% CIs are Student t intervals of the mean"],
        ],
    )  # fmt: skip
    full = {
        "run": {
            k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(config).items()
        },
        **{k: dataclasses.asdict(v) for k, v in cfgs.items()},
    }
    rep.code(json.dumps(full, indent=1, default=str), collapsed="every setting (JSON)")
