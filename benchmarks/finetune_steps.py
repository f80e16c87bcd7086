"""PPO environment steps per second of LAPO fine-tuning vs PPO from scratch, same network.

Three runs side by side in one process, on the network of a ``FINETUNE_PRESETS`` preset (a
randomly initialized latent policy stands in for a trained one: speed does not depend on the
weights):

- ``finetune``: frozen convolutional trunk, its features computed once per rollout step and
  reused by every PPO epoch (what ``lapo finetune`` does);
- ``finetune-nocache``: frozen trunk, but the PPO epochs run the full network again (isolates the
  gain of the feature cache from that of not back-propagating into the trunk);
- ``scratch``: every layer trained (``lapo ppo``).

Each configuration runs one untimed warm-up update, then ``--updates`` timed ones; acting
(rollout, environment included) and learning (GAE + PPO epochs) are timed separately.

Usage: python benchmarks/finetune_steps.py [--env miner] [--preset cpu] [--updates 2]
       [--num-envs 64] [--num-steps 256] [--device cpu] [--no-bf16]
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from lapo.config import (
    BC_PRESETS,
    FINETUNE_PRESETS,
    SCRATCH_LEARNING_RATE,
    BCConfig,
    FinetuneConfig,
)
from lapo.models.build import build_latent_policy
from lapo.stages.finetune import make_online_trainer


def measure(config: FinetuneConfig, latent_policy, updates: int, device: str, cache: bool):
    """(steps/s, acting seconds per update, learning seconds per update)."""
    trainer, _ = make_online_trainer(config, latent_policy, device=device, cache_trunk=cache)
    trainer.learn(trainer.rollout())  # warm-up
    t_act = t_learn = 0.0
    for _ in range(updates):
        t0 = time.perf_counter()
        last_value = trainer.rollout()
        t1 = time.perf_counter()
        trainer.learn(last_value)
        t_act, t_learn = t_act + t1 - t0, t_learn + time.perf_counter() - t1
    trainer.env.close()
    return updates * config.batch_size / (t_act + t_learn), t_act / updates, t_learn / updates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="miner", help="Procgen game")
    parser.add_argument("--preset", default="cpu", choices=sorted(FINETUNE_PRESETS))
    parser.add_argument("--updates", type=int, default=2, help="timed updates per run")
    parser.add_argument("--num-envs", type=int, help="override the preset's")
    parser.add_argument("--num-steps", type=int, help="override the preset's")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--no-bf16", action="store_true", help="fp32 instead of bf16 autocast")
    args = parser.parse_args()
    preset = FINETUNE_PRESETS[args.preset]
    network = {k: preset[k] for k in ("encoder", "multiplier", "features") if k in preset}
    bc = dataclasses.replace(BCConfig(**BC_PRESETS[args.preset]), **network)
    changes = {"num_envs": args.num_envs, "num_steps": args.num_steps}
    changes = {k: v for k, v in changes.items() if v is not None}
    base = FinetuneConfig(env=args.env, **{**preset, **changes, "eval_every": 0},
                          bf16=not args.no_bf16)  # fmt: skip
    base = dataclasses.replace(base, total_steps=max(base.total_steps, base.batch_size))
    finetune = dataclasses.replace(base, latent_policy="(random weights)")
    scratch = dataclasses.replace(base, learning_rate=SCRATCH_LEARNING_RATE)
    print(f"{args.env}, {bc.encoder} x{bc.multiplier} ({bc.features} features), "
          f"{base.num_envs} envs x {base.num_steps} steps, {base.epochs} epochs x "
          f"{base.num_minibatches} minibatches, {'fp32' if args.no_bf16 else 'bf16'}, "
          f"{args.device}, {torch.get_num_threads()} threads")  # fmt: skip
    print(f"{'run':>17} {'steps/s':>9} {'act s/upd':>10} {'learn s/upd':>12}")
    results = {}
    for name, config, cache in (("finetune", finetune, True),
                                ("finetune-nocache", finetune, False),
                                ("scratch", scratch, False)):  # fmt: skip
        torch.manual_seed(0)
        latent_policy = None if config.from_scratch else build_latent_policy(bc, 128)
        sps, act, learn = measure(config, latent_policy, args.updates, args.device, cache)
        results[name] = sps
        print(f"{name:>17} {sps:9.0f} {act:10.2f} {learn:12.2f}")
    print(f"{'finetune/scratch':>17} {results['finetune'] / results['scratch']:9.2f}")


if __name__ == "__main__":
    main()
