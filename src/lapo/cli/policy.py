"""``lapo train-bc``, ``lapo decode-offline`` and ``lapo evaluate``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lapo.cli.common import (
    ENV_CHOICES,
    HelpFormatter,
    add_allow_unfinished,
    add_training_options,
    budget_seconds,
    env_name,
    label_counts,
)
from lapo.cli.options import (
    add_config_options,
    add_device_option,
    at_least,
    config_from_args,
    json_file,
    with_device,
)

#: ``BCConfig`` fields without a ``train-bc`` option (none: every field has one).
BC_EXCLUDE: tuple[str, ...] = ()
#: ``DecodeConfig`` fields without a ``decode-offline`` option (none: every field has one).
DECODE_EXCLUDE: tuple[str, ...] = ()


def _add_train_bc(sub: argparse._SubParsersAction) -> None:
    from lapo.config import BC_PRESETS, BCConfig

    p = sub.add_parser(
        "train-bc",
        help="stage 2: latent behaviour cloning from a trained latent action model",
        description="Train a latent policy pi(o_t) to regress the frozen IDM's latent action "
        "z_t with MSE (paper section 4.2). No true action is used. The IDM's labels are cached "
        "in the run directory once.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--lam", required=True, type=Path, help="stage-1 run directory or checkpoint")
    p.add_argument("--data", required=True, type=Path, help="dataset directory")
    p.add_argument(
        "--preset",
        choices=sorted(BC_PRESETS),
        help="paper (IMPALA x4, 60k updates), cpu or smoke; default: paper with a GPU, cpu without",
    )
    p.add_argument("--out", type=Path, default=Path("runs/bc"), help="run directory")
    add_training_options(p)
    add_allow_unfinished(p, "stage-1 (--lam)")
    add_config_options(p, BCConfig, BC_PRESETS, exclude=BC_EXCLUDE)
    p.set_defaults(func=_run_train_bc)


def _run_train_bc(args: argparse.Namespace) -> str | None:
    from lapo.config import BC_PRESETS, BCConfig
    from lapo.device import default_preset
    from lapo.stages.bc import train_bc

    budget = budget_seconds(args.time_budget)
    preset = args.preset or default_preset()
    config = config_from_args(BCConfig, BC_PRESETS, preset, args, exclude=BC_EXCLUDE)
    metrics = train_bc(
        config,
        args.lam,
        args.data,
        args.out,
        resume=args.resume,
        allow_unfinished=args.allow_unfinished,
        time_budget_s=budget,
        progress=not args.no_progress,
        device=args.device,
    )
    shown = ", ".join(
        f"{k} {v:.4f}" for k, v in metrics.items() if k.startswith(("train/", "test/"))
    )
    print(f"{args.out} ({preset}): {shown}")
    return metrics.get("stop_reason")


def _add_decode(sub: argparse._SubParsersAction) -> None:
    from lapo.config import DecodeConfig

    p = sub.add_parser(
        "decode-offline",
        help="stage 3: decode latent actions to true actions with a few labels",
        description="Train an MLP decoder from the IDM's latent action to the true action on N "
        "labelled transitions and compose it with the latent policy (paper section 4.3); also "
        "train the label-only behaviour-cloning baseline on the same labels. With --sweep, "
        "evaluate the decoded policy (and the baseline on the same labels and levels) in the "
        "game for several label counts and seeds instead (the paper's Figure 4).",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--policy", required=True, type=Path, help="stage-2 run directory/checkpoint")
    p.add_argument("--lam", required=True, type=Path, help="stage-1 run directory/checkpoint")
    p.add_argument("--data", required=True, type=Path, help="dataset with true actions")
    p.add_argument("--out", type=Path, default=Path("runs/decode"), help="output directory")
    p.add_argument("--no-baseline", action="store_true", help="skip the label-only BC baseline")
    p.add_argument(
        "--sweep",
        type=label_counts,
        metavar="N,N,...",
        help="label counts for the sweep, e.g. 16,32,64,128,256,512,1024",
    )
    p.add_argument("--seeds", type=int, default=3, help="sweep: seeds per label count")
    p.add_argument(
        "--episodes", type=at_least(1), default=32, help="sweep: episodes per evaluation"
    )
    p.add_argument("--no-progress", action="store_true", help="sweep: hide the progress bars")
    add_allow_unfinished(p, "stage-2 (--policy)")
    add_device_option(p)
    add_config_options(p, DecodeConfig, exclude=DECODE_EXCLUDE)
    p.set_defaults(func=_run_decode)


def _run_decode(args: argparse.Namespace) -> None:
    from lapo.config import DecodeConfig

    config = config_from_args(DecodeConfig, None, None, args, exclude=DECODE_EXCLUDE)
    if args.sweep:
        from lapo.load import check_finished
        from lapo.pipeline.label_sweep import label_sweep, sweep_table
        from lapo.safety import check_disjoint, exclusive

        check_disjoint(args.out, [args.policy, args.lam, args.data])
        check_finished(args.policy, allow_unfinished=args.allow_unfinished, what="--policy")
        with exclusive(args.out):
            rows = label_sweep(
                args.policy,
                args.lam,
                args.data,
                args.out / "label_sweep.json",
                labels=args.sweep,
                seeds=tuple(range(args.seeds)),
                episodes=args.episodes,
                baseline=not args.no_baseline,
                config=config,
                progress=not args.no_progress,
                **with_device(label_sweep, args.device),
            )
        for row in sweep_table(rows):
            spread = (
                f"+- {row['normalized_sem']:.3f} (SEM over {row['seeds']} seeds; episodes alone "
                f"+- {row['normalized_ci95']:.3f}, 95%)"
                if row["seeds"] > 1
                else f"+- {row['normalized_ci95']:.3f} (one seed: 95% CI of its episodes)"
            )
            print(
                f"{row['method']:>8}, labels {row['labels']:>5}: normalized return "
                f"{row['normalized']:.3f} {spread}"
            )
        return
    from lapo.stages.decode import decode_offline

    facts = decode_offline(
        config, args.policy, args.lam, args.data, args.out, baseline=not args.no_baseline,
        allow_unfinished=args.allow_unfinished, **with_device(decode_offline, args.device),
    )  # fmt: skip
    score = "accuracy" if "test/decoded_policy_accuracy" in facts else "r2"  # continuous: R^2
    shown = "accuracy" if score == "accuracy" else "R^2"
    print(
        f"{args.out}: decoder validation {shown} "
        f"{facts['decoder'][f'validation_{score}']:.3f}; held-out {shown} of the decoded "
        f"policy {facts[f'test/decoded_policy_{score}']:.3f}"
        + (
            f", label-only BC {facts[f'test/label_bc_{score}']:.3f}"
            if f"test/label_bc_{score}" in facts
            else ""
        )
        + (
            f", after pseudo-label fine-tuning {facts['test/pseudo_label_accuracy']:.3f}"
            if "test/pseudo_label_accuracy" in facts
            else ""
        )
    )


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="roll out any policy checkpoint and report its (normalized) return",
        description="Roll out a policy checkpoint (expert, decoded, label-only BC, fine-tuned) "
        "in its game for K complete episodes; print the mean return with a 95% confidence "
        "interval and the normalized return (0 = random, 1 = the paper's expert).",
        formatter_class=HelpFormatter,
    )
    p.add_argument("policy", type=Path, metavar="POLICY", help="run directory or checkpoint")
    p.add_argument(
        "--env",
        choices=ENV_CHOICES,
        type=env_name,
        metavar="GAME",
        help="Procgen game or Gymnasium id (default: the one stored in the checkpoint)",
    )
    p.add_argument("--episodes", type=int, default=100, help="complete episodes K")
    p.add_argument("--start-level", type=int, default=0, help="first level seed")
    p.add_argument("--num-levels", type=int, default=0, help="levels, 0 = all")
    p.add_argument(
        "--seed",
        type=int,
        help="environment and sampling seed (default: lapo.eval.evaluate.EVAL_SEED, 12345)",
    )
    p.add_argument("--greedy", action="store_true", help="argmax actions instead of sampling")
    p.add_argument(
        "--temperature",
        type=float,
        default=1.0,
        help="sample from softmax(logits / T) (e.g. the T an expert recorded with)",
    )
    p.add_argument("--json", type=json_file, help="also write the result to this JSON file")
    add_device_option(p)
    p.set_defaults(func=_run_evaluate)


def _run_evaluate(args: argparse.Namespace) -> None:
    from lapo.eval.evaluate import EVAL_SEED, evaluate_checkpoint, result_dict

    if args.episodes < 1:
        raise ValueError(f"--episodes must be >= 1, got {args.episodes}")
    result = evaluate_checkpoint(
        args.policy,
        args.episodes,
        game=args.env,
        start_level=args.start_level,
        num_levels=args.num_levels,
        seed=EVAL_SEED if args.seed is None else args.seed,
        greedy=args.greedy,
        temperature=args.temperature,
        **with_device(evaluate_checkpoint, args.device),
    )
    print(result.summary())
    if args.json:
        args.json.write_text(json.dumps(result_dict(result), indent=2))


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``train-bc``, ``decode-offline`` and ``evaluate`` to the ``lapo`` subcommands."""
    _add_train_bc(sub)
    _add_decode(sub)
    _add_evaluate(sub)
