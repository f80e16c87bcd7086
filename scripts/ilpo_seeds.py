"""Train the ILPO arm of a `lapo run --online --online-ilpo` run, one process per seed.

`lapo run` trains its online seeds one after another. ILPO's online phase is the slow part of
the comparison on a CPU (about 85 env-steps/s on one core at the `cpu` preset: the forward
model's K = 15 decoder passes label z* for every transition), so on a machine with a GPU or
many cores this script trains the seeds side by side, with exactly the configs `lapo run`
uses (``lapo.pipeline.online.ilpo_offline`` and ``ilpo_seed``). Rerunning `lapo run` with the
same flags afterwards finds them finished, evaluates them and writes the comparison and the
report.

    python scripts/ilpo_seeds.py runs/lapo-coinrun-cpu --seeds 0 1 2 --device cuda

The offline phase (``online/ilpo/offline``) must have finished first, or be able to finish
here (it needs the run's ``data/``): it is trained once, before the seeds start.
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
from pathlib import Path


def _config(run_dir: str, device: str | None):
    from lapo.pipeline.report import load_run_config

    return dataclasses.replace(load_run_config(run_dir), device=device)


def _seed(run_dir: str, seed: int, device: str | None) -> str:
    from lapo.pipeline.online import ilpo_seed

    run = Path(run_dir)
    ilpo_seed(_config(run_dir, device), run / "data", run / "online", seed, progress=False)
    return f"seed {seed} finished"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="a lapo run directory made with --online-ilpo")
    parser.add_argument("--seeds", type=int, nargs="+", required=True)
    parser.add_argument("--device", default=None, help="cuda, cpu, ... (default: lapo's choice)")
    args = parser.parse_args()
    from lapo.pipeline.online import ilpo_offline

    config = _config(args.run_dir, args.device)
    if not config.online_ilpo:
        raise SystemExit(f"{args.run_dir} was not run with --online-ilpo")
    ilpo_offline(config, Path(args.run_dir) / "data", Path(args.run_dir) / "online",
                 progress=False)  # fmt: skip
    # spawn: each seed its own process (CUDA cannot be forked)
    with multiprocessing.get_context("spawn").Pool(len(args.seeds)) as pool:
        jobs = [pool.apply_async(_seed, (args.run_dir, s, args.device)) for s in args.seeds]
        for job in jobs:
            print(job.get(), flush=True)


if __name__ == "__main__":
    main()
