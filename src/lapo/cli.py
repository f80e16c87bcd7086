"""The ``lapo`` command. Nothing imports this module; it only parses arguments and calls the API.

Subcommands: ``collect``, ``data import``, ``data info``, ``data verify``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from lapo import __version__
from lapo.envs.games import DISTRIBUTION_MODES, GAMES

IMPORT_FORMATS = ("auto", "video", "arrays", "lapo-release")


def _add_collect(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "collect",
        help="record a Procgen game with a policy into a dataset",
        description="Record frames, true actions, rewards and done flags of a Procgen game "
        "played by a policy, with vectorized environments, into a new lapo dataset.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--env",
        required=True,
        choices=GAMES,
        metavar="GAME",
        help=f"Procgen game, one of: {', '.join(GAMES)}",
    )
    p.add_argument(
        "--frames",
        required=True,
        type=int,
        help="frames to record (environment steps summed over all envs)",
    )
    p.add_argument("--out", required=True, type=Path, help="output dataset directory")
    p.add_argument(
        "--policy",
        default="random",
        help="'random' (uniform over the 15 actions) or a policy checkpoint path",
    )
    p.add_argument("--num-envs", type=int, default=64, help="parallel environments")
    p.add_argument(
        "--distribution-mode",
        default="easy",
        choices=DISTRIBUTION_MODES,
        help="Procgen distribution mode (the paper uses easy)",
    )
    p.add_argument("--num-levels", type=int, default=0, help="number of levels, 0 = all")
    p.add_argument("--start-level", type=int, default=0, help="first level seed")
    p.add_argument("--seed", type=int, default=0, help="level-sampler and random-policy seed")
    p.add_argument("--shard-frames", type=int, default=8192, help="frames per shard file")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing dataset at --out (only after recording succeeds)",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_run_collect)


def _add_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "data",
        help="import, inspect and verify datasets",
        description="Import, inspect and verify lapo datasets.",
    )
    data_sub = p.add_subparsers(dest="data_command", required=True, metavar="COMMAND")
    imp = data_sub.add_parser(
        "import",
        help="import video files, numpy arrays or the original LAPO release's npz chunks",
        description="Create a lapo dataset from (a) a folder of video files (mp4, webm, mkv, "
        "avi, ...), decoded with PyAV and resized, one episode per file, no actions; (b) .npy/"
        ".npz arrays (key 'frames' (N,H,W,C) uint8, optional 'actions', 'episode_starts', "
        "'rewards', 'dones'); (c) the original LAPO release's .npz chunks (keys obs, ta, done, "
        "rewards, ep_returns, values).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    imp.add_argument(
        "sources",
        nargs="+",
        type=Path,
        metavar="SRC",
        help="a folder of videos, .npy/.npz files, or release chunks (or a folder)",
    )
    imp.add_argument("--out", required=True, type=Path, help="output dataset directory")
    imp.add_argument(
        "--format",
        default="auto",
        choices=IMPORT_FORMATS,
        help="source format; auto detects it from the files",
    )
    imp.add_argument(
        "--resolution",
        type=int,
        nargs=2,
        default=(64, 64),
        metavar=("H", "W"),
        help="video frames are resized to this height and width",
    )
    imp.add_argument("--shard-frames", type=int, default=8192, help="frames per shard file")
    imp.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing dataset at --out (only after importing succeeds)",
    )
    imp.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    imp.set_defaults(func=_run_import)
    info = data_sub.add_parser(
        "info",
        help="summarize a dataset",
        description="Print a dataset's summary (checks file sizes).",
    )
    info.add_argument("path", type=Path, metavar="DIR", help="dataset directory")
    info.add_argument("--json", action="store_true", help="print the manifest as JSON instead")
    info.set_defaults(func=_run_info)
    ver = data_sub.add_parser(
        "verify",
        help="full integrity check (sha256 of every file)",
        description="Check every file of a dataset against the sha256 "
        "in its manifest. Exit status 1 on the first mismatch.",
    )
    ver.add_argument("path", type=Path, metavar="DIR", help="dataset directory")
    ver.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    ver.set_defaults(func=_run_verify)


def _add_expert(sub: argparse._SubParsersAction) -> None:
    from lapo.config import PPO_PRESETS

    p = sub.add_parser(
        "expert",
        help="train and evaluate PPO experts",
        description="Train and evaluate PPO experts for Procgen games.",
    )
    ex_sub = p.add_subparsers(dest="expert_command", required=True, metavar="COMMAND")
    tr = ex_sub.add_parser(
        "train",
        help="train a PPO expert (resumable)",
        description="Train a PPO expert (Cobbe et al. 2020 settings) with periodic evaluation on "
        "held-out levels, TensorBoard and jsonl logs and atomic checkpoints. Rerun with --resume "
        "to continue exactly where a run stopped (Ctrl-C/SIGTERM save a checkpoint first).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    tr.add_argument(
        "--env",
        required=True,
        choices=GAMES,
        metavar="GAME",
        help=f"Procgen game, one of: {', '.join(GAMES)}",
    )
    tr.add_argument("--steps", type=int, help="environment steps to train for (default: preset)")
    tr.add_argument(
        "--preset",
        default="cpu",
        choices=sorted(PPO_PRESETS),
        help="paper: IMPALA x4, 50M steps; cpu: Nature-CNN for 2 cores; smoke: tests",
    )
    tr.add_argument("--out", type=Path, help="run directory (default: runs/expert-GAME)")
    tr.add_argument("--resume", action="store_true", help="continue the run in --out")
    tr.add_argument(
        "--time-budget",
        type=float,
        metavar="MINUTES",
        help="stop with a checkpoint after this many minutes (resume later)",
    )
    tr.add_argument("--encoder", choices=("impala", "nature"), help="override the preset's")
    tr.add_argument("--multiplier", type=int, help="encoder channel multiplier")
    tr.add_argument("--num-envs", type=int, help="parallel environments (default 64)")
    tr.add_argument("--learning-rate", type=float, help="Adam step size (default 5e-4)")
    tr.add_argument("--num-levels", type=int, help="training levels, 0 = all (default 0)")
    tr.add_argument("--start-level", type=int, help="first training level (default 0)")
    tr.add_argument(
        "--eval-start-level", type=int, help="first held-out evaluation level (default 1000000)"
    )
    tr.add_argument("--eval-every", type=int, help="updates between evaluations (default 50)")
    tr.add_argument("--no-bf16", action="store_true", help="train in fp32")
    tr.add_argument("--seed", type=int, help="seed (default 0)")
    tr.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    tr.set_defaults(func=_run_expert_train)
    ev = ex_sub.add_parser(
        "eval",
        help="evaluate an expert checkpoint",
        description="Roll out an expert on held-out levels; print mean return with a 95%% CI "
        "and the normalized return.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ev.add_argument(
        "checkpoint", type=Path, metavar="CHECKPOINT", help="run directory or checkpoint path"
    )
    ev.add_argument("--episodes", type=int, default=100, help="episodes to average over")
    ev.add_argument(
        "--start-level",
        type=int,
        help="first evaluation level (default: the checkpoint's held-out levels)",
    )
    ev.add_argument("--num-levels", type=int, default=0, help="evaluation levels, 0 = all")
    ev.add_argument("--seed", type=int, default=1, help="evaluation seed")
    ev.add_argument("--json", type=Path, help="also write the result to this JSON file")
    ev.set_defaults(func=_run_expert_eval)


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
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
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
        help="stop with a checkpoint after this many minutes",
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
        action="store_true",
        help="re-seed unused codes from the batch (off in the paper)",
    )
    p.add_argument("--context", type=int, help="k, past frames before o_t (paper 1)")
    p.add_argument("--no-bf16", action="store_true", help="train in fp32")
    p.add_argument("--seed", type=int, help="seed (default 0)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_run_train_lam)


def build_parser() -> argparse.ArgumentParser:
    """The full ``lapo`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="lapo",
        description="LAPO: learning to act from videos without action labels "
        "(Schmidt & Jiang, ICLR 2024).",
    )
    parser.add_argument("--version", action="version", version=f"lapo {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_collect(sub)
    _add_data(sub)
    _add_expert(sub)
    _add_train_lam(sub)
    return parser


def _run_collect(args: argparse.Namespace) -> None:
    from lapo.config import CollectConfig
    from lapo.stages.collect import collect, format_summary

    config = CollectConfig(
        env=args.env, frames=args.frames, out=args.out, policy=args.policy,
        num_envs=args.num_envs, distribution_mode=args.distribution_mode,
        num_levels=args.num_levels, start_level=args.start_level, seed=args.seed,
        shard_frames=args.shard_frames, overwrite=args.overwrite,
    )  # fmt: skip
    summary = collect(config, progress=not args.no_progress)
    print(format_summary(config, summary))


def _run_expert_train(args: argparse.Namespace) -> None:
    from lapo.config import PPO_PRESETS, PPOConfig
    from lapo.stages.expert import train_expert

    overrides = {
        "total_steps": args.steps, "encoder": args.encoder, "multiplier": args.multiplier,
        "num_envs": args.num_envs, "learning_rate": args.learning_rate,
        "num_levels": args.num_levels, "start_level": args.start_level,
        "eval_start_level": args.eval_start_level, "eval_every": args.eval_every,
        "seed": args.seed, "bf16": False if args.no_bf16 else None,
    }  # fmt: skip
    values = {**PPO_PRESETS[args.preset], **{k: v for k, v in overrides.items() if v is not None}}
    config = PPOConfig(env=args.env, **values)
    out = args.out or Path("runs") / f"expert-{args.env}"
    budget = args.time_budget * 60 if args.time_budget else None
    metrics = train_expert(
        config, out, resume=args.resume, progress=not args.no_progress, time_budget_s=budget
    )
    shown = {k: round(v, 4) for k, v in metrics.items() if k.startswith("return/")}
    print(f"{out}: {shown}")


def _run_expert_eval(args: argparse.Namespace) -> None:
    import dataclasses

    from lapo.stages.expert import evaluate_expert, load_expert

    net, config = load_expert(args.checkpoint)
    if args.start_level is not None:
        config = dataclasses.replace(config, eval_start_level=args.start_level)
    config = dataclasses.replace(config, eval_num_levels=args.num_levels)
    result = evaluate_expert(net, config, args.episodes, seed=args.seed)
    print(result.summary())
    print(
        f"levels: start {result.start_level}, count {result.num_levels or 'all'}; "
        f"trained on start {config.start_level}, count {config.num_levels or 'all'}"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "game": result.game,
                    "episodes": len(result.returns),
                    "mean": result.mean,
                    "ci95": result.ci95,
                    "normalized": result.normalized,
                    "normalized_ci95": result.normalized_ci95,
                    "returns": result.returns.tolist(),
                    "start_level": result.start_level,
                    "num_levels": result.num_levels,
                },
                indent=2,
            )
        )


def _run_train_lam(args: argparse.Namespace) -> None:
    import torch

    from lapo.config import LAM_PRESETS, LAMConfig
    from lapo.stages.lam import train_lam

    preset = args.preset or ("paper" if torch.cuda.is_available() else "cpu")
    overrides = {
        "steps": args.steps, "batch_size": args.batch_size, "learning_rate": args.learning_rate,
        "quantizer": args.quantizer, "context": args.context, "seed": args.seed,
        "bf16": False if args.no_bf16 else None,
        "restart_dead_codes": True if args.restart_dead_codes else None,
    }  # fmt: skip
    values = {**LAM_PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}}
    config = LAMConfig(**values)
    budget = args.time_budget * 60 if args.time_budget else None
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


def _run_import(args: argparse.Namespace) -> None:
    from lapo.data.import_arrays import import_arrays
    from lapo.data.import_release import import_lapo_release
    from lapo.data.import_video import import_video_folder
    from lapo.data.sniff import detect_import_format

    fmt = args.format if args.format != "auto" else detect_import_format(args.sources)
    common = dict(
        overwrite=args.overwrite, shard_frames=args.shard_frames, progress=not args.no_progress
    )
    if fmt == "video":
        if len(args.sources) != 1:
            raise ValueError(f"video import takes one folder, got {len(args.sources)} sources")
        manifest = import_video_folder(
            args.sources[0], args.out, resolution=tuple(args.resolution), **common
        )
    elif fmt == "arrays":
        manifest = import_arrays(args.sources, args.out, **common)
    else:
        manifest = import_lapo_release(args.sources, args.out, **common)
    print(
        f"imported {manifest['num_frames']} frames in {manifest['num_episodes']} episodes "
        f"({fmt}) into {args.out}"
    )


def _run_info(args: argparse.Namespace) -> None:
    from lapo.data.info import describe
    from lapo.data.reader import open_dataset

    dataset = open_dataset(args.path)
    if args.json:
        print(json.dumps(dataset.manifest, indent=2))
    else:
        print(describe(dataset))


def _run_verify(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from lapo.data.reader import open_dataset

    dataset = open_dataset(args.path)
    total = sum(s["bytes"] for s in dataset.manifest["shards"])
    total += sum(f["bytes"] for f in dataset.manifest["files"].values())
    with tqdm(total=total, unit="B", unit_scale=True, disable=args.no_progress) as bar:
        dataset.verify(progress=lambda name, nbytes: bar.update(nbytes))
    n_files = len(dataset.manifest["shards"]) + len(dataset.manifest["files"])
    print(f"OK: {args.path}: {n_files} files, {total / 1e6:.1f} MB, all sha256 match")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lapo`` console script; returns the exit status.

    User errors (bad arguments, invalid or corrupt data, existing outputs) print one line
    ``lapo: error: ...`` and return 1 instead of a traceback.
    """
    from lapo.data.format import DatasetError

    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (DatasetError, ValueError, FileExistsError, FileNotFoundError, ImportError) as exc:
        print(f"lapo: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lapo: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
