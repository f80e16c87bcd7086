"""Stage 2: latent behaviour cloning (``lapo train-bc``), paper section 4.2.

A latent policy pi(o_t) regresses the frozen IDM's latent action z_t with MSE; no true action is
used. z_t is the IDM's continuous, pre-quantization output (as the release) or, as an option, the
quantizer's output.

Latents are computed once before training and cached in the run directory (``latents-train.npy``,
``latents-test.npy``, each written atomically with a stamp ``latents-<split>.json`` holding the
IDM's weight digest, the sha256 of the stage-1 checkpoint and of the dataset manifest, the target
and the window count, so a stale cache is never reused) rather than on the fly: on 2 CPU
cores the IDM forward costs about as much as a policy update, and caching labels each window once
(``benchmarks/bc_labelling.py`` prints both costs). The train/test episode split is stage 1's.
Checkpoints hold weights, optimizer, RNG and the update count (the whole data-order state), so a
resumed run ends with bitwise the weights of an uninterrupted one.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from lapo.checkpoint import (
    checkpoint_digest,
    checkpoint_exists,
    load_checkpoint,
    meta_errors,
    read_meta,
)
from lapo.config import BCConfig, LAMConfig
from lapo.data import (
    DatasetError,
    Prefetcher,
    WindowBatchSampler,
    WindowIndex,
    manifest_digest,
    open_dataset,
    split_windows,
)
from lapo.data.prefetch import to_device
from lapo.device import autocast, resolve_device
from lapo.load import CHECKPOINT, LAM_KIND, check_finished, expect_kind, load_lam
from lapo.models.build import build_latent_policy, check_policy_frames
from lapo.models.lam import ACCELERATOR_LABEL_BATCH, LatentActionModel, frames_to_float
from lapo.paths import atomic_file, write_json_atomic
from lapo.rng import set_rng_state
from lapo.runtime import check_resume_config, save_training_checkpoint
from lapo.safety import holds_lock
from lapo.stages.lam import PREFETCH_DEPTH, weights_digest
from lapo.training_loop import TrainingLoop


@torch.no_grad()
def label_windows(
    lam: LatentActionModel,
    index: WindowIndex,
    target: str = "continuous",
    bf16: bool = True,
    batch_size: int | None = None,
    progress: bool = False,
) -> np.ndarray:
    """The IDM's latent action for every window of ``index``, computed on ``lam``'s device.

    Windows are read as uint8 on a background thread (``lapo.data.Prefetcher``) while the IDM
    labels the previous batch; only the frames of the batches in flight are in memory.

    Args:
        lam: a trained latent action model (eval mode).
        target: ``continuous`` (pre-quantization z_t) or ``quantized``.
        bf16: autocast to bf16 where the device computes it natively (``lapo.device``).
        batch_size: windows per IDM forward pass; None: 256 on the CPU,
            ``lapo.models.lam.ACCELERATOR_LABEL_BATCH`` on an accelerator.

    Returns:
        ``(len(index), latent_dim) float32``, row w for window w.
    """
    device = next(lam.parameters()).device
    if batch_size is None:
        batch_size = 256 if device.type == "cpu" else ACCELERATOR_LABEL_BATCH
    out = np.empty((len(index), lam.latent_dim), dtype=np.float32)
    starts = range(0, len(index), batch_size)

    def read(start: int) -> tuple[np.ndarray]:
        return (index.read(np.arange(start, min(start + batch_size, len(index)))),)

    with Prefetcher(read, starts, device, depth=2) as batches:
        for start in tqdm(starts, disable=not progress, desc="labelling", unit="batch",
                          mininterval=1.0):  # fmt: skip
            (frames,) = batches.get(start)  # (B, k+2, H, W, C) uint8 on the device
            with autocast(device, bf16):
                latent = lam.idm(frames_to_float(frames))  # (B, D)
                if target == "quantized":
                    latent = lam.quantizer(latent).quantized
            out[start : start + len(frames)] = latent.float().cpu().numpy()
    return out


def label_stamp(lam_path: str | Path, lam_digest: str, dataset, target: str, windows: int) -> dict:
    """What identifies stage 2's cached labels of one split: the IDM's weight digest
    (``weights_digest``), the content hashes of the stage-1 checkpoint (``checkpoint_digest``)
    and of the dataset's manifest (``manifest_digest``, which holds every file's sha256), the
    target and the number of windows."""
    return {
        "lam_weights_sha256": lam_digest,
        "lam_checkpoint_sha256": checkpoint_digest(lam_path),
        "data_manifest_sha256": manifest_digest(dataset),
        "target": target,
        "windows": windows,
    }


def label_stamps(
    lam_path: str | Path,
    lam_digest: str,
    dataset,
    target: str,
    train_index: WindowIndex,
    test_index: WindowIndex,
) -> dict:
    """``label_stamp`` of both splits, keyed ``train`` and ``test`` (stage 1's window split)."""
    return {
        split: label_stamp(lam_path, lam_digest, dataset, target, len(index))
        for split, index in (("train", train_index), ("test", test_index))
    }


def cached_latents(run_dir: Path, split: str, stamp: dict) -> np.ndarray | None:
    """Stage 2's cached IDM labels ``<run_dir>/latents-<split>.npy`` (``(windows, D) float32``,
    memory-mapped) if its stamp ``latents-<split>.json`` equals ``stamp`` (``label_stamp``) and
    the array has ``stamp["windows"]`` float32 rows, else None (missing, stale or unreadable: the
    caller labels again)."""
    path, stamp_path = run_dir / f"latents-{split}.npy", run_dir / f"latents-{split}.json"
    try:
        if json.loads(stamp_path.read_text()) != stamp:
            return None
        cached = np.load(path, mmap_mode="r")
    except (OSError, ValueError):  # missing, torn by an older lapo, or not JSON / .npy
        return None
    if cached.ndim != 2 or len(cached) != stamp["windows"] or cached.dtype != np.float32:
        return None
    return cached


def _cached_labels(
    run_dir: Path,
    split: str,
    lam,
    stamp: dict,
    index: WindowIndex,
    config: BCConfig,
    progress: bool,
) -> np.ndarray:
    """``latents-<split>.npy`` if ``stamp`` matches its stamp, else compute and save both
    atomically (array first, then the stamp that vouches for it)."""
    cached = cached_latents(run_dir, split, stamp)
    if cached is not None:
        return np.asarray(cached)
    path, stamp_path = run_dir / f"latents-{split}.npy", run_dir / f"latents-{split}.json"
    stamp_path.unlink(missing_ok=True)  # no stamp vouches for an array being replaced
    latents = label_windows(lam, index, config.target, config.bf16, progress=progress)
    run_dir.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as fh:
        np.save(fh, latents)
    write_json_atomic(stamp_path, stamp)
    return latents


def _observations(index: WindowIndex, windows: np.ndarray, device: torch.device) -> torch.Tensor:
    """o_t of the given windows: ``(B, H, W, C) uint8`` on ``device``."""
    return to_device(index.read_current(windows), device)


def _loss(policy, obs: torch.Tensor, target: torch.Tensor, bf16: bool) -> torch.Tensor:
    with autocast(obs.device, bf16):
        prediction = policy(obs)  # (B, D)
    return F.mse_loss(prediction.float(), target)


@torch.no_grad()
def evaluate_bc(
    policy, index: WindowIndex, latents: np.ndarray, config: BCConfig, batches: int = 8
) -> dict[str, float]:
    """Held-out MSE and its ratio to the latents' variance (1.0 = predicting the mean latent)."""
    device = next(policy.parameters()).device
    sampler = WindowBatchSampler(
        len(index), config.batch_size, seed=config.seed + 1, rank=0, world_size=1
    )
    policy.eval()
    losses = []
    for b in range(batches):
        windows = np.asarray(sampler.batch(b))
        target = torch.from_numpy(latents[windows]).to(device)
        losses.append(
            float(_loss(policy, _observations(index, windows, device), target, config.bf16))
        )
    policy.train()
    mse = float(np.mean(losses))
    variance = float(latents.var(axis=0).mean())
    return {"test/mse": mse, "test/relative_mse": mse / max(variance, 1e-12)}


def _save(path: Path, policy, optimizer, config: BCConfig, step: int, info: dict, metrics: dict):
    save_training_checkpoint(
        path, kind="latent-policy", model=policy, module_name="policy", optimizer=optimizer,
        config=config, step=step, metrics=metrics, info=info,
    )  # fmt: skip


def check_inputs(
    config: BCConfig, lam_path: str | Path, data_dir: str | Path, allow_unfinished: bool = False
) -> None:
    """Check stage 2's inputs before any work (nothing is created): a finished (or allowed
    unfinished) stage-1 run, a dataset whose frames are the ones it was trained on and fit the
    policy encoder, and a train and a test split that each hold a window.

    Raises:
        lapo.load.UnfinishedRunError: the stage-1 run is unfinished and not allowed.
        lapo.checkpoint.CheckpointError: ``lam_path`` is not a latent action model, or its
            metadata is malformed.
        lapo.data.DatasetError: invalid data, frames of another shape than stage 1's, or no
            window in a split.
        ValueError: frames the policy encoder cannot take.
    """
    check_finished(lam_path, allow_unfinished=allow_unfinished, what="--lam")
    meta = expect_kind(lam_path, LAM_KIND)
    with meta_errors(lam_path):
        lam_config = LAMConfig(**meta["config"])
        lam_shape = tuple(int(n) for n in meta["frame_shape"])
    with open_dataset(data_dir) as dataset:
        if tuple(dataset.frame_shape) != lam_shape:
            raise DatasetError(
                f"{data_dir}: frames are {tuple(dataset.frame_shape)}, but the latent action "
                f"model was trained on {lam_shape}"
            )
        check_policy_frames(config, dataset.frame_shape, str(dataset.path))
        split_windows(dataset, lam_config.context, lam_config.test_fraction, lam_config.seed)


@holds_lock(
    lambda a: a["run_dir"],
    inputs=lambda a: [a["lam_path"], a["data_dir"]],
    before=lambda a: check_inputs(
        a["config"], a["lam_path"], a["data_dir"], a["allow_unfinished"]
    ),  # fmt: skip
)
def train_bc(
    config: BCConfig,
    lam_path: str | Path,
    data_dir: str | Path,
    run_dir: str | Path,
    *,
    resume: bool = False,
    allow_unfinished: bool = False,
    time_budget_s: float | None = None,
    progress: bool = True,
    device: str | torch.device | None = None,
) -> dict:
    """Train (or resume) a latent policy on ``data_dir`` labelled by the IDM of ``lam_path``.

    Files in ``run_dir``: ``checkpoint.json`` + ``checkpoint.*.safetensors`` (kind
    ``latent-policy``), ``latents-{train,test}.npy`` (the cached IDM labels), ``metrics.jsonl``,
    ``tb/``. Logged x-axis: updates.

    Holds ``run_dir``'s lock (``lapo.safety.exclusive``) for the whole call.

    Args:
        allow_unfinished: accept a stage-1 run that stopped before its last update.
        time_budget_s: stop with a checkpoint after this many seconds (resume later); >= 0.
        device: default ``cuda`` when available, else cpu.

    Returns:
        The last logged metrics (``train/mse``, ``test/mse``, ``test/relative_mse``, ...) and
        ``stop_reason`` (None when all steps ran, else ``time budget``, ``SIGINT``, ...).

    Raises:
        FileExistsError: ``run_dir`` holds a checkpoint and ``resume`` is False.
        ValueError: resuming with another config, latent action model or dataset; a negative
            ``time_budget_s``; ``run_dir`` is, contains or lies inside an input.
        lapo.load.UnfinishedRunError: the stage-1 run is unfinished and not ``allow_unfinished``.
        lapo.safety.InUseError: another lapo process holds ``run_dir``.
        FloatingPointError: a non-finite loss; names the update, keeps the last good checkpoint.
        lapo.checkpoint.CheckpointError: ``lam_path`` is not a latent action model.
        lapo.data.DatasetError: invalid data, or frames of another shape than stage 1's.
    """
    run_dir = Path(run_dir)
    ckpt = run_dir / CHECKPOINT
    if checkpoint_exists(ckpt) and not resume:
        raise FileExistsError(
            f"{run_dir} already holds a run; pass resume=True (--resume) to continue it"
        )
    device = resolve_device(device)
    lam, lam_config = load_lam(lam_path, device=str(device))
    dataset = open_dataset(data_dir)
    if tuple(dataset.frame_shape) != lam.frame_shape:
        raise DatasetError(
            f"{data_dir}: frames are {tuple(dataset.frame_shape)}, but the latent action model "
            f"was trained on {lam.frame_shape}"
        )
    train_index, test_index = split_windows(dataset, lam_config.context,
                                            lam_config.test_fraction, lam_config.seed)  # fmt: skip
    info = {
        "latent_dim": lam_config.latent_dim,
        "frame_shape": list(dataset.frame_shape),
        "lam": str(lam_path),
        "lam_weights_sha256": weights_digest(lam),
        "data": str(dataset.path),
        "data_manifest_sha256": manifest_digest(dataset),
    }
    torch.manual_seed(config.seed)
    policy = build_latent_policy(config, lam_config.latent_dim, dataset.frame_shape).to(device)
    optimizer = torch.optim.Adam(policy.parameters(), lr=config.learning_rate)
    step = 0
    if resume and checkpoint_exists(ckpt):
        meta = read_meta(ckpt)
        check_resume_config(config, meta["config"], ckpt)
        for key in ("lam_weights_sha256", "data_manifest_sha256"):
            if meta[key] != info[key]:
                raise ValueError(
                    f"cannot resume {ckpt}: {key} differs ({meta[key]} vs "
                    f"{info[key]}); it was trained on other inputs"
                )
        restored = load_checkpoint(
            ckpt, modules={"policy": policy}, optimizers={"optimizer": optimizer}
        )
        set_rng_state(restored.tensors, meta["rng"])
        step = int(meta["step"])
    stamps = label_stamps(lam_path, info["lam_weights_sha256"], dataset, config.target,
                          train_index, test_index)  # fmt: skip
    train_latents = _cached_labels(run_dir, "train", lam, stamps["train"], train_index, config,
                                   progress)  # fmt: skip
    test_latents = _cached_labels(run_dir, "test", lam, stamps["test"], test_index, config,
                                  progress)  # fmt: skip
    del lam
    sampler = WindowBatchSampler(
        len(train_index), config.batch_size, seed=config.seed, rank=0, world_size=1
    )
    trained = torch.compile(policy) if config.compile else policy

    def read(b: int) -> tuple[np.ndarray, np.ndarray]:
        windows = np.asarray(sampler.batch(b))  # o_t (B, H, W, C) uint8, z_t (B, D) float32
        return train_index.read_current(windows), np.asarray(train_latents[windows])

    def summarize(means: dict, count: int, seconds: float, done: int) -> dict:
        return {
            "train/mse": means["mse"],
            "lr": config.learning_rate_at(done - 1),
            "samples_per_second": count * config.batch_size / seconds,
        }

    loop = TrainingLoop(
        run_dir, total=config.steps, start=step, log_every=config.log_every,
        eval_every=config.eval_every, checkpoint_every=config.checkpoint_every,
        save=lambda done, m: _save(ckpt, policy, optimizer, config, done, info, m),
        summarize=summarize,
        evaluate=lambda done: evaluate_bc(policy, test_index, test_latents, config),
        time_budget_s=time_budget_s, progress=progress, desc="latent BC",
    )  # fmt: skip
    with Prefetcher(read, range(step, config.steps), device, depth=PREFETCH_DEPTH) as batches:
        for step in loop:
            for group in optimizer.param_groups:
                group["lr"] = config.learning_rate_at(step)
            obs, target = batches.get(step)  # (B, H, W, C) uint8, (B, D) IDM latents; on device
            loss = _loss(trained, obs, target, config.bf16)  # ||pi(o_t) - z_t||^2
            loop.check_finite(loss, step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loop.record({"mse": loss.detach()})
    metrics = dict(loop.metrics)
    metrics["stop_reason"] = loop.stop_reason  # None: all steps done
    return metrics
