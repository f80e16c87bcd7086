"""The report's sections of the stages: stage 1 (training curves, probes, the latent map, FDM
predictions, codebook use), stage 2 (latent BC curves), stage 3 offline (decoding accuracy,
confusion matrix) and the returns."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from lapo.envs import ACTION_MEANINGS
from lapo.pipeline.report.codes import (
    code_classes,
    codebook_rows,
    codebook_summary,
    heldout_codebook_metrics,
)


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _series(rows: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    pts = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
    return np.array([p[0] for p in pts]), np.array([p[1] for p in pts], dtype=float)


def _curves(rows: list[dict], keys: dict[str, str]) -> dict:
    return {label: s for label, key in keys.items() if len((s := _series(rows, key))[0])}


def latent_figures(
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


def lam_section(
    rep,
    run_dir: Path,
    figures: Path,
    quality: dict,
    latent: dict,
    metrics: dict,
    codebook_size: int,
) -> None:
    """Stage 1: training curves, probes, latent map, FDM predictions, codebook usage.

    ``latent`` is ``latent_figures``'s result; ``metrics`` the report's (its ``lam`` entries).
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
    if quality and "probes_skipped" not in quality:
        rep.paragraph(
            "The probes read the IDM's continuous output z_t, before quantization (the code the "
            "FDM and stage 2 take carries at most what z_t does, and the NMI row measures the "
            "codes themselves); each is trained on one half of the held-out windows and tested "
            "on the other."
        )
    if "probe_mlp_r2" in quality:  # continuous actions: regression probes
        rep.table(
            ["probe (held-out)", "R^2 of the [-1, 1]-scaled action"],
            [["linear on latents", quality["probe_linear_r2"]],
             ["MLP (128, 128) on latents", quality["probe_mlp_r2"]],
             ["MLP on 4x-pooled frame difference (baseline)",
              quality["frame_difference_mlp_r2"]]],
        )  # fmt: skip
    elif "probes_skipped" in quality:
        rep.paragraph(quality["probes_skipped"])
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
            f"Code usage per codebook: {codebook_summary(lam, codebook_size)}.",
        )
        rep.table(
            ["codebook", "codes used (held-out, as in the figure)", "perplexity (held-out)",
             "codes alive in training (usage EMA above the dead-code threshold)"],
            codebook_rows(lam, codebook_size),
        )  # fmt: skip
        rep.paragraph(
            '"Codes used" in this report is the held-out count of the figure. The training '
            "count (`codes_used/g` in `lam/metrics.jsonl`, `train_ema_codes_alive/g` in "
            "`metrics.json`) counts codes whose usage moving average is above the dead-code "
            "threshold; that average starts with every code at an equal share and decays slowly, "
            "so after a short run it still counts codes that are no longer chosen."
        )


def policy_names(labels: int) -> dict[str, str]:
    """Display names of the evaluated policies, keyed as in the metrics' ``returns``; ``labels``
    is the number of labelled transitions of stage 3 (``DecodeConfig.labels``)."""
    return {
        "expert": "expert (data)",
        "random": "uniform random",
        "label_bc": f"label-only BC ({labels} labels)",
        "lapo_decoded": f"LAPO decoded ({labels} labels)",
        "lapo_pseudo_label": f"LAPO decoded + pseudo-label fine-tuning ({labels} labels)",
    }


def policy_sections(rep, run_dir: Path, figures: Path, decode: dict, metrics: dict) -> None:
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
    names = policy_names(decode["labels"])
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
    paired = metrics.get("paired") or {}
    if paired:
        label = {k: names.get(k, k) for k in ("lapo_decoded", "label_bc", "random")}
        rep.paragraph(
            "Every policy played the same levels (one evaluation seed), so their returns are "
            "paired episode by episode; the difference of two policies' mean returns has the "
            "narrower 95% CI of the per-episode differences (Student t):"
        )
        rows = []
        for pair, d in paired.items():
            a, b = pair.split(" - ")
            rows.append([f"{label.get(a, a)} - {label.get(b, b)}", d["mean"], d["ci95"],
                         d["normalized"], d["normalized_ci95"], d["episodes"]])  # fmt: skip
        rep.table(["difference", "return", "95% CI", "normalized", "95% CI", "episodes"], rows)
