"""``lapo finetune`` and ``lapo ppo``: stage 3 online (PPO fine-tuning vs PPO from scratch)."""

from __future__ import annotations

import argparse
from pathlib import Path

from lapo.cli.common import (
    PROCGEN_CHOICES,
    PROCGEN_TYPES,
    HelpFormatter,
    add_allow_unfinished,
    add_training_options,
    budget_seconds,
)
from lapo.cli.options import add_config_options, config_from_args

#: ``FinetuneConfig`` fields the hybrid RL+SL variant alone uses (no ``ppo`` options).
HYBRID_FIELDS = ("hybrid", "lam", "hybrid_steps", "hybrid_every", "hybrid_epochs",
                 "hybrid_batch_size", "hybrid_learning_rate", "hybrid_label_smoothing")  # fmt: skip
#: ``FinetuneConfig`` fields without a ``finetune`` option: the latent policy and the latent
#: action model are input checkpoints (``--policy``, ``--lam``, resolved to absolute paths), and
#: the network fields are the latent policy's own.
FINETUNE_EXCLUDE = ("latent_policy", "lam", "encoder", "multiplier", "features")
#: ``FinetuneConfig`` fields without a ``ppo`` option (PPO from scratch starts from no policy).
PPO_SCRATCH_EXCLUDE = ("latent_policy", *HYBRID_FIELDS)
#: Old spellings kept as aliases of the generated options.
ALIASES = {"total_steps": "--steps"}


def _common(p: argparse.ArgumentParser, exclude: tuple[str, ...], learning_rate: str) -> None:
    from lapo.config import FINETUNE_PRESETS, FinetuneConfig

    p.add_argument(
        "--preset",
        default="cpu",
        choices=sorted(FINETUNE_PRESETS),
        help="paper: 4M steps, 64 envs x 256 steps; cpu: Nature-CNN, 1M steps; smoke: tests",
    )
    add_training_options(p)
    add_config_options(
        p, FinetuneConfig, FINETUNE_PRESETS, exclude=exclude, aliases=ALIASES,
        choices=PROCGEN_CHOICES, types_=PROCGEN_TYPES, required=("env",),
        help_={"learning_rate": learning_rate},
    )  # fmt: skip


def _add_finetune(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "finetune",
        help="fine-tune a latent policy online with PPO (resumable)",
        description="Stage 3 online (paper section 4.3): replace the latent policy's head by "
        "policy and value heads over the 15 actions, freeze its convolutional layers and train "
        "the fully connected layer and the heads with PPO (learning rate 0.01). Logs normalized "
        "return against environment steps and evaluates on held-out levels. Rerun with --resume "
        "to continue exactly where a run stopped.",
        formatter_class=HelpFormatter,
    )
    p.add_argument(
        "--policy", required=True, type=Path, metavar="CKPT",
        help="latent policy checkpoint or run directory (lapo train-bc)",
    )  # fmt: skip
    p.add_argument("--out", type=Path, help="run directory (default: runs/finetune-GAME)")
    p.add_argument(
        "--lam", type=Path, metavar="CKPT",
        help="latent action model checkpoint whose IDM labels the transitions (with --hybrid)",
    )  # fmt: skip
    _common(p, FINETUNE_EXCLUDE, "Adam step size of the fine-tuned layers (paper 0.01)")
    add_allow_unfinished(p, "stage-2 (--policy)")
    p.set_defaults(func=_run_finetune)


def _add_ppo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ppo",
        help="PPO from scratch on the fine-tuning network (the baseline; resumable)",
        description="PPO from scratch with the network and budget of lapo finetune, every layer "
        "trained at learning rate 5e-4 (the paper's baseline, section 6.1 and Figure 3).",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--out", type=Path, help="run directory (default: runs/ppo-GAME)")
    _common(p, PPO_SCRATCH_EXCLUDE, "Adam step size, every layer (default 5e-4, the paper's)")
    p.add_argument(
        "--network-from", type=Path, metavar="CKPT",
        help="use the encoder of this latent policy checkpoint (architecture only, not weights)",
    )  # fmt: skip
    p.set_defaults(func=_run_ppo)


def _train(config, out: Path, args: argparse.Namespace) -> str | None:
    from lapo.stages.finetune import train_finetune

    budget = budget_seconds(args.time_budget)
    metrics = train_finetune(config, out, resume=args.resume, progress=not args.no_progress,
                             time_budget_s=budget, device=args.device,
                             allow_unfinished=getattr(args, "allow_unfinished", False))  # fmt: skip
    shown = {k: round(v, 4) for k, v in metrics.items() if k.startswith("return/")}
    print(f"{out}: {shown}")
    return metrics.get("stop_reason")


def _run_finetune(args: argparse.Namespace) -> str | None:
    from lapo.config import FINETUNE_PRESETS, FinetuneConfig
    from lapo.load import latent_policy_network

    budget_seconds(args.time_budget)  # refuse a bad budget before any work
    if args.lam is not None and not args.hybrid:
        raise ValueError("--lam is only used with --hybrid")
    network = latent_policy_network(args.policy)  # the latent policy's encoder fields
    fixed = {
        **network,
        "latent_policy": str(args.policy.resolve()),
        "lam": str(args.lam.resolve()) if args.lam else None,
    }
    config = config_from_args(
        FinetuneConfig, FINETUNE_PRESETS, args.preset, args, exclude=FINETUNE_EXCLUDE, **fixed
    )
    return _train(config, args.out or Path("runs") / f"finetune-{args.env}", args)


def _run_ppo(args: argparse.Namespace) -> str | None:
    from lapo.config import FINETUNE_PRESETS, SCRATCH_LEARNING_RATE, FinetuneConfig
    from lapo.load import latent_policy_network

    budget_seconds(args.time_budget)  # refuse a bad budget before any work
    fixed = {"learning_rate": SCRATCH_LEARNING_RATE}
    if args.network_from is not None:
        fixed |= latent_policy_network(args.network_from)
    config = config_from_args(
        FinetuneConfig, FINETUNE_PRESETS, args.preset, args, exclude=PPO_SCRATCH_EXCLUDE, **fixed
    )
    return _train(config, args.out or Path("runs") / f"ppo-{args.env}", args)


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``finetune`` and ``ppo`` to the ``lapo`` subcommands."""
    _add_finetune(sub)
    _add_ppo(sub)
