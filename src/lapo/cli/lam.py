"""``lapo train-lam``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from lapo.cli.common import HelpFormatter, add_training_options, budget_seconds
from lapo.cli.options import add_config_options, add_device_option, config_from_args, json_file

if TYPE_CHECKING:
    from lapo.config import LAMConfig

#: ``LAMConfig`` fields without a ``train-lam`` option (none: every field has one).
LAM_EXCLUDE: tuple[str, ...] = ()


def _add_train_lam(sub: argparse._SubParsersAction) -> None:
    from lapo.config import LAM_PRESETS, LAMConfig

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
    add_training_options(
        p, "; the learning rate decays over --steps, so set --steps to about what fits in it"
    )
    add_config_options(p, LAMConfig, LAM_PRESETS, exclude=LAM_EXCLUDE)
    p.set_defaults(func=_run_train_lam)


def _preset(args: argparse.Namespace) -> str:
    """``--preset``, else ``lapo.device.default_preset()`` (paper with a GPU, cpu without)."""
    from lapo.device import default_preset

    return args.preset or default_preset()


def lam_config_from_args(args: argparse.Namespace) -> LAMConfig:
    """The ``LAMConfig`` of parsed ``train-lam`` arguments: the preset, then the options given."""
    from lapo.config import LAM_PRESETS, LAMConfig

    return config_from_args(LAMConfig, LAM_PRESETS, _preset(args), args, exclude=LAM_EXCLUDE)


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
        device=args.device,
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
        "--out", type=json_file, help="write the result as JSON here (default: print it only)"
    )
    add_device_option(p)
    p.set_defaults(func=_run_probe_lam)


def _run_probe_lam(args: argparse.Namespace) -> None:
    from lapo.device import resolve_device
    from lapo.eval.latent_quality import probe_lam, summary_line

    device = str(resolve_device(args.device))  # probe_lam's own default is the CPU
    result = probe_lam(args.lam, args.data, samples=args.samples, out=args.out, device=device)
    where = "held-out episodes of the training data" if result["held_out_split"] else "all episodes"
    print(f"{args.data} ({where}), {summary_line(result)}")
    if args.out:
        print(f"wrote {args.out}")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``train-lam`` and ``probe-lam`` to the ``lapo`` subcommands."""
    _add_train_lam(sub)
    _add_probe_lam(sub)
