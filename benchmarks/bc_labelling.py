"""Stage 2: label latents on the fly or cache them once? Measures both costs side by side.

For a preset pair (stage-1 size, stage-2 preset), on random 64x64x3 frames in one process:
- IDM labelling rate (windows/s, inference, bf16 autocast, batch 256);
- latent-BC update rate (samples/s: policy forward + backward + Adam, bf16, the preset's batch);
- on-the-fly update rate (the same update preceded by the IDM forward on its batch).
Then, for a training run of ``steps x batch`` samples on a dataset of ``--windows`` windows, the
total seconds of each strategy: caching labels every window once; on the fly labels every sample.

Usage: python benchmarks/bc_labelling.py [--preset cpu] [--windows 200000] [--iters 5]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from lapo.config import BC_PRESETS, LAM_PRESETS, BCConfig, LAMConfig
from lapo.models.build import build_latent_policy
from lapo.models.lam import LatentActionModel


def _rate(fn, items: int, iters: int) -> float:
    fn()  # warm-up
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    return items * iters / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu", choices=("cpu", "paper"))
    parser.add_argument("--windows", type=int, default=200_000, help="dataset windows")
    parser.add_argument("--iters", type=int, default=5)
    args = parser.parse_args()
    lam_cfg, bc_cfg = LAMConfig(**LAM_PRESETS[args.preset]), BCConfig(**BC_PRESETS[args.preset])
    torch.manual_seed(0)
    lam = LatentActionModel(lam_cfg).to(memory_format=torch.channels_last).eval()
    policy = build_latent_policy(bc_cfg, lam_cfg.latent_dim)
    opt = torch.optim.Adam(policy.parameters(), lr=1e-4)
    b = bc_cfg.batch_size
    windows = torch.rand(256, 3, 3, 64, 64) - 0.5  # (B, k+2, C, H, W)
    obs = torch.randint(0, 256, (b, 64, 64, 3), dtype=torch.uint8)
    target = torch.randn(b, lam_cfg.latent_dim)

    @torch.no_grad()
    def label(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", torch.bfloat16):
            return lam.idm(x).float()

    def update(tgt: torch.Tensor) -> None:
        with torch.autocast("cpu", torch.bfloat16):
            loss = F.mse_loss(policy(obs).float(), tgt)
        opt.zero_grad()
        loss.backward()
        opt.step()

    label_rate = _rate(lambda: label(windows), 256, args.iters)
    update_rate = _rate(lambda: update(target), b, args.iters)
    fly_rate = _rate(lambda: update(label(windows[:b])), b, args.iters)
    samples = bc_cfg.steps * b
    cached_s = args.windows / label_rate + samples / update_rate
    fly_s = samples / fly_rate
    print(
        f"preset {args.preset}: IDM size {lam_cfg.size}, policy {bc_cfg.encoder} "
        f"x{bc_cfg.multiplier}, batch {b}, threads {torch.get_num_threads()}"
    )
    print(f"  IDM labelling      {label_rate:9.0f} windows/s")
    print(f"  BC update (cached) {update_rate:9.0f} samples/s")
    print(f"  BC update (on the fly, IDM + update) {fly_rate:9.0f} samples/s")
    print(
        f"  run of {bc_cfg.steps} updates ({samples} samples) on {args.windows} windows: "
        f"cache {cached_s:.0f} s vs on the fly {fly_s:.0f} s "
        f"(cache / on the fly = {cached_s / fly_s:.2f})"
    )


if __name__ == "__main__":
    main()
