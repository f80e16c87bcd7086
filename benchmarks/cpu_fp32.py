"""fp32 on a CPU (a CPU without native bf16, e.g. AVX2 only): stage-2 labelling and layouts.

On a machine with AVX-512 BF16 the AVX2 path is emulated by forcing fp32 (``bf16=False``, what
``lapo.device.bf16_enabled`` decides on an AVX2 CPU); it is not a real AVX2 machine. Side by side in
one process, in interleaved rounds (the median of ``--rounds`` is printed), on a synthetic
64x64x3 sprite dataset written to a temporary directory:

- ``idm forward``: the ``cpu``-size IDM's forward pass alone on ready float windows (channels_last
  model and input), windows/s: what labelling costs at best;
- ``label before``: stage 2's labelling as it was (the model as ``load_lam`` returned it, NCHW;
  batches read in the loop), windows/s;
- ``label now``: ``lapo.stages.bc.label_windows`` on the model ``lapo.load.load_lam`` returns now
  (channels_last; batches read ahead on a thread), windows/s;
- ``read k+2`` vs ``read o_t``: stage 2 reads only o_t for its policy updates now (it read the
  k + 2 frames of each window and kept one), windows/s;
- stage-1 update (``cpu`` size, batch 64) and stage-2 update (``cpu`` preset, batch 64), fp32 NCHW
  vs fp32 channels_last, samples/s.

Usage: python benchmarks/cpu_fp32.py [--rounds 3] [--threads 2] [--windows 2048]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lapo.config import BC_PRESETS, LAM_PRESETS, BCConfig, LAMConfig
from lapo.data import WindowIndex, open_dataset
from lapo.data.synthetic import write_sprite_dataset
from lapo.models.build import build_latent_policy
from lapo.models.lam import LatentActionModel, frames_to_float
from lapo.stages.bc import label_windows


def _timed(fn, items: int) -> float:
    """items/s of one call of ``fn``."""
    t0 = time.perf_counter()
    fn()
    return items / (time.perf_counter() - t0)


@torch.no_grad()
def _label_before(lam, index: WindowIndex, batch_size: int = 256) -> np.ndarray:
    """Stage 2's labelling loop before this change (read in the loop, the model as given)."""
    out = np.empty((len(index), lam.latent_dim), dtype=np.float32)
    for start in range(0, len(index), batch_size):
        windows = np.arange(start, min(start + batch_size, len(index)))
        frames = frames_to_float(torch.from_numpy(index.read(windows)))
        out[windows] = lam.idm(frames).float().numpy()
    return out


def _lam_step(model, opt, frames: torch.Tensor) -> None:
    out = model(frames)
    loss = F.mse_loss(out.prediction.float(), frames[:, -1]) + out.vq.commitment_loss
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def _bc_step(policy, opt, obs: torch.Tensor, target: torch.Tensor) -> None:
    loss = F.mse_loss(policy(obs).float(), target)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--windows", type=int, default=2048, help="windows to label per round")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lam_cfg = dataclasses.replace(LAMConfig(**LAM_PRESETS["cpu"]), bf16=False)
    bc_cfg = dataclasses.replace(BCConfig(**BC_PRESETS["cpu"]), bf16=False)
    with tempfile.TemporaryDirectory() as tmp:
        episodes = -(-(args.windows + 64) // 63)
        write_sprite_dataset(Path(tmp) / "d", episodes=episodes, length=65, size=64, seed=0)
        index = WindowIndex(open_dataset(Path(tmp) / "d"), lam_cfg.context)
        index.num_windows = min(index.num_windows, args.windows)  # label the first windows
        torch.manual_seed(0)
        nchw = LatentActionModel(lam_cfg).eval()  # as load_lam returned it before
        cl = LatentActionModel(lam_cfg).to(memory_format=torch.channels_last).eval()
        cl.load_state_dict(nchw.state_dict())  # as load_lam returns it now
        ready = frames_to_float(torch.from_numpy(index.read(np.arange(256))))
        train_nchw = LatentActionModel(lam_cfg)
        train_cl = LatentActionModel(lam_cfg).to(memory_format=torch.channels_last)
        train_cl.load_state_dict(train_nchw.state_dict())
        lam_opts = {m: torch.optim.Adam(m.parameters(), 1e-4) for m in (train_nchw, train_cl)}
        batch = frames_to_float(torch.from_numpy(index.read(np.arange(64))))
        pol_nchw = build_latent_policy(bc_cfg, lam_cfg.latent_dim)
        pol_cl = build_latent_policy(bc_cfg, lam_cfg.latent_dim).to(
            memory_format=torch.channels_last
        )
        pol_cl.load_state_dict(pol_nchw.state_dict())
        bc_opts = {p: torch.optim.Adam(p.parameters(), 1e-4) for p in (pol_nchw, pol_cl)}
        obs = torch.from_numpy(index.read_current(np.arange(64)))
        target = torch.randn(64, lam_cfg.latent_dim)
        n = len(index)
        cases = {
            "idm forward (windows/s)": lambda: _timed(
                lambda: [cl.idm(ready) for _ in range(2)], 512
            ),
            "label before (windows/s)": lambda: _timed(lambda: _label_before(nchw, index), n),
            "label now (windows/s)": lambda: _timed(
                lambda: label_windows(cl, index, bf16=False), n
            ),
            "read k+2 frames (windows/s)": lambda: _timed(lambda: index.read(np.arange(n)), n),
            "read o_t only (windows/s)": lambda: _timed(
                lambda: index.read_current(np.arange(n)), n
            ),
            "stage-1 update NCHW (samples/s)": lambda: _timed(
                lambda: [_lam_step(train_nchw, lam_opts[train_nchw], batch) for _ in range(3)],
                192,
            ),
            "stage-1 update CL (samples/s)": lambda: _timed(
                lambda: [_lam_step(train_cl, lam_opts[train_cl], batch) for _ in range(3)], 192
            ),
            "stage-2 update NCHW (samples/s)": lambda: _timed(
                lambda: [_bc_step(pol_nchw, bc_opts[pol_nchw], obs, target) for _ in range(5)],
                320,
            ),
            "stage-2 update CL (samples/s)": lambda: _timed(
                lambda: [_bc_step(pol_cl, bc_opts[pol_cl], obs, target) for _ in range(5)], 320
            ),
        }
        with torch.no_grad():
            cl.idm(ready), nchw.idm(ready)  # warm-up
        _lam_step(train_nchw, lam_opts[train_nchw], batch)
        _lam_step(train_cl, lam_opts[train_cl], batch)
        rates: dict[str, list[float]] = {k: [] for k in cases}
        for _ in range(args.rounds):
            for name, case in cases.items():
                with torch.no_grad() if "update" not in name else torch.enable_grad():
                    rates[name].append(case())
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(f"fp32 forced (bf16=False), {args.threads} threads, {args.rounds} interleaved rounds, "
          f"{n} windows; median of rounds")  # fmt: skip
    for name, rate in med.items():
        print(f"  {name:34s} {rate:10.1f}")
    pairs = [
        ("label now / label before", "label now", "label before"),
        ("idm forward / label before", "idm forward", "label before"),
        ("idm forward / label now", "idm forward", "label now"),
        ("read o_t / read k+2", "read o_t only", "read k+2 frames"),
        ("stage-1 CL / NCHW", "stage-1 update CL", "stage-1 update NCHW"),
        ("stage-2 CL / NCHW", "stage-2 update CL", "stage-2 update NCHW"),
    ]
    by_prefix = {name.split(" (")[0]: rate for name, rate in med.items()}
    print("ratios:")
    for title, a, b in pairs:
        print(f"  {title:32s} {by_prefix[a] / by_prefix[b]:.2f}")


if __name__ == "__main__":
    main()
