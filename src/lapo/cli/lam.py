"""``lapo train-lam``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from lapo.cli.common import HelpFormatter, budget_seconds

if TYPE_CHECKING:
    from lapo.config import LAMConfig


def _add_train_lam(sub: argparse._SubParsersAction) -> None:
    from lapo.config import LAM_PRESETS

    p = sub.add_parser(
        "train-lam",
        help="stage 1: train the latent action model (IDM + VQ + FDM)",
        description="Train LAPO's latent action model (paper section 4.1) on a dataset: the IDM "
        "infers a latent action from o_(t-k)..o_(t+1), vector quantization bottlenecks it, the "
        "FDM predicts o_(t+1) from o_(t-k)..o_t and the quantized latent. No true actions are "
        "used; when the data has them, held-out probe accuracy is reported at the end. Runs "
        "under torchrun (DDP) unchanged.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--data", required=True, type=Path, help="dataset directory")
    p.add_argument(
        "--preset",
        choices=sorted(LAM_PRESETS),
        help="paper (the paper's sizes and schedule), cpu (2 CPU cores, ~15 min) or "
        "smoke (tests); default: paper with a GPU, cpu without",
    )
    p.add_argument("--out", type=Path, default=Path("runs/lam"), help="run directory")
    p.add_argument("--resume", action="store_true", help="continue the run in --out exactly")
    p.add_argument(
        "--time-budget",
        type=float,
        metavar="MINUTES",
        help="stop with a checkpoint after this many minutes (the learning rate decays over "
        "--steps, so set --steps to about what fits in the budget)",
    )
    p.add_argument("--steps", type=int, help="updates (overrides the preset)")
    p.add_argument("--batch-size", type=int, help="windows per update (overrides the preset)")
    p.add_argument("--learning-rate", type=float, help="peak learning rate (overrides the preset)")
    p.add_argument(
        "--quantizer",
        choices=("vq", "none", "fsq"),
        help="vq (paper), none (no-VQ ablation) or fsq",
    )
    p.add_argument(
        "--restart-dead-codes",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="re-seed unused codes from the batch (default: the preset's; off in paper)",
    )
    p.add_argument(
        "--fdm-residual",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the FDM predicts o_(t+1) as o_t plus a change (default: the preset's; off in paper)",
    )
    p.add_argument(
        "--idm-frame-differences",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the IDM also sees o_(i+1) - o_i of consecutive frames (default: the preset's; "
        "off in paper)",
    )
    p.add_argument(
        "--idm-multiplier",
        type=int,
        help="the IDM's IMPALA channel multiplier (default: the preset's; paper 4, cpu 2)",
    )
    p.add_argument("--context", type=int, help="k, past frames before o_t (paper 1)")
    p.add_argument(
        "--num-latents",
        type=int,
        help="discrete latents per codebook, the bottleneck's width (paper and cpu: 4)",
    )
    p.add_argument(
        "--code-dim",
        type=int,
        help="dimension of one code (paper and cpu: 16); the latent action has "
        "codebooks x latents x code-dim entries",
    )
    p.add_argument(
        "--probe-samples",
        type=int,
        help="held-out windows for the final latent-quality probes (overrides the preset)",
    )
    p.add_argument("--no-bf16", action="store_true", help="train in fp32")
    p.add_argument("--seed", type=int, help="seed (default 0)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_run_train_lam)


def _preset(args: argparse.Namespace) -> str:
    """``--preset``, else ``paper`` when a GPU is visible and ``cpu`` without."""
    import torch

    return args.preset or ("paper" if torch.cuda.is_available() else "cpu")


def lam_config_from_args(args: argparse.Namespace) -> LAMConfig:
    """The ``LAMConfig`` of parsed ``train-lam`` arguments: the preset, then the options given."""
    from lapo.config import LAM_PRESETS, LAMConfig

    overrides = {
        "steps": args.steps, "batch_size": args.batch_size, "learning_rate": args.learning_rate,
        "quantizer": args.quantizer, "context": args.context, "seed": args.seed,
        "bf16": False if args.no_bf16 else None,
        "restart_dead_codes": args.restart_dead_codes,
        "fdm_residual": args.fdm_residual,
        "idm_frame_differences": args.idm_frame_differences,
        "idm_multiplier": args.idm_multiplier,
        "probe_samples": args.probe_samples,
        "num_latents": args.num_latents, "code_dim": args.code_dim,
    }  # fmt: skip
    given = {k: v for k, v in overrides.items() if v is not None}
    return LAMConfig(**{**LAM_PRESETS[_preset(args)], **given})


def _run_train_lam(args: argparse.Namespace) -> str | None:
    from lapo.stages.lam import train_lam

    budget = budget_seconds(args.time_budget)
    config, preset = lam_config_from_args(args), _preset(args)
    metrics = train_lam(
        config,
        args.data,
        args.out,
        resume=args.resume,
        time_budget_s=budget,
        progress=not args.no_progress,
    )
    keys = ("test/fdm_mse", "test/psnr", "probe_linear_accuracy", "probe_mlp_accuracy", "nmi")
    print(
        f"{args.out} ({preset}): "
        + ", ".join(f"{k} {metrics[k]:.4f}" for k in keys if isinstance(metrics.get(k), float))
    )
    return metrics.get("stop_reason")


def _add_probe_lam(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "probe-lam",
        help="latent-quality probes of a trained latent action model on a labelled dataset",
        description="How much of the true action a trained latent action model's latents carry "
        "(paper section 6.3), on a dataset with true actions, e.g. a second recording of the "
        "game: linear and MLP (128, 128) probe accuracy (each trained on one half of the "
        "windows, tested on the other), NMI of codes and actions, the per-code action histogram "
        "and an MLP on the frame difference as a reference. On the training dataset itself only "
        "the run's held-out episodes are used. The probes need many windows: with a few "
        "thousand they underestimate what the latents carry.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("lam", type=Path, help="run directory or checkpoint of lapo train-lam")
    p.add_argument("--data", required=True, type=Path, help="dataset with true actions")
    p.add_argument("--samples", type=int, default=32768, help="windows drawn for the probes")
    p.add_argument(
        "--out", type=Path, help="write the result as JSON here (default: print it only)"
    )
    p.set_defaults(func=_run_probe_lam)


def _run_probe_lam(args: argparse.Namespace) -> None:
    from lapo.eval.latent_quality import probe_lam, summary_line

    result = probe_lam(args.lam, args.data, samples=args.samples, out=args.out)
    where = "held-out episodes of the training data" if result["held_out_split"] else "all episodes"
    print(f"{args.data} ({where}), {summary_line(result)}")
    if args.out:
        print(f"wrote {args.out}")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``train-lam`` and ``probe-lam`` to the ``lapo`` subcommands."""
    _add_train_lam(sub)
    _add_probe_lam(sub)
