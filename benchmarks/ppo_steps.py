"""PPO environment steps per second (acting + learning) on this machine, per encoder, fp32 vs bf16.

Runs a few full PPO updates (64 envs x 256 steps, 3 epochs of 8 minibatches) for each encoder in
both precisions, side by side in one process, and prints steps/s and the bf16/fp32 ratio. The
first update of each configuration is a warm-up and is not timed.

Usage: python benchmarks/ppo_steps.py [--env miner] [--updates 2] [--encoders nature impala]
"""

from __future__ import annotations

import argparse
import dataclasses
import time

from lapo.config import PPOConfig
from lapo.stages.expert import make_expert_trainer


def steps_per_second(config: PPOConfig, updates: int) -> tuple[float, float]:
    trainer = make_expert_trainer(config)
    trainer.learn(trainer.rollout())  # warm-up
    t_act = t_learn = 0.0
    for _ in range(updates):
        t0 = time.perf_counter()
        last_value = trainer.rollout()
        t1 = time.perf_counter()
        trainer.learn(last_value)
        t_act, t_learn = t_act + t1 - t0, t_learn + time.perf_counter() - t1
    total = updates * config.batch_size
    return total / (t_act + t_learn), t_act / (t_act + t_learn)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="miner")
    parser.add_argument("--updates", type=int, default=2)
    parser.add_argument("--encoders", nargs="+", default=["nature", "impala"])
    parser.add_argument("--multiplier", type=int, default=1)
    args = parser.parse_args()
    base = PPOConfig(env=args.env, eval_every=0)
    print(f"{'encoder':>8} {'x':>2} {'precision':>9} {'steps/s':>9} {'acting share':>12}")
    for encoder in args.encoders:
        fps = {}
        for bf16 in (False, True):
            cfg = dataclasses.replace(base, encoder=encoder, multiplier=args.multiplier, bf16=bf16)
            fps[bf16], act_share = steps_per_second(cfg, args.updates)
            name = "bf16" if bf16 else "fp32"
            print(f"{encoder:>8} {args.multiplier:>2} {name:>9} {fps[bf16]:9.0f} {act_share:12.0%}")
        print(f"{encoder:>8} {args.multiplier:>2} {'bf16/fp32':>9} {fps[True] / fps[False]:9.2f}")


if __name__ == "__main__":
    main()
