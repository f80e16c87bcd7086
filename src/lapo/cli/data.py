"""``lapo collect`` and ``lapo data import|info|verify``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lapo.cli.common import PROCGEN_CHOICES, PROCGEN_TYPES, HelpFormatter
from lapo.cli.options import add_config_options, add_device_option, config_from_args, with_device
from lapo.config import RESIZE_MODES

IMPORT_FORMATS = ("auto", "video", "arrays", "lapo-release", "lerobot", "minari")


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
        p, CollectConfig, choices=PROCGEN_CHOICES, types_=PROCGEN_TYPES,
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
        help="import videos, LeRobot or Minari datasets, numpy arrays or the LAPO release",
        description="Create a lapo dataset from (a) video files or folders of them (mp4, webm, "
        "mkv, avi, ...), decoded with PyAV, resized (--resize), sampled (--fps, --frame-stride) "
        "and cut into episodes (--clip-frames; default one per file), no actions; unreadable "
        "files are named after the others are imported (exit status 1); (b) .npy/.npz arrays "
        "(key 'frames' (N,H,W,C) uint8, optional 'actions', 'episode_starts', 'rewards', "
        "'dones'); (c) the original LAPO release's .npz chunks (keys obs, ta, done, rewards, "
        "ep_returns, values); (d) a LeRobotDataset directory (v2.x, v3.0; --camera) or a Minari "
        "dataset (HDF5), actions kept (pip install 'lapo[formats]'). See docs/data-format.md.",
        formatter_class=HelpFormatter,
    )
    imp.add_argument(
        "sources",
        nargs="+",
        type=Path,
        metavar="SRC",
        help="video files or folders of them, .npy/.npz files, or release chunks (or a folder)",
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
        metavar=("H", "W"),
        help="video, lerobot, minari, arrays: frames are resized to this height and width "
        "(default 64 64; arrays: stored as they come unless given)",
    )
    imp.add_argument(
        "--resize",
        choices=RESIZE_MODES,
        help="video, lerobot, minari, arrays: crop (keep the aspect ratio, cut the centre; the "
        "default), pad (keep it, black borders) or stretch (distort to the resolution)",
    )
    imp.add_argument(
        "--fps", type=float, help="video: keep at most this many frames per second of video"
    )
    imp.add_argument(
        "--frame-stride", type=int, metavar="N", help="video: keep every N-th frame (default 1)"
    )
    imp.add_argument(
        "--clip-frames",
        type=int,
        metavar="N",
        help="video: cut each video into episodes of N frames (default: one episode per file)",
    )
    imp.add_argument(
        "--camera",
        metavar="KEY",
        help="lerobot: the camera feature (e.g. observation.images.top); minari: the image "
        "entry of a dict observation (default: the only one)",
    )
    imp.add_argument(
        "--num-actions",
        type=int,
        metavar="N",
        help="arrays: the number of discrete actions (default: the largest action + 1)",
    )
    imp.add_argument("--shard-frames", type=int, default=8192, help="frames per shard file")
    imp.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing dataset at --out (only after importing succeeds)",
    )
    imp.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    imp.set_defaults(func=_run_import)
    exp = data_sub.add_parser(
        "export",
        help="write a dataset with its latent actions as a LeRobotDataset or Minari dataset",
        description="Label every frame of a lapo dataset with the latent action of a trained "
        "stage-1 model (the IDM's output; none for an episode's first k frames and its last) "
        "and write frames, latent actions, code indices and the dataset's true actions, "
        "rewards and dones as a LeRobotDataset (v2.1 layout) or a Minari dataset (HDF5). "
        "Needs pip install 'lapo[formats]'. See docs/data-format.md.",
        formatter_class=HelpFormatter,
    )
    exp.add_argument("path", type=Path, metavar="DIR", help="lapo dataset directory")
    exp.add_argument("--lam", required=True, type=Path, help="stage-1 run directory (e.g. RUN/lam)")
    exp.add_argument(
        "--format",
        required=True,
        choices=("lerobot", "minari"),
        help="LeRobotDataset (v2.1 layout, latent actions as 'action') or Minari (HDF5)",
    )
    exp.add_argument("--out", required=True, type=Path, help="output directory")
    exp.add_argument(
        "--fps",
        type=float,
        help="lerobot: the frame rate of the videos and timestamps (default: the dataset's own "
        "where its import recorded one, a LeRobot import's or a video import's --fps, else 15)",
    )
    exp.add_argument("--overwrite", action="store_true", help="replace an earlier export at --out")
    exp.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_device_option(exp)
    exp.set_defaults(func=_run_export)
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


#: The ``lapo data import`` options each source format uses (the others are refused).
IMPORT_OPTIONS = {
    "video": ("resolution", "resize", "fps", "frame_stride", "clip_frames"),
    "lerobot": ("resolution", "resize", "camera"),
    "minari": ("resolution", "resize", "camera"),
    "arrays": ("resolution", "resize", "num_actions"),
    "lapo-release": (),
}


def _check_import_options(args: argparse.Namespace, fmt: str) -> None:
    """Refuse an option the source format does not use (``--resolution`` on arrays did
    nothing, without a word), before any work.

    Raises:
        ValueError: the message names the options, the format and the formats that use them.
    """
    given = [k for k in ("resolution", "resize", "fps", "frame_stride", "clip_frames", "camera",
                         "num_actions") if getattr(args, k) is not None]  # fmt: skip
    unused = [k for k in given if k not in IMPORT_OPTIONS[fmt]]
    if unused:
        flags = ", ".join("--" + k.replace("_", "-") for k in unused)
        users = sorted({f for f, keys in IMPORT_OPTIONS.items() for k in unused if k in keys})
        raise ValueError(
            f"{flags} {'does' if len(unused) == 1 else 'do'} not apply to {fmt} sources (only "
            f"to {', '.join(users)}); leave {'it' if len(unused) == 1 else 'them'} out"
        )


def _run_import(args: argparse.Namespace) -> None:
    from lapo.config import VideoImportConfig
    from lapo.data.import_arrays import import_arrays
    from lapo.data.import_release import import_lapo_release
    from lapo.data.import_video import import_videos
    from lapo.data.sniff import detect_import_format

    fmt = args.format if args.format != "auto" else detect_import_format(args.sources)
    _check_import_options(args, fmt)
    if fmt == "arrays" and args.resize is not None and args.resolution is None:
        raise ValueError("--resize says how arrays are resized to --resolution H W: give both")
    resized = args.resolution is not None  # arrays: stored as they come without --resolution
    args.resolution = tuple(args.resolution or (64, 64))
    args.resize = args.resize or "crop"
    args.frame_stride = 1 if args.frame_stride is None else args.frame_stride
    common = dict(
        overwrite=args.overwrite, shard_frames=args.shard_frames, progress=not args.no_progress
    )
    if fmt == "video":  # unreadable files: the rest is imported, then exit 1 naming them
        video = VideoImportConfig(
            resolution=tuple(args.resolution), resize=args.resize, fps=args.fps,
            frame_stride=args.frame_stride, clip_frames=args.clip_frames,
        )  # fmt: skip
        manifest = import_videos(args.sources, args.out, video, **common)
    elif fmt in ("lerobot", "minari"):
        from lapo.data.import_lerobot import import_lerobot
        from lapo.data.import_minari import import_minari

        if len(args.sources) != 1:
            raise ValueError(f"{fmt} import takes one dataset folder, got {len(args.sources)}")
        frames = VideoImportConfig(resolution=tuple(args.resolution), resize=args.resize)
        if fmt == "lerobot":
            manifest = import_lerobot(
                args.sources[0], args.out, camera=args.camera, config=frames, **common
            )
        else:
            manifest = import_minari(
                args.sources[0], args.out, observation_key=args.camera, config=frames, **common
            )
    elif fmt == "arrays":
        resize = VideoImportConfig(resolution=args.resolution, resize=args.resize)
        manifest = import_arrays(args.sources, args.out, num_actions=args.num_actions,
                                 resize=resize if resized else None, **common)  # fmt: skip
    else:
        manifest = import_lapo_release(args.sources, args.out, **common)
    print(
        f"imported {manifest['num_frames']} frames in {manifest['num_episodes']} episodes "
        f"({fmt}) into {args.out}"
    )


def _run_export(args: argparse.Namespace) -> None:
    from lapo.pipeline.export import export_latent_actions

    out = export_latent_actions(
        args.path, args.lam, args.out, args.format, overwrite=args.overwrite,
        progress=not args.no_progress, device=args.device, fps=args.fps,
    )  # fmt: skip
    print(f"exported {args.path} with latent actions as {args.format} into {out}")


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
