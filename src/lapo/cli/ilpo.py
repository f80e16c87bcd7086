"""``lapo ilpo``: the ILPO baseline (Edwards et al. 2019; LAPO paper section 6.1, appendix A.4).

Options are ``ILPOConfig`` fields (their meaning is in its docstring); the preset fills the rest.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lapo.cli.common import HelpFormatter, budget_seconds
from lapo.envs.games import GAMES

#: ``ILPOConfig`` fields offered as options: (flag type, help).
_OPTIONS: dict[str, tuple[type, str]] = {
    "steps": (int, "offline updates"),
    "batch_size": (int, "transitions per offline update"),
    "learning_rate": (float, "offline Adam step size"),
    "num_latents": (int, "K, discrete latent actions (paper preset: 15)"),
    "online_steps": (int, "environment steps of the online phase (0: offline only)"),
    "num_envs": (int, "parallel environments of the online phase"),
    "num_levels": (int, "training levels of the online phase, 0 = all"),
    "exploration": (float, "probability of a uniform random action online"),
    "eval_episodes": (int, "episodes per held-out evaluation"),
    "seed": (int, "initialization, data-order and environment seed"),
}


def _add_ilpo(sub: argparse._SubParsersAction) -> None:
    from lapo.config import ILPO_PRESETS

    p = sub.add_parser(
        "ilpo",
        help="the ILPO baseline: latent policy from observation, then online action remapping",
        description="ILPO (Edwards et al. 2019), LAPO's baseline. Offline, on a dataset's "
        "(o_t, o_(t+1)) pairs without actions: a forward model over K discrete latents trained "
        "with the min-over-latents loss and a latent policy trained with the expected-transition "
        "loss; then the collapse diagnostic of the LAPO paper's appendix A.4 (how often each "
        "latent attains the minimum, predictions per latent) in OUT/offline. Online, in the "
        "game: an action-remapping network learns the true action of each latent from the "
        "agent's own transitions (OUT/online, an acting policy for lapo evaluate).",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--data", required=True, type=Path, help="dataset directory (lapo collect)")
    p.add_argument(
        "--env", required=True, choices=GAMES, metavar="GAME",
        help="Procgen game of the online phase (the dataset's game)",
    )  # fmt: skip
    p.add_argument(
        "--preset", choices=sorted(ILPO_PRESETS),
        help="paper (K=15, IMPALA x4, 70k updates, 1M online steps), cpu (2 CPU cores) or smoke "
        "(tests); default: paper with a GPU, cpu without",
    )  # fmt: skip
    p.add_argument("--out", type=Path, default=Path("runs/ilpo"), help="run directory")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument(
        "--time-budget", type=float, metavar="MINUTES",
        help="stop with a checkpoint after this many minutes (per phase; resume later)",
    )  # fmt: skip
    for name, (kind, text) in _OPTIONS.items():
        p.add_argument(f"--{name.replace('_', '-')}", type=kind, help=f"{text} (default: preset)")
    p.add_argument("--no-bf16", action="store_true", help="train in fp32")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.set_defaults(func=_run_ilpo)


def ilpo_config_from_args(args: argparse.Namespace):
    """The ``ILPOConfig`` of parsed ``ilpo`` arguments: the preset, then the options given."""
    import torch

    from lapo.config import ILPO_PRESETS, ILPOConfig

    preset = args.preset or ("paper" if torch.cuda.is_available() else "cpu")
    given = {name: getattr(args, name) for name in _OPTIONS if getattr(args, name) is not None}
    if args.no_bf16:
        given["bf16"] = False
    return ILPOConfig(**{**ILPO_PRESETS[preset], "env": args.env, **given}), preset


def _run_ilpo(args: argparse.Namespace) -> str | None:
    from lapo.stages.ilpo import run_ilpo

    config, preset = ilpo_config_from_args(args)
    result = run_ilpo(config, args.data, args.out, resume=args.resume,
                      time_budget_s=budget_seconds(args.time_budget),
                      progress=not args.no_progress)  # fmt: skip
    offline, online = result["offline"], result["online"] or {}
    keys = ("argmin_max_fraction", "effective_latents", "argmin_action_accuracy",
            "majority_accuracy")  # fmt: skip
    print(f"{args.out}/offline ({preset}): "
          + ", ".join(f"{k} {offline[k]:.3f}" for k in keys if k in offline)
          + "; figures collapse.png, fdm_latents.png")  # fmt: skip
    if "return/eval_normalized" in online:
        print(f"{args.out}/online: normalized return {online['return/eval_normalized']:.3f} "
              f"after {online['env_steps']:,} env steps")  # fmt: skip
    return result["stop_reason"]


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``ilpo`` to the ``lapo`` subcommands."""
    _add_ilpo(sub)
