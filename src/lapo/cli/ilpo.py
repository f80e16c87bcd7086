"""``lapo ilpo``: the ILPO baseline (Edwards et al. 2019; LAPO paper section 6.1, appendix A.4).

Every ``ILPOConfig`` field is an option (``lapo.cli.options``); the preset fills the rest.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lapo.cli.common import HelpFormatter, add_training_options, budget_seconds, env_name
from lapo.cli.options import add_config_options, config_from_args
from lapo.envs.games import GAMES


def _add_ilpo(sub: argparse._SubParsersAction) -> None:
    from lapo.config import ILPO_PRESETS, ILPOConfig

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
        "--preset", choices=sorted(ILPO_PRESETS),
        help="paper (K=15, IMPALA x4, 70k updates, 1M online steps), cpu (2 CPU cores) or smoke "
        "(tests); default: paper with a GPU, cpu without",
    )  # fmt: skip
    p.add_argument("--out", type=Path, default=Path("runs/ilpo"), help="run directory")
    add_training_options(p, " (each phase gets the budget)")
    add_config_options(p, ILPOConfig, ILPO_PRESETS, choices={"env": GAMES},
                       types_={"env": env_name}, required=("env",))  # fmt: skip
    p.set_defaults(func=_run_ilpo)


def _run_ilpo(args: argparse.Namespace) -> str | None:
    from lapo.config import ILPO_PRESETS, ILPOConfig
    from lapo.device import default_preset
    from lapo.stages.ilpo import run_ilpo

    preset = args.preset or default_preset()
    config = config_from_args(ILPOConfig, ILPO_PRESETS, preset, args)
    result = run_ilpo(config, args.data, args.out, resume=args.resume,
                      time_budget_s=budget_seconds(args.time_budget),
                      progress=not args.no_progress, device=args.device)  # fmt: skip
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
