"""LAPO stage-1 training samples/s (IDM + FDM forward, backward, Adam step), fp32 vs bf16.

For each size preset (``lapo.models.lam_sizes.LAM_SIZES``) and precision mode, side by side in one
process: builds the IDM and FDM, times a few training steps on random 64x64x3 frames (k = 1) and
prints samples/s, the FLOPs per sample (forward + backward, ``FlopCounterMode``; 2 FLOPs per
multiply-add) and the fraction of the CPU's bf16 peak reached ("of peak"). Because this machine is
often shared, a bf16 matmul rate is measured just before each configuration with the same thread
count, and "of matmul" gives the fraction of that rate: it compares configurations fairly when the
absolute figures are depressed by other processes. The loss is the FDM's MSE against o_{t+1} plus a
small latent regularizer; the quantizer is replaced by the straight-through identity. The first
step of each configuration is a warm-up and is not timed. Modes: ``fp32``, ``fp32+cl``
(channels_last), ``bf16`` (CPU autocast) and ``bf16+cl``.

The header names the CPU's bf16 matrix hardware (AMX tiles or AVX-512 BF16 only, from
``/proc/cpuinfo``): the 2 TFLOP/s of the issue (``--peak-tflops``) is an AMX figure; a CPU with
AVX-512 BF16 alone peaks near its measured matmul rate. "target x matmul" is how many times the
measured matmul rate ``--target`` samples/s would need at this row's FLOPs (above 1: beyond what
this CPU's matrix units deliver, whatever the code does).

Usage: python benchmarks/lam_throughput.py [--sizes paper cpu] [--modes fp32 bf16+cl]
       [--iters 3] [--threads 2] [--target 150] [--fdm norm_groups=8 ...]
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import time
from pathlib import Path

import torch
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

from lapo.config import LAM_PRESETS, LAMConfig
from lapo.device import native_bf16
from lapo.models.lam_sizes import make_lam_nets

BATCH = {"paper": 128, "cpu": 64, "smoke": 64}


def cpu_matrix_unit() -> str:
    """``"AMX"``, ``"AVX-512 BF16 (no AMX)"`` or what ``torch`` reports, from ``/proc/cpuinfo``."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return f"unknown ({torch.backends.cpu.get_cpu_capability()})"
    if "amx_bf16" in flags:
        return "AMX"
    if "avx512_bf16" in flags:
        return "AVX-512 BF16 (no AMX)"
    return f"no bf16 matrix unit ({torch.backends.cpu.get_cpu_capability()})"


def matmul_tflops(dtype: torch.dtype, n: int = 2048, reps: int = 10) -> float:
    """Measured n x n matmul rate in TFLOP/s (shows how much of the CPU this process gets now)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b  # warm-up
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e12


def make_step(size: str, mode: str, batch: int, fdm_overrides: dict):
    """One training step as a closure, plus the loss function, the batch and (IDM, FDM).

    The networks carry the options of the stage-1 preset of that name (the ``cpu`` preset's IDM
    has its own channel multiplier and sees frame differences; its FDM predicts the change)."""
    torch.manual_seed(0)
    preset = LAMConfig(**LAM_PRESETS[size])
    options = {
        "frame_differences": preset.idm_frame_differences,
        "idm_multiplier": preset.idm_multiplier,
        "residual": preset.fdm_residual,
    }
    idm, fdm = make_lam_nets(size, **{**options, **fdm_overrides})
    if mode.endswith("+cl"):
        idm, fdm = (
            idm.to(memory_format=torch.channels_last),
            fdm.to(memory_format=torch.channels_last),
        )
    bf16 = mode.startswith("bf16")
    params = [*idm.parameters(), *fdm.parameters()]
    opt = torch.optim.Adam(params, lr=2e-4)
    frames = torch.rand(batch, 3, 3, 64, 64) - 0.5  # (B, k+2, C, H, W): o_{t-1}, o_t, o_{t+1}

    def loss_fn(x: torch.Tensor) -> torch.Tensor:
        amp = torch.autocast("cpu", torch.bfloat16) if bf16 else contextlib.nullcontext()
        with amp:
            z = idm(x)  # (B, latent): straight-through identity in place of the quantizer
            pred = fdm(x[:, :-1], z)  # (B, C, H, W)
        return F.mse_loss(pred, x[:, -1]) + 0.05 * z.pow(2).mean()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss_fn(frames).backward()
        opt.step()

    return step, loss_fn, frames, (idm, fdm)


def measure(size: str, mode: str, batch: int, iters: int, fdm_overrides: dict) -> dict:
    step, loss_fn, frames, models = make_step(size, mode, batch, fdm_overrides)
    with FlopCounterMode(display=False) as counter:
        loss_fn(frames[:2]).backward()
    step()  # warm-up (oneDNN primitive creation, allocator)
    t0 = time.perf_counter()
    for _ in range(iters):
        step()
    elapsed = time.perf_counter() - t0
    return {
        "params": [sum(p.numel() for p in m.parameters()) for m in models],
        "gflop": counter.get_total_flops() / 2 / 1e9,
        "sps": iters * batch / elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["paper", "cpu"])
    parser.add_argument("--modes", nargs="+", default=["fp32", "bf16", "bf16+cl"])
    parser.add_argument("--iters", type=int, default=3, help="timed steps per configuration")
    parser.add_argument("--batch", type=int, default=0, help="0: 128 for paper, 64 otherwise")
    parser.add_argument("--peak-tflops", type=float, default=2.0, help="bf16 peak of the CPU")
    parser.add_argument("--target", type=float, default=150.0, help="samples/s target (paper)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0: torch's default")
    parser.add_argument("--fdm", nargs="*", default=[], help="FDM overrides, KEY=VALUE")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = {k: ast.literal_eval(v) for k, v in (kv.split("=", 1) for kv in args.fdm)}
    # Without native bf16 a 2048^3 bf16 matmul takes minutes (reference code); use fp32 there.
    matmul_dtype = torch.bfloat16 if native_bf16("cpu")[0] else torch.float32
    print(
        f"CPU bf16 matrix unit: {cpu_matrix_unit()}; threads {torch.get_num_threads()}; "
        f"'of peak' is of {args.peak_tflops} TFLOP/s; "
        f"'of matmul' is of the {matmul_dtype} matmul rate measured before each row; "
        f"fdm {overrides}"
    )
    print(
        f"{'size':>6} {'mode':>8} {'batch':>5} {'IDM/FDM params':>15} {'GFLOP/sample':>12} "
        f"{'samples/s':>9} {'of peak':>7} {'matmul TFLOP/s':>14} {'of matmul':>9} "
        f"{'target x matmul':>15}"
    )
    for size in args.sizes:
        batch = args.batch or BATCH[size]
        for mode in args.modes:
            matmul = matmul_tflops(matmul_dtype)
            r = measure(size, mode, batch, args.iters, overrides)
            params = "/".join(f"{p / 1e6:.2f}M" for p in r["params"])
            tflops = r["sps"] * r["gflop"] / 1e3
            print(
                f"{size:>6} {mode:>8} {batch:>5} {params:>15} {r['gflop']:12.2f} "
                f"{r['sps']:9.1f} {tflops / args.peak_tflops:7.1%} {matmul:14.2f} "
                f"{tflops / matmul:9.1%} {args.target * r['gflop'] / 1e3 / matmul:15.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
