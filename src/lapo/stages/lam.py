"""Stage 1: train the latent action model (``lapo train-lam``), paper section 4.1.

Loss: next-frame MSE of the FDM's prediction of o_{t+1} plus the VQ commitment loss; Adam with
warm-up and linear decay; gradients clipped to global norm 2 (the release's). Runs unchanged under
``torchrun`` (DistributedDataParallel; each rank draws its own batches; the quantizer all-reduces
its EMA statistics). Checkpoints hold weights, optimizer, RNG and the update count, which is the
whole data-order state (batch b is a pure function of the seed, rank and b), so a resumed run
ends with bitwise the weights of an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from lapo.checkpoint import CHECKPOINT, checkpoint_exists, load_checkpoint, read_meta
from lapo.config import LAMConfig
from lapo.data import (
    LapoDataset,
    Prefetcher,
    WindowBatchSampler,
    WindowIndex,
    manifest_digest,
    open_dataset,
    split_windows,
)
from lapo.device import autocast, resolve_device
from lapo.eval.latent_quality import latent_quality, window_batch
from lapo.models.lam import LatentActionModel, check_lam_frames, frames_to_float
from lapo.paths import write_json_atomic
from lapo.rng import set_rng_state
from lapo.runtime import check_resume_config, save_training_checkpoint
from lapo.safety import holds_lock
from lapo.training_loop import TrainingLoop

#: Batches read ahead of the update that uses them (``lapo.data.Prefetcher``).
PREFETCH_DEPTH = 2


def _distributed() -> tuple[int, int]:
    """Join the torchrun process group if there is one; return (rank, world_size)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    if torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def distinct_rows(rows: torch.Tensor) -> int | torch.Tensor:
    """How many different rows ``rows (B, N) int`` holds: an int on the CPU
    (``torch.unique``); on an accelerator a 0-d int64 tensor computed there without reading
    anything back (rows sorted lexicographically by N stable sorts, then adjacent rows compared),
    so the update after it can be queued while it runs."""
    if rows.device.type == "cpu":
        return torch.unique(rows, dim=0).shape[0]
    return _distinct_rows_sorting(rows)


def _distinct_rows_sorting(rows: torch.Tensor) -> torch.Tensor:
    """``distinct_rows`` by sorting, on ``rows``' device: a 0-d int64 tensor."""
    order = torch.arange(len(rows), device=rows.device)
    for column in reversed(range(rows.shape[1])):  # least significant column first
        order = order[torch.argsort(rows[order, column], stable=True)]
    ordered = rows[order]
    return 1 + (ordered[1:] != ordered[:-1]).any(dim=1).sum()


def _losses(model, frames: torch.Tensor, bf16: bool) -> tuple[torch.Tensor, dict]:
    with autocast(frames.device, bf16):
        out = model(frames)
    mse = F.mse_loss(out.prediction.float(), frames[:, -1])
    loss = mse + out.vq.commitment_loss
    stats = {"fdm_mse": mse.detach(), "commitment": out.vq.commitment_loss.detach()}
    if out.vq.perplexity is not None:
        for g, p in enumerate(out.vq.perplexity):
            stats[f"perplexity/{g}"] = p.detach()
    if out.vq.indices is not None:  # windows of the batch with different joint codes
        joint = out.vq.indices.flatten(1)  # (B, G * L)
        stats["distinct_codes"] = distinct_rows(joint)
    return loss, stats


def collapse_warning(metrics: dict, config: LAMConfig, step: int) -> str | None:
    """A warning when every window of every batch since the last log got the same joint code.

    ``metrics`` are ``_summarize``'s at update ``step`` (``train/distinct_codes`` is a mean over
    batches). A collapsed codebook gives the FDM no information about the action. None when the
    codes vary, there is no codebook, dead-code restarts are on (they revive collapsed codes
    within a few hundred updates) or ``step`` is before the second log.
    """
    distinct = metrics.get("train/distinct_codes")
    if distinct is None or distinct > 1.0 or config.restart_dead_codes:
        return None
    if step < 2 * config.log_every:
        return None
    return (
        f"warning: the codebook has collapsed at update {step} (every window gets the same "
        f"code), so the latent action tells the FDM nothing; dead-code restarts usually "
        f"revive it (--restart-dead-codes; lapo run: --set lam.restart_dead_codes=true)"
    )


@torch.no_grad()
def evaluate_loss(
    model, index: WindowIndex, config: LAMConfig, device: torch.device, batches: int = 8
) -> dict[str, float]:
    """Mean FDM MSE and PSNR (dB, signal range 1) on fixed held-out windows."""
    model.eval()
    sampler = WindowBatchSampler(
        len(index), config.batch_size, seed=config.seed + 1, rank=0, world_size=1
    )
    losses = []
    for b in range(batches):
        frames = window_batch(index, sampler.batch(b), device)
        losses.append(float(_losses(model, frames, config.bf16)[1]["fdm_mse"]))
    mse = np.mean(losses)
    model.train()
    return {"test/fdm_mse": float(mse), "test/psnr": float(-10 * math.log10(max(mse, 1e-12)))}


def weights_digest(model: torch.nn.Module) -> str:
    """sha256 of every parameter and buffer (to compare replicas, e.g. DDP ranks)."""

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy())
    return digest.hexdigest()


def _save(
    path: Path, model, optimizer, config: LAMConfig, step: int, dataset: LapoDataset, metrics: dict
) -> None:
    info = {
        "frame_shape": list(dataset.frame_shape),
        "data": str(dataset.path),
        "data_manifest_sha256": manifest_digest(dataset),
    }
    save_training_checkpoint(
        path, kind="latent-action-model", model=model, module_name="lam", optimizer=optimizer,
        config=config, step=step, metrics=metrics, info=info,
    )  # fmt: skip


def _restore(path: Path, model, optimizer, config: LAMConfig, dataset: LapoDataset) -> int:
    meta = read_meta(path)
    check_resume_config(config, meta["config"], path)
    if meta["data_manifest_sha256"] != manifest_digest(dataset):
        raise ValueError(
            f"cannot resume {path}: it was trained on {meta['data']}, whose "
            f"manifest differs from {dataset.path}'s"
        )
    ckpt = load_checkpoint(path, modules={"lam": model}, optimizers={"optimizer": optimizer})
    set_rng_state(ckpt.tensors, meta["rng"])
    return int(meta["step"])


def _build(config: LAMConfig, dataset: LapoDataset, device: torch.device):
    """Seeded model (channels_last, on ``device``) and its Adam optimizer."""
    torch.manual_seed(config.seed)
    h, _, c = dataset.frame_shape
    model = LatentActionModel(config, channels=c, image_size=h).to(device)
    model = model.to(memory_format=torch.channels_last)
    return model, torch.optim.Adam(model.parameters(), lr=config.learning_rate)


def _summarize(
    means: dict, count: int, seconds: float, model, config: LAMConfig, step: int
) -> dict:
    """Mean training statistics since the last log, learning rate, speed and code usage."""
    metrics = {f"train/{k}": v for k, v in means.items()}
    metrics["lr"] = config.learning_rate_at(step - 1)
    metrics["samples_per_second"] = count * config.batch_size / seconds
    if getattr(model.quantizer, "num_used_codes", None):
        for g, n in enumerate(model.quantizer.num_used_codes().tolist()):
            metrics[f"codes_used/{g}"] = n
    return metrics


def check_inputs(config: LAMConfig, data_dir: str | Path) -> None:
    """Check stage 1's inputs before any work (nothing is created): the dataset opens, its
    frames fit the model (``check_lam_frames``) and both the train and the test split hold a
    window (``split_windows``; one episode: its tail is held out).

    Raises:
        lapo.data.DatasetError: invalid data, or no window in a split (the reason is named).
        ValueError: frames of a shape the model cannot take (expected and found are named).
    """
    with open_dataset(data_dir) as dataset:
        check_lam_frames(config, dataset.frame_shape, str(dataset.path))
        split_windows(dataset, config.context, config.test_fraction, config.seed)


@holds_lock(
    lambda a: a["run_dir"],
    inputs=lambda a: [a["data_dir"]],
    before=lambda a: check_inputs(a["config"], a["data_dir"]),
)
def train_lam(
    config: LAMConfig,
    data_dir: str | Path,
    run_dir: str | Path,
    *,
    resume: bool = False,
    time_budget_s: float | None = None,
    progress: bool = True,
    device: str | torch.device | None = None,
) -> dict:
    """Train (or resume) the latent action model on the dataset ``data_dir`` in ``run_dir``.

    Files written by rank 0: ``checkpoint.json`` + ``checkpoint.*.safetensors``, ``metrics.jsonl``,
    ``tb/`` and, when the data has true actions, ``latent_quality.json`` (probe accuracy, NMI,
    per-code action histogram on held-out episodes). Logged x-axis: updates.

    Holds ``run_dir``'s lock (``lapo.safety.exclusive``, rank 0) for the whole call.

    Args:
        time_budget_s: stop with a checkpoint after this many seconds (resume later); >= 0.
        device: default ``cuda`` when available (with ``LOCAL_RANK`` under torchrun), else cpu.

    Returns:
        The last logged metrics, the latent-quality summary when computed,
        ``weights_sha256`` (a digest of this rank's final weights and buffers) and
        ``stop_reason`` (None when all steps ran, else ``time budget``, ``SIGINT``, ...).

    Raises:
        FileExistsError: ``run_dir`` holds a checkpoint and ``resume`` is False.
        ValueError: resuming with another config or dataset; batch size not divisible by ranks;
            a negative ``time_budget_s``; ``run_dir`` is, contains or lies inside ``data_dir``;
            frames the model cannot take (``check_inputs``, before ``run_dir`` is created).
        lapo.safety.InUseError: another lapo process holds ``run_dir``.
        FloatingPointError: a non-finite loss; names the update, keeps the last good checkpoint.
        lapo.data.DatasetError: invalid data or no window of k + 2 frames.
    """
    run_dir, ckpt_path = Path(run_dir), Path(run_dir) / CHECKPOINT
    if checkpoint_exists(ckpt_path) and not resume:
        raise FileExistsError(
            f"{run_dir} already holds a run; pass resume=True (--resume) to continue it"
        )
    rank, world = _distributed()
    if config.batch_size % world:
        raise ValueError(f"batch_size {config.batch_size} is not divisible by {world} ranks")
    device = resolve_device(device)  # CUDA (the local rank's under torchrun), MPS, CPU
    dataset = open_dataset(data_dir)
    train_index, test_index = split_windows(dataset, config.context, config.test_fraction,
                                            config.seed)  # fmt: skip
    model, optimizer = _build(config, dataset, device)
    step = 0
    if resume and checkpoint_exists(ckpt_path):
        step = _restore(ckpt_path, model, optimizer, config, dataset)
    trained = (
        torch.nn.parallel.DistributedDataParallel(model, broadcast_buffers=False)
        if world > 1
        else model
    )
    if config.compile:  # same weights and state dict; the first updates pay for compilation
        trained = torch.compile(trained)
    sampler = WindowBatchSampler(
        len(train_index), config.batch_size // world, seed=config.seed, rank=rank, world_size=world
    )
    # batch b read ahead on a background thread (uint8, pinned on CUDA), floats made on the device
    batches = Prefetcher(
        lambda b: (train_index.read(np.asarray(sampler.batch(b))),), range(step, config.steps),
        device, depth=PREFETCH_DEPTH,
    )  # fmt: skip
    warned = False

    def on_log(done: int, metrics: dict) -> None:
        nonlocal warned
        warning = collapse_warning(metrics, config, done)
        if warning and not warned and rank == 0:
            tqdm.write(warning)
            warned = True

    loop = TrainingLoop(
        run_dir, total=config.steps, start=step, log_every=config.log_every,
        eval_every=config.eval_every, checkpoint_every=config.checkpoint_every,
        save=lambda done, m: _save(ckpt_path, model, optimizer, config, done, dataset, m),
        summarize=lambda means, n, secs, done: _summarize(means, n, secs, model, config, done),
        evaluate=lambda done: evaluate_loss(model, test_index, config, device),
        on_log=on_log, time_budget_s=time_budget_s, progress=progress, main=rank == 0,
    )  # fmt: skip
    with batches:
        for step in loop:
            for group in optimizer.param_groups:
                group["lr"] = config.learning_rate_at(step)
            (frames,) = batches.get(step)  # (B, k+2, H, W, C) uint8 on the device
            frames = frames_to_float(frames)  # (B, k+2, C, H, W) float, channels_last
            loss, stats = _losses(trained, frames, config.bf16)  # next-frame MSE + commitment
            loop.check_finite(loss, step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            stats["grad_norm"] = torch.nn.utils.clip_grad_norm_(
                model.parameters(), config.grad_clip
            )
            optimizer.step()
            loop.record(stats)
    step, metrics = loop.step, dict(loop.metrics)
    metrics["weights_sha256"] = weights_digest(model)
    metrics["stop_reason"] = loop.stop_reason  # None: all steps done
    finished = step == config.steps or loop.stop_reason == "time budget"
    if finished and rank == 0 and dataset.has_actions:
        quality = latent_quality(model, test_index, config)
        write_json_atomic(run_dir / "latent_quality.json", quality)
        metrics |= {k: v for k, v in quality.items() if isinstance(v, float)}
    return metrics
