"""LAPO stage 3 online (paper section 4.3; results section 6.1, Figure 3): PPO fine-tuning of the
latent policy (``lapo finetune``) and PPO from scratch on the same network (``lapo ppo``).
For a continuous action space (a Gymnasium ``Box``; the paper's appendix A.3) the new policy
head is a diagonal Gaussian in unit space with a state-independent log-std parameter
(``lapo.models.actor_critic.ActorCritic``); hybrid fine-tuning is discrete-only.

Fine-tuning starts from the stage-2 latent policy: its latent head is replaced by a policy head
over the 15 true actions and a value head, its convolutional trunk is frozen, and PPO trains the
fully connected layer and both heads at learning rate 0.01 (``OnlineActorCritic``). Since the
trunk does not change, its features are computed once per rollout step and the PPO epochs run
only the fully connected layer and the heads. PPO from scratch trains every layer of the same
network at 5e-4. Both use the shared loop of ``lapo.rl.loop`` (bitwise resume, logs against
environment steps, held-out evaluation).

The hybrid variant (``hybrid=True``, the release's RL+SL): the logits are the mean of the RL
head's and those of an action decoder on the frozen latent policy's output
(``HybridActorCritic``). After each update during the first ``hybrid_steps`` environment steps,
the latent action model's IDM labels the rollout's transitions (those whose window
o_{t-k} .. o_{t+1} lies in one episode and one rollout) with latent actions, and the decoder is
refitted from a fresh initialization to map every latent labelled so far to the action the agent
took. Afterwards the decoder stays in the policy, frozen (as in the release).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from lapo.checkpoint import checkpoint_digest, checkpoint_exists, read_meta
from lapo.config import BCConfig, FinetuneConfig
from lapo.device import autocast, resolve_device
from lapo.envs import OBS_SHAPE, VecEnv, env_action_spec, make_env_from_config
from lapo.load import (
    FINETUNED_KIND,
    check_finished,
    checkpoint_path,
    latent_policy_network,
    load_lam,
    load_latent_policy,
)
from lapo.models.build import DECODER_HIDDEN, build_online_policy
from lapo.models.lam import LatentActionModel, frames_to_float
from lapo.models.online import HybridActorCritic
from lapo.models.policy import ActionDecoder, LatentPolicy
from lapo.rl.loop import check_run_dir, run_ppo
from lapo.rl.trainer import PPOTrainer
from lapo.safety import holds_lock
from lapo.stages.expert import evaluate_expert


def _check_network(config: FinetuneConfig, bc: BCConfig) -> None:
    ours = (config.encoder, config.multiplier, config.features)
    theirs = (bc.encoder, bc.multiplier, bc.features)
    if ours != theirs:
        raise ValueError(
            f"the latent policy's encoder is {theirs[0]} x{theirs[1]} with {theirs[2]} features "
            f"but the config describes {ours[0]} x{ours[1]} with {ours[2]}; take the encoder "
            "fields from the checkpoint (latent_policy_network)"
        )


def trained_parameters(net: nn.Module) -> list[nn.Parameter]:
    """The parameters PPO trains: every parameter that requires grad, except the hybrid's
    decoder (fitted by supervised learning)."""
    rl = net.rl if isinstance(net, HybridActorCritic) else net
    return [p for p in rl.parameters() if p.requires_grad]


@torch.no_grad()
def label_transitions(
    lam: LatentActionModel,
    frames: torch.Tensor,
    dones: torch.Tensor,
    actions: torch.Tensor,
    *,
    quantized: bool = False,
    bf16: bool = True,
    batch_size: int = 256,
) -> tuple[torch.Tensor, torch.Tensor]:
    """IDM latent actions of a rollout's transitions, paired with the actions the agent took.

    Args:
        frames: ``(T+1, N, H, W, C) uint8``, o_0 .. o_T of every env (o_T: after the last step).
        dones: ``(T, N) bool``, the action at t ended the episode (o_{t+1} starts a new one).
        actions: ``(T, N) int64``, a_t.
        quantized: label with the quantized latent instead of the IDM's continuous one (match
            the latent policy's ``BCConfig.target``).

    Returns:
        ``latents (M, D) float32`` and ``actions (M,) int64`` for every (t, n) with t >= k whose
        window o_{t-k} .. o_{t+1} lies in one episode (no done in t-k .. t), in (t, n) order.
    """
    k = lam.context
    if dones.shape[0] <= k:
        return frames.new_zeros((0, lam.idm.latent_dim), dtype=torch.float32), actions[:0, 0]
    crossing = dones.unfold(0, k + 1, 1).any(-1)  # (T-k, N): window from i sees dones i..i+k
    start, env = (~crossing).nonzero(as_tuple=True)  # (M,), (M,); transition t = start + k
    offsets = torch.arange(k + 2, device=frames.device)
    latents = []
    for s in range(0, len(start), batch_size):
        i, n = start[s : s + batch_size], env[s : s + batch_size]
        windows = frames[i[:, None] + offsets, n[:, None]]  # (B, k+2, H, W, C)
        with autocast(frames.device, bf16):
            z = lam.idm(frames_to_float(windows))  # (B, D)
            if quantized:
                z = lam.quantizer(z).quantized
        latents.append(z.float())
    if not latents:
        return frames.new_zeros((0, lam.idm.latent_dim), dtype=torch.float32), actions[:0, 0]
    return torch.cat(latents), actions[start + k, env]


def fit_decoder(
    decoder: ActionDecoder,
    latents: torch.Tensor,
    actions: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    label_smoothing: float,
    seed: int,
) -> dict[str, float]:
    """Re-initialize ``decoder`` (seeded) and fit it to ``latents (M, D) -> actions (M,)``.

    Cross-entropy with label smoothing, Adam, ``epochs`` shuffled passes; deterministic given
    ``seed`` (the global RNG is left untouched). Returns the last epoch's mean training loss
    and accuracy as ``hybrid/decoder_loss`` and ``hybrid/decoder_accuracy``.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh = ActionDecoder(decoder.latent_dim, decoder.num_actions, decoder.hidden)
    decoder.load_state_dict(fresh.state_dict())
    generator = torch.Generator(latents.device).manual_seed(seed)
    optimizer = torch.optim.Adam(decoder.parameters(), lr=learning_rate)
    total = len(latents)
    for _ in range(epochs):
        order = torch.randperm(total, generator=generator, device=latents.device)
        loss_sum, correct = torch.zeros(()), torch.zeros(())
        for s in range(0, total, batch_size):
            idx = order[s : s + batch_size]
            logits = decoder(latents[idx])  # (B, A)
            loss = F.cross_entropy(logits, actions[idx], label_smoothing=label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach().cpu() * len(idx)
            correct += (logits.argmax(-1) == actions[idx]).sum().cpu()
    n = max(total, 1)
    return {
        "hybrid/decoder_loss": float(loss_sum) / n,
        "hybrid/decoder_accuracy": float(correct) / n,
    }


class HybridDecoderTraining:
    """The hybrid's supervised part, run after every PPO update (a ``lapo.rl.UpdateHook``).

    While the rollout just learned from began before ``hybrid_steps``: label its transitions
    with the IDM (``label_transitions``), add them to the labelled set, and every
    ``hybrid_every`` updates (and at the end of the phase) refit the decoder on the whole set
    (``fit_decoder``). The set is part of the checkpoint until the phase ends.
    """

    def __init__(
        self,
        net: HybridActorCritic,
        lam: LatentActionModel,
        config: FinetuneConfig,
        quantized: bool,
    ) -> None:
        self.net, self.lam, self.config, self.quantized = net, lam, config, quantized
        device = next(net.parameters()).device
        self.latents = torch.zeros((0, net.decoder.latent_dim), device=device)  # (M, D)
        self.actions = torch.zeros((0,), dtype=torch.int64, device=device)  # (M,)

    def after_update(self, trainer: PPOTrainer) -> dict[str, float]:
        """Label the rollout just learned from and refit the decoder when due (class docstring).

        Returns ``hybrid/labels`` and, after a refit, ``fit_decoder``'s metrics; ``{}`` once the
        rollout began at or after ``hybrid_steps`` environment steps.
        """
        cfg, buf = self.config, trainer.buffer
        if trainer.env_steps - cfg.batch_size >= cfg.hybrid_steps:
            return {}
        last = torch.from_numpy(trainer.obs).to(buf.obs.device)[None]  # (1, N, H, W, C)
        latents, actions = label_transitions(self.lam, torch.cat([buf.obs, last]), buf.dones,
                                             buf.actions, quantized=self.quantized,
                                             bf16=cfg.bf16)  # fmt: skip
        self.latents = torch.cat([self.latents, latents])
        self.actions = torch.cat([self.actions, actions])
        metrics = {"hybrid/labels": float(len(self.actions))}
        phase_ends = trainer.env_steps >= cfg.hybrid_steps
        if (trainer.update % cfg.hybrid_every == 0 or phase_ends) and len(self.actions):
            metrics |= fit_decoder(
                self.net.decoder, self.latents, self.actions, epochs=cfg.hybrid_epochs,
                batch_size=cfg.hybrid_batch_size, learning_rate=cfg.hybrid_learning_rate,
                label_smoothing=cfg.hybrid_label_smoothing,
                seed=cfg.seed * 1_000_003 + trainer.update,
            )  # fmt: skip
        if phase_ends:  # the labelled set is no longer needed
            self.latents, self.actions = self.latents[:0], self.actions[:0]
        return metrics

    def state(self) -> dict[str, torch.Tensor]:
        """The labelled set: ``{"latents": (M, D) float32, "actions": (M,) int64}``."""
        return {"latents": self.latents, "actions": self.actions}

    def load_state(self, tensors: dict[str, torch.Tensor]) -> None:
        """Restore ``state()`` onto this hook's device."""
        self.latents = tensors["latents"].to(self.latents.device)
        self.actions = tensors["actions"].to(self.actions.device)


def make_online_trainer(
    config: FinetuneConfig,
    latent_policy: LatentPolicy | None = None,
    *,
    lam: LatentActionModel | None = None,
    quantized: bool = False,
    env: VecEnv | None = None,
    device: str | None = None,
    cache_trunk: bool = True,
) -> tuple[PPOTrainer, HybridDecoderTraining | None]:
    """A fresh stage-3 online run from in-memory models: the trainer and the hybrid hook.

    Args:
        latent_policy: the stage-2 policy to fine-tune; None: PPO from scratch.
        lam: the latent action model labelling the agent's transitions (``config.hybrid``).
        quantized: label with quantized latents (the latent policy's ``BCConfig.target``).
        env: an environment with ProcgenVecEnv's interface instead of ``config.env``.
        device: default ``cuda`` when available, else ``cpu``.
        cache_trunk: compute the frozen trunk once per step (off only to measure its effect).

    Raises:
        ValueError: ``config`` and the given models disagree (hybrid without ``lam``, latent
            policy given for a from-scratch config or the reverse).
    """
    if (latent_policy is None) != config.from_scratch:
        raise ValueError("pass the latent policy exactly when config.latent_policy is set")
    if config.hybrid and lam is None:
        raise ValueError("hybrid fine-tuning needs the latent action model (lam)")
    device = resolve_device(device)
    torch.manual_seed(config.seed)
    net = build_online_policy(config, latent_policy).to(device)
    env = env or make_env_from_config(config)
    trainer = PPOTrainer(config, net, env, device=device, params=trained_parameters(net),
                         cache_trunk=cache_trunk and net.trunk_frozen,
                         keep_obs=config.hybrid)  # fmt: skip
    hook = None
    if config.hybrid:
        hook = HybridDecoderTraining(net, lam.to(device).eval(), config, quantized)
    return trainer, hook


def _load_lam(config: FinetuneConfig, latent_dim: int) -> LatentActionModel:
    shape = tuple(read_meta(checkpoint_path(config.lam)).get("frame_shape", OBS_SHAPE))
    lam, lam_config = load_lam(config.lam)
    if shape != OBS_SHAPE or lam_config.latent_dim != latent_dim:
        raise ValueError(
            f"{config.lam}: a latent action model for {shape} frames with {lam_config.latent_dim}-"
            f"dim latents cannot label for a latent policy of {latent_dim} dims on {OBS_SHAPE}"
        )
    return lam


@holds_lock(lambda a: a["run_dir"], inputs=lambda a: [a["config"].latent_policy, a["config"].lam])
def train_finetune(
    config: FinetuneConfig,
    run_dir: Path,
    *,
    resume: bool = False,
    allow_unfinished: bool = False,
    progress: bool = True,
    env: VecEnv | None = None,
    time_budget_s: float | None = None,
    max_updates: int | None = None,
    device: str | None = None,
) -> dict:
    """Fine-tune ``config.latent_policy`` with PPO (or, without one, run PPO from scratch).

    Files in ``run_dir``: ``checkpoint.json`` + ``checkpoint.*.safetensors`` (kind
    ``finetuned-policy``, module ``policy``; ``load_finetuned`` or ``lapo.load.
    load_policy`` read it), ``metrics.jsonl`` and ``tb/``: per update, at x-axis environment
    steps, ``return/train_normalized`` and every ``eval_every`` updates
    ``return/eval_normalized`` on held-out levels (``lapo.rl.loop.run_ppo`` lists all).

    Holds ``run_dir``'s lock (``lapo.safety.exclusive``) for the whole call.

    Args:
        resume: continue the run in ``run_dir`` bitwise where it stopped.
        allow_unfinished: accept a latent policy whose training stopped before its last update.
        env: an environment with ProcgenVecEnv's interface instead of ``config.env``.
        time_budget_s, max_updates: stop with a checkpoint after this many seconds or updates.
        device: default ``cuda`` when available, else ``cpu``.

    Raises (before any training):
        FileExistsError: ``run_dir`` holds a run and ``resume`` is False.
        FileNotFoundError: a checkpoint named in the config is missing.
        lapo.checkpoint.CheckpointError: ``latent_policy`` or ``lam`` is another kind of
            checkpoint (the message names the kind found).
        ValueError: resume with a different config, or the encoder fields differ from the
            latent policy's, or the latent action model does not fit the latent policy; a
            negative ``time_budget_s``; ``run_dir`` is, contains or lies inside an input.
        lapo.load.UnfinishedRunError: the latent policy is unfinished and not
            ``allow_unfinished``.
        lapo.safety.InUseError: another lapo process holds ``run_dir``.
    """
    run_dir = Path(run_dir)
    inputs = {  # missing ones: the checks below say so
        name: checkpoint_digest(getattr(config, name))
        for name in ("latent_policy", "lam")
        if getattr(config, name) is not None
        and checkpoint_exists(checkpoint_path(getattr(config, name)))
    }
    restore = check_run_dir(run_dir, config, resume, inputs)
    latent_policy, lam, quantized = None, None, False
    if not config.from_scratch:
        latent_policy_network(config.latent_policy)  # kind and frame checks, clear errors
        check_finished(config.latent_policy, allow_unfinished=allow_unfinished, what="--policy")
        latent_policy, bc = load_latent_policy(config.latent_policy, resolve_device(device))
        _check_network(config, bc)
        quantized = bc.target == "quantized"
        if config.hybrid:
            lam = _load_lam(config, latent_policy.latent_dim)
    trainer, hook = make_online_trainer(config, latent_policy, lam=lam, quantized=quantized,
                                        env=env, device=device)  # fmt: skip
    spec = env_action_spec(config.env)
    meta = {
        "source": "scratch" if config.from_scratch else "latent-policy",
        "num_actions": spec.dim,
        "action_bounds": [list(spec.low), list(spec.high)] if spec.continuous else None,
        "latent_dim": None if latent_policy is None else latent_policy.latent_dim,
        "decoder_hidden": list(DECODER_HIDDEN) if config.hybrid else None,
        "inputs_sha256": inputs,  # a moved run resumes (check_run_dir)
    }
    return run_ppo(trainer, run_dir, kind=FINETUNED_KIND, restore=restore, meta=meta, hook=hook,
                   evaluate=lambda net: evaluate_expert(net, config, config.eval_episodes),
                   progress=progress, time_budget_s=time_budget_s,
                   max_updates=max_updates)  # fmt: skip
