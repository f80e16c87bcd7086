"""``lapo finetune`` and ``lapo ppo``: stage 3 online (PPO fine-tuning vs PPO from scratch)."""

from __future__ import annotations

import argparse
from pathlib import Path

from lapo.cli.common import HelpFormatter, add_allow_unfinished, budget_seconds
from lapo.envs.games import GAMES


def _common(p: argparse.ArgumentParser) -> None:
    from lapo.config import FINETUNE_PRESETS

    p.add_argument(
        "--env", required=True, choices=GAMES, metavar="GAME",
        help=f"Procgen game, one of: {', '.join(GAMES)}",
    )  # fmt: skip
    p.add_argument("--steps", type=int, help="environment steps to train for (default: preset)")
    p.add_argument(
        "--preset",
        default="cpu",
        choices=sorted(FINETUNE_PRESETS),
        help="paper: 4M steps, 64 envs x 256 steps; cpu: Nature-CNN, 1M steps; smoke: tests",
    )
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument(
        "--time-budget",
        type=float,
        metavar="MINUTES",
        help="stop with a checkpoint after this many minutes (resume later)",
    )
    p.add_argument("--num-envs", type=int, help="parallel environments (default 64)")
    p.add_argument("--num-levels", type=int, help="training levels, 0 = all (default 0)")
    p.add_argument(
        "--eval-start-level", type=int, help="first held-out evaluation level (default 1000000)"
    )
    p.add_argument("--eval-every", type=int, help="updates between held-out evaluations")
    p.add_argument("--eval-episodes", type=int, help="episodes per held-out evaluation")
    p.add_argument("--no-bf16", action="store_true", help="train in fp32")
    p.add_argument("--seed", type=int, help="seed (default 0)")
    p.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


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
    _common(p)
    p.add_argument("--out", type=Path, help="run directory (default: runs/finetune-GAME)")
    p.add_argument("--learning-rate", type=float, help="of the fine-tuned layers (default 0.01)")
    p.add_argument(
        "--hybrid",
        action="store_true",
        help="the release's RL+SL variant: average the RL head's logits with a decoder head "
        "refitted on IDM labels of the agent's own transitions (needs --lam)",
    )
    p.add_argument(
        "--lam", type=Path, metavar="CKPT",
        help="latent action model checkpoint whose IDM labels the transitions (with --hybrid)",
    )  # fmt: skip
    p.add_argument(
        "--hybrid-steps", type=int, help="env steps during which the decoder is refitted"
    )
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
    _common(p)
    p.add_argument("--out", type=Path, help="run directory (default: runs/ppo-GAME)")
    p.add_argument("--learning-rate", type=float, help="Adam step size (default 5e-4)")
    p.add_argument(
        "--network-from", type=Path, metavar="CKPT",
        help="use the encoder of this latent policy checkpoint (architecture only, not weights)",
    )  # fmt: skip
    p.set_defaults(func=_run_ppo)


def _values(args: argparse.Namespace, **fixed) -> dict:
    from lapo.config import FINETUNE_PRESETS

    overrides = {
        "total_steps": args.steps, "num_envs": args.num_envs, "num_levels": args.num_levels,
        "eval_start_level": args.eval_start_level, "eval_every": args.eval_every,
        "eval_episodes": args.eval_episodes, "learning_rate": args.learning_rate,
        "seed": args.seed, "bf16": False if args.no_bf16 else None,
    }  # fmt: skip
    chosen = {k: v for k, v in overrides.items() if v is not None}
    return {**FINETUNE_PRESETS[args.preset], **fixed, **chosen}


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
    from lapo.config import FinetuneConfig
    from lapo.load import latent_policy_network

    budget_seconds(args.time_budget)  # refuse a bad budget before any work
    if args.lam is not None and not args.hybrid:
        raise ValueError("--lam is only used with --hybrid")
    network = latent_policy_network(args.policy)  # the latent policy's encoder fields
    fixed = {
        **network,
        "latent_policy": str(args.policy.resolve()),
        "hybrid": args.hybrid,
        "lam": str(args.lam.resolve()) if args.lam else None,
    }
    if args.hybrid_steps is not None:
        fixed["hybrid_steps"] = args.hybrid_steps
    config = FinetuneConfig(env=args.env, **_values(args, **fixed))
    return _train(config, args.out or Path("runs") / f"finetune-{args.env}", args)


def _run_ppo(args: argparse.Namespace) -> str | None:
    from lapo.config import SCRATCH_LEARNING_RATE, FinetuneConfig
    from lapo.load import latent_policy_network

    budget_seconds(args.time_budget)  # refuse a bad budget before any work
    fixed = {"learning_rate": SCRATCH_LEARNING_RATE}
    if args.network_from is not None:
        fixed |= latent_policy_network(args.network_from)
    config = FinetuneConfig(env=args.env, **_values(args, **fixed))
    return _train(config, args.out or Path("runs") / f"ppo-{args.env}", args)


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``finetune`` and ``ppo`` to the ``lapo`` subcommands."""
    _add_finetune(sub)
    _add_ppo(sub)
