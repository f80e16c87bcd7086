"""The paper's appendix A.3 at CPU scale: LAPO (stages 1-2 on expert video, then online PPO
fine-tuning) against PPO from scratch, from pixels, on a continuous-control task.

Protocol (one command, every stage logged under OUT):
1. record ``--frames`` frames of the scripted state-feedback expert (``lapo.envs.scripted``) as
   64x64 rendered pixels (``lapo collect --policy scripted``);
2. stage 1 (``LAMConfig`` preset ``cpu``, ``--lam-steps`` updates) and stage 2 (``BCConfig``
   preset ``cpu``, ``--bc-steps`` updates) on that video, without its actions;
3. for each seed: PPO fine-tuning of the latent policy (frozen conv trunk, Gaussian head, lr
   0.01) and PPO from scratch (same Nature-CNN network, every layer trained, lr 5e-4), both
   ``--online-steps`` environment steps with ``--num-envs`` x ``--num-steps`` rollouts and the
   other settings of ``FINETUNE_PRESETS["cpu"]`` (the paper's: same hyperparameters as Procgen);
4. ``results.json``: normalized-return curves (held-out evaluations against environment steps)
   and final evaluations per arm and seed; ``figure.png``: mean curve per arm (paper Figure 8).

    PYTHONPATH=src python benchmarks/continuous_control.py --env Pendulum-v1 --out runs/cc
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from lapo.config import (
    BC_PRESETS,
    FINETUNE_PRESETS,
    LAM_PRESETS,
    SCRATCH_LEARNING_RATE,
    BCConfig,
    CollectConfig,
    FinetuneConfig,
    LAMConfig,
)
from lapo.stages.bc import train_bc
from lapo.stages.collect import collect
from lapo.stages.finetune import train_finetune
from lapo.stages.lam import train_lam


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="Pendulum-v1")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--frames", type=int, default=20_000)
    p.add_argument("--lam-steps", type=int, default=1000)
    p.add_argument("--bc-steps", type=int, default=1000)
    p.add_argument("--online-steps", type=int, default=20_480)
    p.add_argument("--num-envs", type=int, default=8)
    p.add_argument("--num-steps", type=int, default=128)
    p.add_argument("--eval-every", type=int, default=5)
    p.add_argument("--eval-episodes", type=int, default=8)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--arms", default="lapo,ppo")
    args = p.parse_args()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    timing: dict[str, float] = {}
    t = time.monotonic()
    if not (out / "data" / "manifest.json").exists():
        summary = collect(
            CollectConfig(
                env=args.env, frames=args.frames, out=out / "data", policy="scripted", num_envs=16
            ),
            progress=False,
        )
        print(f"recorded {summary.frames} frames, expert return {summary.mean_return:.1f}")
    timing["collect_s"] = time.monotonic() - t
    t = time.monotonic()
    lam_cfg = LAMConfig(
        **{
            **LAM_PRESETS["cpu"],
            "steps": args.lam_steps,
            "eval_every": args.lam_steps,
            "checkpoint_every": args.lam_steps,
        }
    )
    lam = train_lam(lam_cfg, out / "data", out / "lam", resume=True, progress=False)
    timing["lam_s"] = time.monotonic() - t
    print({k: v for k, v in lam.items() if "r2" in k}, flush=True)
    t = time.monotonic()
    bc_cfg = BCConfig(
        **{
            **BC_PRESETS["cpu"],
            "steps": args.bc_steps,
            "eval_every": args.bc_steps,
            "checkpoint_every": args.bc_steps,
        }
    )
    train_bc(bc_cfg, out / "lam", out / "data", out / "bc", resume=True, progress=False)
    timing["bc_s"] = time.monotonic() - t
    base = {
        **FINETUNE_PRESETS["cpu"],
        "total_steps": args.online_steps,
        "num_envs": args.num_envs,
        "num_steps": args.num_steps,
        "num_minibatches": 4,
        "eval_every": args.eval_every,
        "eval_episodes": args.eval_episodes,
    }
    results: dict = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "lam": lam,
        "arms": {},
        "timing": timing,
    }
    for seed in range(args.seeds):  # seeds outermost: a stopped run has both arms per seed
        for arm in args.arms.split(","):
            cfg = FinetuneConfig(
                env=args.env,
                **base,
                seed=seed,
                latent_policy=str((out / "bc").resolve()) if arm == "lapo" else None,
            )
            if arm == "ppo":
                cfg = dataclasses.replace(cfg, learning_rate=SCRATCH_LEARNING_RATE)
            run = out / f"{arm}-seed{seed}"
            t = time.monotonic()
            train_finetune(cfg, run, resume=True, progress=False)
            rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
            curve = [
                (r["step"], r["return/eval_normalized"], r["return/eval_mean"])
                for r in rows
                if "return/eval_normalized" in r
            ]
            results["arms"].setdefault(arm, []).append(
                {"seed": seed, "curve": curve, "seconds": time.monotonic() - t}
            )
            print(arm, seed, curve[-1], f"{time.monotonic() - t:.0f} s", flush=True)
            (out / "results.json").write_text(json.dumps(results, indent=2, default=float))
    (out / "results.json").write_text(json.dumps(results, indent=2, default=float))
    _figure(results, out / "figure.png", args.env)


def _figure(results: dict, path: Path, env: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    names = {"lapo": "LAPO fine-tuned", "ppo": "PPO from scratch"}
    for arm, runs in results["arms"].items():
        steps = np.array([s for s, _, _ in runs[0]["curve"]])
        values = np.array([[v for _, v, _ in r["curve"]] for r in runs])
        mean = values.mean(0)
        ax.plot(steps, mean, label=f"{names.get(arm, arm)} ({len(runs)} seeds)")
        if len(runs) > 1:
            sem = values.std(0, ddof=1) / np.sqrt(len(runs))
            ax.fill_between(steps, mean - sem, mean + sem, alpha=0.25)
    ax.set_xlabel("environment steps")
    ax.set_ylabel("normalized return")
    ax.set_title(f"{env}, from pixels")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
