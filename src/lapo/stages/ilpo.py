"""ILPO (Edwards et al. 2019), LAPO's baseline (paper section 6.1, appendix A.4): ``lapo ilpo``.

Offline (``train_ilpo_offline``): on a lapo dataset's transitions (o_t, o_{t+1}) (the windows
reader with k = 0), the latent forward model learns L_min and the latent policy L_exp
(``lapo.models.ilpo``); no true action is used. At the end, the appendix A.4 collapse diagnostic
runs on held-out episodes (``lapo.eval.ilpo_collapse``). Checkpoints hold weights, optimizer,
RNG and the update count, so a resumed offline run ends with bitwise the weights of an
uninterrupted one.

Online (``train_ilpo_online``): the agent acts with pi(a|o) = sum_z pi(z|o) pi_xi(a|o,z)
(epsilon-greedy), labels each of its transitions that stays within an episode with the latent
z* = argmin_z ||o_{t+1} - G(o_t, z)||^2 of the frozen forward model, and trains the remapping
network pi_xi by cross-entropy on (features(o_t), z*) -> a_t after every rollout. Our
simplifications, stated: the offline networks stay frozen online, and a resumed online run keeps
the remapping network, its optimizer and the rollout count but starts with an empty buffer and
fresh environments (it is not bitwise the uninterrupted run).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lapo.checkpoint import CHECKPOINT, checkpoint_exists, load_checkpoint, read_meta
from lapo.config import ILPOConfig
from lapo.data import (
    WindowBatchSampler,
    WindowIndex,
    manifest_digest,
    open_dataset,
    split_episodes,
)
from lapo.device import autocast, resolve_device
from lapo.envs.games import NUM_ACTIONS, OBS_SHAPE, normalized_return
from lapo.envs.procgen import ProcgenVecEnv
from lapo.eval.actors import PolicyActor
from lapo.eval.ilpo_collapse import collapse_diagnostic, write_diagnostic_figures
from lapo.eval.rollouts import evaluate_policy
from lapo.load import ILPO_POLICY_KIND
from lapo.models.build import build_ilpo_model, build_ilpo_policy
from lapo.models.ilpo import ILPOModel, ILPOPolicy, ilpo_losses, transition_errors
from lapo.paths import write_json_atomic
from lapo.rng import set_rng_state
from lapo.runtime import check_resume_config, save_training_checkpoint
from lapo.safety import holds_lock
from lapo.training_loop import TrainingLoop

OFFLINE_KIND = "ilpo-model"
#: Evaluation seed of the online phase's held-out evaluations (``lapo.eval.evaluate.EVAL_SEED``).
EVAL_SEED = 12345


def _batch(index: WindowIndex, windows, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """o_t ``(B, H, W, C) uint8`` and o_{t+1} ``(B, C, H, W) float`` in [-0.5, 0.5]."""
    frames = torch.from_numpy(index.read(np.asarray(windows))).to(device)  # (B, 2, H, W, C)
    return frames[:, 0], frames[:, 1].movedim(-1, -3).float().div(255.0).sub(0.5)


def _losses(model: ILPOModel, obs, next_frame, bf16: bool) -> tuple[torch.Tensor, dict]:
    with autocast(obs.device, bf16):
        predictions, logits = model(obs)  # (B, K, C, H, W), (B, K)
    l_min, l_exp, argmin = ilpo_losses(predictions, logits, next_frame)
    used = torch.bincount(argmin, minlength=model.num_latents).gt(0).sum()
    return l_min + l_exp, {"l_min": l_min.detach(), "l_exp": l_exp.detach(), "latents_used": used}


def _check_resume(config: ILPOConfig, meta: dict, path: Path) -> None:
    """``check_resume_config`` on the stored config rebuilt (JSON lists back to tuples)."""
    check_resume_config(config, dataclasses.asdict(ILPOConfig(**meta["config"])), path)


@torch.no_grad()
def evaluate_offline(model, index: WindowIndex, config: ILPOConfig, device, batches: int = 4):
    """Mean held-out L_min and L_exp on fixed batches."""
    model.eval()
    sampler = WindowBatchSampler(len(index), config.batch_size, seed=config.seed + 1, rank=0,
                                 world_size=1)  # fmt: skip
    stats = [_losses(model, *_batch(index, sampler.batch(b), device), config.bf16)[1]
             for b in range(batches)]  # fmt: skip
    model.train()
    return {f"test/{k}": float(np.mean([float(s[k]) for s in stats])) for k in ("l_min", "l_exp")}


@holds_lock(lambda a: a["run_dir"], inputs=lambda a: [a["data_dir"]])
def train_ilpo_offline(
    config: ILPOConfig,
    data_dir: str | Path,
    run_dir: str | Path,
    *,
    resume: bool = False,
    time_budget_s: float | None = None,
    progress: bool = True,
    device: str | torch.device | None = None,
) -> dict:
    """ILPO's offline phase on ``data_dir``: forward model (L_min) and latent policy (L_exp).

    Files in ``run_dir``: ``checkpoint.json`` + ``checkpoint.*.safetensors`` (kind
    ``ilpo-model``, module ``ilpo``), ``metrics.jsonl``, ``tb/``, and after the last update the
    appendix A.4 diagnostic ``collapse.json``, ``collapse.png`` and ``fdm_latents.png``.
    Logged x-axis: updates. Holds ``run_dir``'s lock for the whole call.

    Returns:
        The last logged metrics, the diagnostic's scalars (``argmin_max_fraction``,
        ``effective_latents``, ``argmin_action_accuracy`` with true actions, ...) and
        ``stop_reason`` (None when all updates ran).

    Raises:
        FileExistsError: ``run_dir`` holds a checkpoint and ``resume`` is False.
        ValueError: resuming with another config or dataset; a negative ``time_budget_s``.
        lapo.data.DatasetError: invalid data or no transition (o_t, o_{t+1}) in it.
        FloatingPointError: a non-finite loss (names the update; the last checkpoint is kept).
    """
    run_dir, ckpt = Path(run_dir), Path(run_dir) / CHECKPOINT
    if checkpoint_exists(ckpt) and not resume:
        raise FileExistsError(
            f"{run_dir} already holds a run; pass resume=True (--resume) to continue it"
        )
    device = resolve_device(device)
    dataset = open_dataset(data_dir)
    train_eps, test_eps = split_episodes(dataset, config.test_fraction, config.seed)
    train_index = WindowIndex(dataset, 0, train_eps)  # windows (o_t, o_{t+1})
    test_index = WindowIndex(dataset, 0, test_eps if len(test_eps) else train_eps)
    torch.manual_seed(config.seed)
    model = build_ilpo_model(config, dataset.frame_shape).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    info = {"frame_shape": list(dataset.frame_shape), "data": str(dataset.path),
            "data_manifest_sha256": manifest_digest(dataset)}  # fmt: skip
    step = 0
    if resume and checkpoint_exists(ckpt):
        meta = read_meta(ckpt)
        _check_resume(config, meta, ckpt)
        if meta["data_manifest_sha256"] != info["data_manifest_sha256"]:
            raise ValueError(f"cannot resume {ckpt}: it was trained on {meta['data']}")
        restored = load_checkpoint(ckpt, modules={"ilpo": model},
                                   optimizers={"optimizer": optimizer})  # fmt: skip
        set_rng_state(restored.tensors, meta["rng"])
        step = int(meta["step"])
    sampler = WindowBatchSampler(len(train_index), config.batch_size, seed=config.seed, rank=0,
                                 world_size=1)  # fmt: skip

    def summarize(means: dict, count: int, seconds: float, done: int) -> dict:
        metrics = {f"train/{k}": v for k, v in means.items()}
        return metrics | {"samples_per_second": count * config.batch_size / seconds}

    loop = TrainingLoop(
        run_dir, total=config.steps, start=step, log_every=config.log_every,
        eval_every=config.eval_every, checkpoint_every=config.checkpoint_every,
        save=lambda done, m: save_training_checkpoint(
            ckpt, kind=OFFLINE_KIND, model=model, module_name="ilpo", optimizer=optimizer,
            config=config, step=done, metrics=m, info=info),
        summarize=summarize,
        evaluate=lambda done: evaluate_offline(model, test_index, config, device),
        time_budget_s=time_budget_s, progress=progress, desc="ILPO offline",
    )  # fmt: skip
    for step in loop:
        obs, next_frame = _batch(train_index, sampler.batch(step), device)
        loss, stats = _losses(model, obs, next_frame, config.bf16)  # L_min + L_exp
        loop.check_finite(loss, step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        stats["grad_norm"] = torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        loop.record(stats)
    metrics = dict(loop.metrics)
    metrics["stop_reason"] = loop.stop_reason
    if loop.step == config.steps or loop.stop_reason == "time budget":
        model.eval()
        diagnostic = collapse_diagnostic(model, test_index, config.diagnostic_samples)
        write_json_atomic(run_dir / "collapse.json", diagnostic)
        write_diagnostic_figures(model, test_index, diagnostic, run_dir)
        metrics |= {k: v for k, v in diagnostic.items() if isinstance(v, float)}
    return metrics


def load_ilpo_model(path: str | Path, device: str | torch.device = "cpu"):
    """An ``ilpo-model`` checkpoint (a run directory or checkpoint path): model (eval), config.

    Raises:
        FileNotFoundError: no checkpoint there. ValueError: another kind of checkpoint.
    """
    path = Path(path)
    ckpt = path / CHECKPOINT if path.is_dir() else path
    if not checkpoint_exists(ckpt):
        raise FileNotFoundError(f"no ILPO checkpoint at {path} (run lapo ilpo first)")
    meta = read_meta(ckpt)
    if meta.get("kind") != OFFLINE_KIND:
        raise ValueError(f"{ckpt} is a {meta.get('kind')!r} checkpoint, expected {OFFLINE_KIND}")
    config = ILPOConfig(**meta["config"])
    model = build_ilpo_model(config, tuple(meta["frame_shape"]))
    load_checkpoint(ckpt, modules={"ilpo": model}, map_location=device)
    # channels_last: the K decoder passes of the online phase's z* labelling run 1.2-1.5x
    # faster on CPUs (bf16, batch 16); offline training keeps the default format
    return model.to(device, memory_format=torch.channels_last).eval(), config, meta


class RemapBuffer:
    """Ring buffer of the online transitions: features ``(N, F) float32``, z* and a ``(N,) int``."""

    def __init__(self, size: int, features: int) -> None:
        self.features = np.zeros((size, features), np.float32)
        self.latents = np.zeros(size, np.int64)
        self.actions = np.zeros(size, np.int64)
        self.size, self.count, self._next = size, 0, 0

    def add(self, features: np.ndarray, latents: np.ndarray, actions: np.ndarray) -> None:
        """Append the rows of ``features (n, F)``, z* ``latents (n,)`` and ``actions (n,)``,
        overwriting the oldest once ``size`` rows are held.

        Raises:
            ValueError: the three have different lengths (nothing is added then).
        """
        if not len(features) == len(latents) == len(actions):
            raise ValueError(
                f"features, latents and actions must have one row per transition, got "
                f"{len(features)}, {len(latents)} and {len(actions)}"
            )
        for f, z, a in zip(features, latents, actions, strict=True):
            i = self._next
            self.features[i], self.latents[i], self.actions[i] = f, z, a
            self._next, self.count = (i + 1) % self.size, min(self.count + 1, self.size)


@torch.no_grad()
def _act_and_label(model: ILPOModel, policy: ILPOPolicy, obs, env, config, rng, generator):
    """One vector step: sample actions (epsilon-greedy), step, and z* of each in-episode
    transition. Returns ``(step result, features, z*, actions, valid mask)``."""
    device = next(policy.parameters()).device
    obs_t = torch.from_numpy(obs).to(device)
    with autocast(device, config.bf16):
        features = policy.latent_policy.features(obs_t)  # (N, F)
        logits = policy.log_probs(features)  # (N, A) log pi(a | o_t)
    features = features.float()
    probs = logits.float().exp().cpu()  # sampled on the CPU with the seeded generator
    actions = torch.multinomial(probs, 1, generator=generator)[:, 0].numpy()
    explore = rng.random(len(actions)) < config.exploration
    actions = np.where(explore, rng.integers(0, NUM_ACTIONS, len(actions)), actions)
    step = env.step(actions)
    valid = ~step.done  # a done step's next observation starts a new episode
    latents = np.zeros(0, np.int64)
    if valid.any():
        with autocast(device, config.bf16):
            valid_obs = obs_t[torch.from_numpy(valid).to(device)]
            predictions = model.predict(valid_obs)  # (n, K, C, H, W)
        nxt = torch.from_numpy(step.obs[valid]).to(device)
        nxt = nxt.movedim(-1, -3).float().div(255.0).sub(0.5)  # (n, C, H, W)
        latents = transition_errors(predictions, nxt).argmin(1).cpu().numpy()  # z*
    return step, features.cpu().numpy()[valid], latents, actions[valid], valid


@holds_lock(lambda a: a["run_dir"], inputs=lambda a: [a["offline_dir"]])
def train_ilpo_online(
    config: ILPOConfig,
    offline_dir: str | Path,
    run_dir: str | Path,
    *,
    resume: bool = False,
    time_budget_s: float | None = None,
    progress: bool = True,
    device: str | torch.device | None = None,
) -> dict:
    """ILPO's online phase: train the action-remapping network in ``config.env``.

    Files in ``run_dir``: ``checkpoint.json`` + ``.safetensors`` (kind ``ilpo-policy``, an
    acting policy for ``lapo evaluate``), ``metrics.jsonl`` with ``env_steps``,
    ``return/train_normalized``, ``remap/loss``, ``remap/accuracy`` per rollout and
    ``return/eval_normalized`` every ``eval_every_rollouts`` rollouts and at the end.

    Args:
        device: where the networks run (default: CUDA when available, else CPU); environments
            and the buffer stay on the CPU.

    Returns:
        The last logged metrics and ``stop_reason``.

    Raises:
        FileExistsError: ``run_dir`` holds a checkpoint and ``resume`` is False.
        FileNotFoundError / ValueError: ``offline_dir`` holds no ILPO model; resuming with
            another config.
        ValueError: ``online_steps`` is below one rollout.
    """
    run_dir, ckpt = Path(run_dir), Path(run_dir) / CHECKPOINT
    if checkpoint_exists(ckpt) and not resume:
        raise FileExistsError(
            f"{run_dir} already holds a run; pass resume=True (--resume) to continue it"
        )
    if config.num_rollouts < 1:
        raise ValueError(f"online_steps ({config.online_steps}) must be >= one rollout "
                         f"(num_envs * num_steps = {config.rollout_size})")  # fmt: skip
    device = resolve_device(device)
    model, _, offline_meta = load_ilpo_model(offline_dir, device)
    frame_shape = tuple(offline_meta["frame_shape"])
    torch.manual_seed(config.seed)
    policy = build_ilpo_policy(config, NUM_ACTIONS, frame_shape)
    policy = policy.to(device, memory_format=torch.channels_last)
    policy.latent_policy.load_state_dict(model.latent_policy.state_dict())
    policy.eval()
    optimizer = torch.optim.Adam(policy.remap.parameters(), lr=config.remap_learning_rate)
    info = {"frame_shape": list(frame_shape), "num_actions": NUM_ACTIONS,
            "offline": str(Path(offline_dir).resolve())}  # fmt: skip
    start = 0
    if resume and checkpoint_exists(ckpt):
        meta = read_meta(ckpt)
        _check_resume(config, meta, ckpt)
        load_checkpoint(ckpt, modules={"policy": policy}, optimizers={"optimizer": optimizer},
                        map_location=device)  # fmt: skip
        start = int(meta["step"])
    env = ProcgenVecEnv.from_config(config)
    obs = env.reset()
    rng = np.random.default_rng([config.seed, start])
    generator = torch.Generator().manual_seed(config.seed + start)
    buffer = RemapBuffer(config.buffer_size, config.features)
    episodes: list[float] = []
    logged = [start]  # rollouts done at the last log

    def summarize(means: dict, count: int, seconds: float, done: int) -> dict:
        # ``count`` is remap updates (remap_updates per rollout), not rollouts
        metrics = {f"remap/{k}": v for k, v in means.items()}
        metrics["env_steps"] = done * config.rollout_size
        metrics["steps_per_second"] = (done - logged[0]) * config.rollout_size / seconds
        logged[0] = done
        if episodes:
            metrics["return/train_normalized"] = float(np.mean(episodes))
            episodes.clear()
        return metrics

    def evaluate(done: int) -> dict:
        if not config.eval_every_rollouts and done != config.num_rollouts:
            return {}
        actor = PolicyActor(policy, bf16=config.bf16, seed=EVAL_SEED)
        result = evaluate_policy(
            actor.act, config.env, config.eval_episodes, start_level=config.eval_start_level,
            num_levels=config.eval_num_levels, num_envs=min(config.eval_episodes, 16),
            distribution_mode=config.distribution_mode, seed=EVAL_SEED,
        )  # fmt: skip
        return {"return/eval_normalized": result.normalized, "return/eval": result.mean}

    every = config.eval_every_rollouts or config.num_rollouts
    loop = TrainingLoop(
        run_dir, total=config.num_rollouts, start=start, log_every=1, eval_every=every,
        checkpoint_every=every,
        save=lambda done, m: save_training_checkpoint(
            ckpt, kind=ILPO_POLICY_KIND, model=policy, module_name="policy", optimizer=optimizer,
            config=config, step=done, metrics=m, info=info),
        summarize=summarize, evaluate=evaluate, time_budget_s=time_budget_s, progress=progress,
        desc="ILPO online",
    )  # fmt: skip
    for _ in loop:
        for _ in range(config.num_steps):
            step, feats, latents, actions, _ = _act_and_label(
                model, policy, obs, env, config, rng, generator
            )
            buffer.add(feats, latents, actions)
            episodes += [normalized_return(config.env, e.episode_return) for e in step.episodes]
            obs = step.obs
        if buffer.count == 0:
            continue
        for _ in range(config.remap_updates):  # cross-entropy of a_t given (o_t, z*)
            idx = rng.integers(0, buffer.count, config.remap_batch_size)
            logits = policy.remap(torch.from_numpy(buffer.features[idx]).to(device),
                                  torch.from_numpy(buffer.latents[idx]).to(device))  # fmt: skip
            target = torch.from_numpy(buffer.actions[idx]).to(device)
            loss = F.cross_entropy(logits, target)
            loop.check_finite(loss, loop.step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loop.record({"loss": loss.detach(),
                         "accuracy": (logits.argmax(-1) == target).float().mean()})  # fmt: skip
    env.close()
    metrics = dict(loop.metrics)
    metrics["stop_reason"] = loop.stop_reason
    return metrics


def check_ilpo_data(config: ILPOConfig, data_dir: str | Path, resumed: Path | None) -> None:
    """Refuse, before any training, data the run cannot use: another dataset than the offline
    checkpoint ``resumed`` was trained on (it would be reused silently once finished), and, when
    the online phase will run (``online_steps > 0``, always in a Procgen game), a recording of
    another game or frames other than Procgen's ``(64, 64, 3)``.

    Raises:
        ValueError: the message names what differs.
    """
    with open_dataset(data_dir) as dataset:
        digest, shape = manifest_digest(dataset), tuple(dataset.frame_shape)
        game = (dataset.manifest.get("source") or {}).get("game")
    if resumed is not None and checkpoint_exists(resumed):
        meta = read_meta(resumed)
        if meta.get("data_manifest_sha256") not in (None, digest):
            raise ValueError(f"cannot resume {resumed}: it was trained on {meta.get('data')}, not "
                             f"{data_dir} (another dataset): choose another --out")  # fmt: skip
    if config.online_steps == 0:
        return
    if game is not None and game != config.env:
        raise ValueError(
            f"{data_dir} was recorded in {game}, but the online phase plays {config.env}: pass "
            f"--env {game}, or --online-steps 0 for the offline phase alone"
        )
    if shape != OBS_SHAPE:
        raise ValueError(
            f"{data_dir} holds frames of shape {shape}; the online phase plays Procgen, whose "
            f"frames are {OBS_SHAPE}: import the data at 64x64 RGB, or pass --online-steps 0"
        )


def run_ilpo(
    config: ILPOConfig,
    data_dir: str | Path,
    out: str | Path,
    *,
    resume: bool = False,
    time_budget_s: float | None = None,
    progress: bool = True,
    device: str | torch.device | None = None,
) -> dict:
    """``lapo ilpo``: the offline phase in ``out/offline``, then (``online_steps > 0``) the online
    phase in ``out/online``. An offline phase that ran all its updates is reused when resuming
    (one stopped by its time budget continues).

    Returns:
        ``{"offline": metrics, "online": metrics or None, "stop_reason": ...}``.

    Raises:
        ValueError: data the run cannot use (``check_ilpo_data``), before any training.
    """
    out = Path(out)
    offline_dir, online_dir = out / "offline", out / "online"
    ckpt = offline_dir / CHECKPOINT
    check_ilpo_data(config, data_dir, ckpt if resume else None)
    offline_done = (
        resume
        and (offline_dir / "collapse.json").exists()
        and checkpoint_exists(ckpt)
        and int(read_meta(ckpt)["step"]) >= config.steps
    )
    offline = {} if offline_done else train_ilpo_offline(
        config, data_dir, offline_dir, resume=resume, time_budget_s=time_budget_s,
        progress=progress, device=device)  # fmt: skip
    if offline_done:
        offline = json.loads((offline_dir / "collapse.json").read_text())
    if offline.get("stop_reason") is not None or config.online_steps == 0:
        return {"offline": offline, "online": None, "stop_reason": offline.get("stop_reason")}
    online = train_ilpo_online(config, offline_dir, online_dir, resume=resume,
                               time_budget_s=time_budget_s, progress=progress,
                               device=device)  # fmt: skip
    return {"offline": offline, "online": online, "stop_reason": online.get("stop_reason")}
