"""The whole GPU path of lapo in one command (under 8 minutes on one H100/H200-class GPU).

Prints, on the first CUDA GPU, with the paper's sizes and bf16 autocast:

1. stage-1 training samples/s (IDM + FDM forward, backward, clip, Adam; batch 128) and model FLOP
   utilization (FLOPs per sample from ``torch.utils.flop_counter.FlopCounterMode`` x samples/s /
   the GPU's dense bf16 peak), eager and ``torch.compile``d; the paper's stage 1 (70,000 x 128)
   in at most 15 minutes needs >= 10,000 samples/s;
2. IDM labelling frames/s (``LatentActionModel.label`` on host uint8 frames: copy, windows and
   IDM on the GPU);
3. stage-2 samples/s (latent policy, IMPALA x4, batch 128);
4. PPO expert env-steps/s with the paper's IMPALA x4 encoder and 64 Procgen environments;
5. fine-tuning env-steps/s (the ``paper`` fine-tuning preset from a latent policy);
6. a ``lapo run --preset paper`` on coinrun with every stage cut short (about 3 minutes).

Without a CUDA GPU it says so and exits 0. ``--allow-cpu --tiny`` runs the same measuring code on
the CPU with the ``smoke`` sizes, a random-frame environment in place of Procgen and no
``lapo run``, in seconds (a test of this script, not a measurement).

Usage: python benchmarks/gpu_check.py [--peak-tflops 989] [--skip-run] [--out DIR]
       python benchmarks/gpu_check.py --allow-cpu --tiny
"""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from lapo.config import (
    BC_PRESETS,
    FINETUNE_PRESETS,
    LAM_PRESETS,
    PPO_PRESETS,
    BCConfig,
    FinetuneConfig,
    LAMConfig,
    PPOConfig,
)
from lapo.device import autocast, bf16_enabled
from lapo.models.build import build_latent_policy
from lapo.models.lam import LatentActionModel, frames_to_float

NO_GPU = "gpu_check: no CUDA GPU on this machine; nothing to measure (--allow-cpu runs it on CPU)"

#: Dense bf16 tensor-core peaks (TFLOP/s, no sparsity) by a part of the device name.
PEAK_BF16_TFLOPS = {
    "H200": 989.0, "H100 PCIe": 756.0, "H100": 989.0, "GH200": 989.0, "A100": 312.0,
    "L40S": 362.0, "L40": 181.0, "L4": 121.0, "A10G": 70.0, "A10": 125.0, "RTX 4090": 165.0,
    "RTX 3090": 71.0, "A6000": 155.0,
}  # fmt: skip


def peak_tflops(device: torch.device, given: float | None) -> float | None:
    """The device's dense bf16 peak in TFLOP/s: ``given``, else from the table, else None."""
    if given is not None or device.type != "cuda":
        return given
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rate(step, items: int, iters: int, device: torch.device, warmup: int = 2) -> float:
    """items/s of ``step()`` over ``iters`` timed calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        step()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        step()
    _sync(device)
    return items * iters / (time.perf_counter() - t0)


def stage1(config: LAMConfig, device: torch.device, iters: int, compiled: bool):
    """(samples/s, FLOPs per sample) of stage 1's training step on random uint8 windows."""
    torch.manual_seed(0)
    model = LatentActionModel(config).to(device, memory_format=torch.channels_last)
    trained = torch.compile(model) if compiled else model
    opt = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    b = config.batch_size
    shape = (b, config.context + 2, 64, 64, 3)
    windows = torch.randint(0, 256, shape, dtype=torch.uint8, device=device)

    def step() -> None:
        frames = frames_to_float(windows)
        with autocast(device, config.bf16):
            out = trained(frames)
        loss = F.mse_loss(out.prediction.float(), frames[:, -1]) + out.vq.commitment_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        opt.step()

    flops = 0.0
    if not compiled:
        with FlopCounterMode(display=False) as counter:
            step()
        flops = counter.get_total_flops() / b
    return _rate(step, b, iters, device, warmup=3 if compiled else 2), flops


def labelling(config: LAMConfig, device: torch.device, frames: int) -> float:
    """frames/s of ``LatentActionModel.label`` on one episode of host uint8 frames."""
    model = LatentActionModel(config).to(device, memory_format=torch.channels_last).eval()
    episode = np.random.default_rng(0).integers(0, 256, (frames, 64, 64, 3), dtype=np.uint8)
    return _rate(lambda: model.label(episode, bf16=config.bf16), frames, 2, device, warmup=1)


def stage2(config: BCConfig, latent_dim: int, device: torch.device, iters: int) -> float:
    """samples/s of stage 2's update (policy forward, backward, Adam) on uint8 observations."""
    torch.manual_seed(0)
    policy = build_latent_policy(config, latent_dim).to(device)
    opt = torch.optim.Adam(policy.parameters(), lr=config.learning_rate)
    b = config.batch_size
    obs = torch.randint(0, 256, (b, 64, 64, 3), dtype=torch.uint8, device=device)
    target = torch.randn(b, latent_dim, device=device)

    def step() -> None:
        with autocast(device, config.bf16):
            loss = F.mse_loss(policy(obs).float(), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return _rate(step, b, iters, device)


class RandomFramesEnv:
    """Random-frame stand-in for ``ProcgenVecEnv`` (``--tiny``): speed of the learner only."""

    def __init__(self, num_envs: int) -> None:
        self.num_envs, self._rng = num_envs, np.random.default_rng(0)

    def reset(self) -> np.ndarray:
        return self._rng.integers(0, 256, (self.num_envs, 64, 64, 3), dtype=np.uint8)

    def step(self, actions: np.ndarray):
        from lapo.envs.procgen import StepResult

        zeros = np.zeros(self.num_envs, np.float32)
        return StepResult(self.reset(), zeros, zeros.astype(bool), [])

    def close(self) -> None:
        pass


def env_steps(trainer, batch: int, updates: int) -> float:
    """env-steps/s of full PPO updates (rollout + learning) after one untimed update."""
    trainer.learn(trainer.rollout())
    t0 = time.perf_counter()
    for _ in range(updates):
        trainer.learn(trainer.rollout())
    rate = batch * updates / (time.perf_counter() - t0)
    trainer.env.close()
    return rate


def ppo(config: PPOConfig, device: torch.device, updates: int, env) -> float:
    from lapo.stages.expert import make_expert_trainer

    return env_steps(make_expert_trainer(config, env, device), config.batch_size, updates)


def finetune(config: FinetuneConfig, device: torch.device, updates: int, env) -> float:
    from lapo.stages.finetune import make_online_trainer

    bc = BCConfig(encoder=config.encoder, multiplier=config.multiplier, features=config.features)
    policy = build_latent_policy(bc, 128)  # random weights: speed does not depend on them
    config = dataclasses.replace(config, latent_policy="(random weights)")
    trainer, _ = make_online_trainer(config, policy, env=env, device=device)
    return env_steps(trainer, config.batch_size, updates)


def lapo_run(out: Path, timeout_s: float) -> float:
    """Seconds of a ``lapo run --preset paper`` on coinrun with every stage cut short."""
    command = [
        sys.executable, "-m", "lapo", "run", "--env", "coinrun", "--preset", "paper",
        "--out", str(out), "--frames", "50000", "--lam-steps", "4000", "--lam-minutes", "1.5",
        "--bc-minutes", "0.5", "--labels", "256", "--eval-episodes", "16", "--no-online",
        "--no-progress",
    ]  # fmt: skip
    print("  $", " ".join(command), flush=True)
    t0 = time.perf_counter()
    subprocess.run(command, check=True, timeout=timeout_s)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--allow-cpu", action="store_true", help="measure on the CPU if no GPU")
    parser.add_argument("--tiny", action="store_true", help="smoke sizes, few steps (tests)")
    parser.add_argument("--peak-tflops", type=float, help="the device's dense bf16 TFLOP/s")
    parser.add_argument("--skip-run", action="store_true", help="no lapo run at the end")
    parser.add_argument("--no-compile", action="store_true", help="skip the compiled stage 1")
    parser.add_argument("--out", type=Path, help="directory of the lapo run (default: temporary)")
    args = parser.parse_args(argv)
    if torch.cuda.is_available():
        device = torch.device("cuda", 0)
    elif args.allow_cpu:
        device = torch.device("cpu")
    else:
        print(NO_GPU)
        return 0
    size = "smoke" if args.tiny else "paper"
    iters = 2 if args.tiny else 30
    lam_cfg = LAMConfig(**LAM_PRESETS[size])
    if args.tiny:
        lam_cfg = dataclasses.replace(lam_cfg, batch_size=4)
    bc_cfg = BCConfig(**BC_PRESETS[size])
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    peak = peak_tflops(device, args.peak_tflops)
    bf16 = bf16_enabled(True, device)
    print(f"gpu_check on {name} ({device}), torch {torch.__version__}, sizes {size}, "
          f"bf16 {'on' if bf16 else 'off (no native bf16)'}, "
          f"peak {f'{peak:.0f} TFLOP/s' if peak else 'unknown (--peak-tflops)'}")  # fmt: skip
    started = time.perf_counter()
    rate, flops = stage1(lam_cfg, device, iters, compiled=False)
    mfu = f"{rate * flops / (peak * 1e12):.1%}" if peak else "n/a"
    print(f"stage 1 eager:    {rate:10.0f} samples/s  {flops / 1e9:.2f} GFLOP/sample  MFU {mfu}  "
          f"(70,000 x {lam_cfg.batch_size}: {70_000 * lam_cfg.batch_size / rate / 60:.1f} min)",
          flush=True)  # fmt: skip
    if args.tiny or args.no_compile:
        print("stage 1 compiled: skipped")
    else:
        t0 = time.perf_counter()
        crate, _ = stage1(lam_cfg, device, iters, compiled=True)
        mfu = f"{crate * flops / (peak * 1e12):.1%}" if peak else "n/a"
        print(f"stage 1 compiled: {crate:10.0f} samples/s  MFU {mfu}  x{crate / rate:.2f} eager  "
              f"(compile + measure {time.perf_counter() - t0:.0f} s)", flush=True)  # fmt: skip
    frames = 64 if args.tiny else 16_384
    print(f"IDM labelling:    {labelling(lam_cfg, device, frames):10.0f} frames/s", flush=True)
    print(f"stage 2:          {stage2(bc_cfg, lam_cfg.latent_dim, device, iters):10.0f} "
          "samples/s", flush=True)  # fmt: skip
    updates = 1 if args.tiny else 2
    ppo_cfg = PPOConfig(env="coinrun", **PPO_PRESETS["smoke" if args.tiny else "paper"])
    ft_cfg = FinetuneConfig(env="coinrun", **FINETUNE_PRESETS["smoke" if args.tiny else "paper"])
    if not args.tiny:
        ppo_cfg = dataclasses.replace(ppo_cfg, num_envs=64, eval_every=0)
        ft_cfg = dataclasses.replace(ft_cfg, eval_every=0)
    ppo_cfg = dataclasses.replace(
        ppo_cfg, total_steps=max(ppo_cfg.total_steps, 4 * ppo_cfg.batch_size)
    )
    ft_cfg = dataclasses.replace(ft_cfg, total_steps=max(ft_cfg.total_steps, 4 * ft_cfg.batch_size))
    make_env = (lambda n: RandomFramesEnv(n)) if args.tiny else (lambda n: None)
    label = f"{ppo_cfg.encoder} x{ppo_cfg.multiplier}, {ppo_cfg.num_envs} envs"
    failed = []  # the environment parts need Procgen; one failure does not hide the others
    try:
        rate = ppo(ppo_cfg, device, updates, make_env(ppo_cfg.num_envs))
        print(f"PPO expert:       {rate:10.0f} env-steps/s ({label})", flush=True)
    except Exception as error:  # noqa: BLE001 - reported, then the next part runs
        failed.append(f"PPO expert: {type(error).__name__}: {error}")
        print(f"PPO expert:       FAILED ({failed[-1]})", flush=True)
    try:
        rate = finetune(ft_cfg, device, updates, make_env(ft_cfg.num_envs))
        print(f"fine-tuning:      {rate:10.0f} env-steps/s ({ft_cfg.num_envs} envs)", flush=True)
    except Exception as error:  # noqa: BLE001
        failed.append(f"fine-tuning: {type(error).__name__}: {error}")
        print(f"fine-tuning:      FAILED ({failed[-1]})", flush=True)
    if args.tiny or args.skip_run:
        print("lapo run: skipped")
    else:
        try:
            with tempfile.TemporaryDirectory() as tmp:
                out = args.out or Path(tmp) / "lapo-coinrun-paper"
                seconds = lapo_run(out, timeout_s=330)
            print(f"lapo run --preset paper (cut short): {seconds:.0f} s", flush=True)
        except (subprocess.SubprocessError, OSError) as error:
            failed.append(f"lapo run: {error}")
            print(f"lapo run: FAILED ({error})", flush=True)
    print(f"gpu_check: done in {time.perf_counter() - started:.0f} s"
          + (f"; {len(failed)} part(s) failed" if failed else ""))  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
