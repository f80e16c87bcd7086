"""``lapo collect`` and ``lapo data import|info|verify``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lapo.cli.common import PROCGEN_CHOICES, HelpFormatter
from lapo.cli.options import add_config_options, add_device_option, config_from_args, with_device

IMPORT_FORMATS = ("auto", "video", "arrays", "lapo-release")


def _add_collect(sub: argparse._SubParsersAction) -> None:
    from lapo.config import CollectConfig

    p = sub.add_parser(
        "collect",
        help="record a Procgen game with a policy into a dataset",
        description="Record frames, true actions, rewards and done flags of a Procgen game "
        "played by a policy, with vectorized environments, into a new lapo dataset.",
        formatter_class=HelpFormatter,
    )
    add_device_option(p)
    add_config_options(
        p, CollectConfig, choices=PROCGEN_CHOICES,
        help_={"overwrite": "replace an existing dataset at --out (only after recording succeeds)"},
    )  # fmt: skip
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
        formatter_class=HelpFormatter,
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


def _run_collect(args: argparse.Namespace) -> None:
    from lapo.config import CollectConfig
    from lapo.stages.collect import collect, format_summary

    config = config_from_args(CollectConfig, None, None, args)
    summary = collect(config, progress=not args.no_progress, **with_device(collect, args.device))
    print(format_summary(config, summary))


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


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``collect`` and ``data`` to the ``lapo`` subcommands."""
    _add_collect(sub)
    _add_data(sub)
