"""Collection speed with a uniform random policy (issue: foundation benchmarks).

Prints, side by side in one run on the same machine:
  * raw environment stepping frames/s (ProcgenVecEnv.step, random actions, no recording);
  * full ``lapo collect`` frames/s (stepping + buffering + writing shards with sha256);
  * their ratio, i.e. what recording costs.

Usage: python benchmarks/collect_fps.py [--env miner] [--num-envs 64] [--frames 200000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from lapo.config import CollectConfig
from lapo.envs import ProcgenVecEnv
from lapo.stages.collect import collect


def raw_stepping_fps(env_name: str, num_envs: int, frames: int) -> float:
    env = ProcgenVecEnv(env_name, num_envs, seed=0)
    env.reset()
    rng = np.random.default_rng(0)
    steps = max(frames // num_envs, 1)
    start = time.perf_counter()
    for _ in range(steps):
        env.step(rng.integers(0, 15, size=num_envs))
    return steps * num_envs / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="miner")
    parser.add_argument("--num-envs", type=int, default=64)
    parser.add_argument("--frames", type=int, default=200_000)
    args = parser.parse_args()

    raw = raw_stepping_fps(args.env, args.num_envs, args.frames)
    with tempfile.TemporaryDirectory() as tmp:
        config = CollectConfig(
            env=args.env, frames=args.frames, out=Path(tmp) / "ds", num_envs=args.num_envs
        )
        summary = collect(config, progress=False)
    print(f"env={args.env} num_envs={args.num_envs} frames={args.frames}")
    print(f"raw env stepping (random actions):      {raw:10.0f} frames/s")
    print(f"lapo collect (step + record + sha256):  {summary.frames_per_second:10.0f} frames/s")
    print(f"collect / raw stepping:                 {summary.frames_per_second / raw:10.2f}")


if __name__ == "__main__":
    main()
