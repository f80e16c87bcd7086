"""Typed configurations for lapo's commands. Validation happens in ``__post_init__`` so that a
bad value fails before any work starts. This module imports nothing from lapo."""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import Literal


@dataclass(frozen=True)
class CollectConfig:
    """``lapo collect``: record a Procgen game or a Gymnasium id with a policy into a dataset.

    Attributes:
        env: Procgen game or registered Gymnasium id (observed through its rendered pixels).
        frames: number of frames to record (environment steps summed over envs).
        out: output dataset directory (must not exist unless ``overwrite``).
        policy: ``random`` (uniform over the action space), ``scripted`` (the state-feedback
            expert of a continuous-control task, ``lapo.envs.scripted``) or a policy checkpoint.
        num_envs: parallel environments.
        distribution_mode: Procgen distribution mode (the paper uses ``easy``).
        num_levels: number of levels, 0 = all (the paper's setting).
        start_level: first level seed. Record which levels data uses: LAPO evaluates on others.
        seed: seed of the level sampler and of the random policy.
        temperature: sampling temperature of a checkpoint policy (actions from
            ``softmax(logits / temperature)``; 1 samples it as trained, lower is sharper).
        shard_frames: frames per shard file.
        overwrite: replace an existing dataset at ``out`` once recording succeeds.
    """

    env: str
    frames: int
    out: Path
    policy: str = "random"
    num_envs: int = 64
    distribution_mode: str = "easy"
    num_levels: int = 0
    start_level: int = 0
    seed: int = 0
    temperature: float = 1.0
    shard_frames: int = 8192
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.frames < 1:
            raise ValueError(f"frames must be >= 1, got {self.frames}")
        if self.num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {self.num_envs}")
        if self.num_levels < 0 or self.start_level < 0:
            raise ValueError(
                f"num_levels and start_level must be >= 0, got {self.num_levels}, "
                f"{self.start_level}"
            )
        if not 0 <= self.seed < 2**31:
            raise ValueError(f"seed must be in [0, 2**31), got {self.seed}")
        if self.shard_frames < 1:
            raise ValueError(f"shard_frames must be >= 1, got {self.shard_frames}")
        check_temperature(self.temperature)
        if self.policy in ("random", "scripted") and self.temperature != 1.0:
            raise ValueError(
                f"temperature applies to a checkpoint policy; the random policy has none "
                f"(got temperature {self.temperature})"
            )


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_ints(config: object, minimum: int, *names: str) -> None:
    """Raise ValueError unless every field ``names`` of ``config`` is an integer >= ``minimum``."""
    for name in names:
        value = getattr(config, name)
        if not (isinstance(value, int) and not isinstance(value, bool) and value >= minimum):
            raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_reals(
    config: object, low: float, high: float = float("inf"), *names: str, open_low: bool = False
) -> None:
    """Raise ValueError unless every field ``names`` is a finite number in ``[low, high]``
    (``(low, high]`` when ``open_low``)."""
    for name in names:
        value = getattr(config, name)
        fits = _is_number(value) and (low < value if open_low else low <= value) and value <= high
        if not (fits and value < float("inf")):
            bracket = "(" if open_low else "["
            bound = "" if high == float("inf") else f", {high}]"
            wanted = f"in {bracket}{low}{bound}" if bound else f"{'>' if open_low else '>='} {low}"
            raise ValueError(f"{name} must be a finite number {wanted}, got {value!r}")


def _check_seed(config: object) -> None:
    seed = config.seed  # type: ignore[attr-defined]
    if not (isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed < 2**31):
        raise ValueError(f"seed must be an integer in [0, 2**31), got {seed!r}")


def check_temperature(temperature: float) -> None:
    """Raises ValueError unless ``temperature`` is a finite number > 0."""
    if not (isinstance(temperature, int | float) and 0 < temperature < float("inf")):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")


@dataclass(frozen=True)
class PPOConfig:
    """PPO for Procgen (Cobbe et al. 2020 settings; PAPER.md "Stage 3: decoding" lists them).

    Units: ``total_steps`` counts environment steps summed over envs (frames); one update
    consumes ``num_envs * num_steps`` of them.

    Attributes:
        env: Procgen game.
        total_steps: environment steps to train for.
        encoder: ``impala`` or ``nature`` (``lapo.models.ENCODERS``).
        multiplier: encoder channel multiplier (the paper's IMPALA uses 4).
        features: width of the fully connected layer before the heads.
        num_envs: parallel environments; num_steps: rollout length per env and update.
        learning_rate: Adam step size, linearly annealed to 0 when ``anneal_lr``.
        anneal_lr: anneal the learning rate linearly to 0 over the run.
        gamma, gae_lambda: discount and GAE lambda.
        epochs, num_minibatches: optimization passes per update and minibatches per pass.
        clip, value_clip: PPO ratio clip and value clip (None: unclipped value loss).
        value_coef, entropy_coef: loss weights.
        max_grad_norm: global gradient-norm clip.
        normalize_rewards: divide rewards by the running std of discounted returns.
        distribution_mode, num_levels, start_level: training levels (0 levels = all).
        eval_start_level, eval_num_levels: held-out evaluation levels.
        eval_every: updates between evaluations (0: never); eval_episodes: episodes per
            evaluation.
        checkpoint_every: updates between checkpoints.
        bf16: bf16 autocast for forward and backward passes where the device has native bf16
            (fp32 elsewhere, with a warning; ``lapo.device``).
        seed: environment, initialization and sampling seed.
    """

    env: str = "bigfish"
    total_steps: int = 25_000_000
    encoder: Literal["impala", "nature"] = "impala"
    multiplier: int = 1
    features: int = 256
    num_envs: int = 64
    num_steps: int = 256
    learning_rate: float = 5e-4
    anneal_lr: bool = True
    gamma: float = 0.999
    gae_lambda: float = 0.95
    epochs: int = 3
    num_minibatches: int = 8
    clip: float = 0.2
    value_clip: float | None = 0.2
    value_coef: float = 0.5
    entropy_coef: float = 0.01
    max_grad_norm: float = 0.5
    normalize_rewards: bool = True
    distribution_mode: str = "easy"
    num_levels: int = 0
    start_level: int = 0
    eval_start_level: int = 1_000_000
    eval_num_levels: int = 0
    eval_every: int = 50
    eval_episodes: int = 64
    checkpoint_every: int = 10
    bf16: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        _check_ints(self, 1, "multiplier", "features", "num_envs", "num_steps", "epochs",
                    "num_minibatches", "checkpoint_every", "eval_episodes")  # fmt: skip
        _check_ints(self, 0, "total_steps", "num_levels", "start_level", "eval_start_level",
                    "eval_num_levels", "eval_every")  # fmt: skip
        _check_reals(self, 0.0, 1.0, "gamma", "gae_lambda", open_low=True)
        _check_reals(self, 0.0, float("inf"), "value_coef", "entropy_coef")
        _check_reals(self, 0.0, float("inf"), "learning_rate", "clip", "max_grad_norm",
                     open_low=True)  # fmt: skip
        if self.value_clip is not None:
            _check_reals(self, 0.0, float("inf"), "value_clip", open_low=True)
        _check_seed(self)
        batch = self.num_envs * self.num_steps
        if self.total_steps < batch:
            raise ValueError(
                f"total_steps ({self.total_steps}) must be >= one rollout "
                f"(num_envs * num_steps = {batch})"
            )
        if batch % self.num_minibatches:
            raise ValueError(
                f"num_envs * num_steps ({batch}) must be divisible by "
                f"num_minibatches ({self.num_minibatches})"
            )
        for name in ("learning_rate", "gamma", "gae_lambda", "clip", "max_grad_norm"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.multiplier < 1 or self.epochs < 1 or self.checkpoint_every < 1:
            raise ValueError("multiplier, epochs and checkpoint_every must be >= 1")

    @property
    def batch_size(self) -> int:
        """Environment steps per update (num_envs * num_steps)."""
        return self.num_envs * self.num_steps

    @property
    def num_updates(self) -> int:
        """Number of PPO updates: total_steps // batch_size."""
        return self.total_steps // self.batch_size


#: Named PPO presets. ``paper``: the paper's expert recipe (IMPALA x4, 50M frames, GPU scale);
#: ``cpu``: a network and rollout sized for 2 CPU cores; ``smoke``: seconds, for tests.
PPO_PRESETS: dict[str, dict] = {
    "paper": {"encoder": "impala", "multiplier": 4, "total_steps": 50_000_000},
    "cpu": {"encoder": "nature", "multiplier": 1, "features": 256, "total_steps": 10_000_000},
    "smoke": {
        "encoder": "nature", "features": 32, "num_envs": 4, "num_steps": 16,
        "num_minibatches": 2, "total_steps": 4 * 16 * 3, "eval_every": 2, "eval_episodes": 2,
        "checkpoint_every": 1,
    },
}  # fmt: skip


@dataclass(frozen=True)
class LAMConfig:
    """Stage 1, the latent action model: IDM + quantizer + FDM (paper section 4.1, PAPER.md).

    Units: ``steps`` are optimizer updates of ``batch_size`` windows (summed over DDP ranks).

    Attributes:
        context: k, frames before o_t the IDM and FDM see (windows hold k + 2 frames).
        size: network sizes, ``paper`` (IDM IMPALA x4, FDM U-Net base 24, about 8M parameters),
            ``cpu`` or ``smoke`` (``lapo.models.lam_sizes.LAM_SIZES``).
        quantizer: ``vq`` (EMA vector quantization, the paper's), ``none`` (no-VQ ablation),
            or ``fsq``.
        num_codebooks, num_latents, codebook_size, code_dim: VQ layout; the latent action has
            ``num_codebooks * num_latents * code_dim`` dimensions (2 x 4 x 16 = 128).
        commitment_cost, ema_decay: VQ commitment weight and codebook EMA decay.
        restart_dead_codes: re-seed unused codes from the batch (off in the paper).
        idm_multiplier: the IDM's IMPALA channel multiplier; 0 keeps the ``size``'s own
            (``paper`` 4, ``cpu`` 1).
        idm_frame_differences: the IDM also sees the differences of consecutive frames
            (``InverseDynamicsModel`` ``frame_differences``); off in the paper.
        fdm_residual: the FDM predicts o_{t+1} as o_t plus a change (``ForwardDynamicsModel``
            ``residual``); off in the paper, which predicts the frame itself.
        learning_rate: peak Adam step size (paper table 2e-4; release 3e-4).
        warmup_steps: linear warm-up from ``0.1 x`` the peak (release: 50 steps).
        final_lr_fraction: linear decay to this fraction of the peak at ``steps`` (release 0.01).
        batch_size: windows per update (global).
        steps: updates (paper 70,000; release 50,000).
        grad_clip: global gradient-norm clip (release 2).
        bf16: bf16 autocast (and channels_last) for the forward and backward passes where the
            device has native bf16 (fp32 elsewhere, with a warning; ``lapo.device``).
        compile: train through ``torch.compile`` (off by default: compiling takes minutes and
            pays back only over long runs on an accelerator; ``benchmarks/gpu_check.py``
            measures both).
        test_fraction: fraction of episodes held out for test loss and latent probes.
        log_every, eval_every, checkpoint_every: updates between log lines, test evaluations
            and checkpoints.
        probe_samples: held-out windows used for the final latent-quality probes.
        seed: initialization, split and data-order seed.
    """

    context: int = 1
    size: Literal["paper", "cpu", "smoke"] = "paper"
    quantizer: Literal["vq", "none", "fsq"] = "vq"
    num_codebooks: int = 2
    num_latents: int = 4
    codebook_size: int = 64
    code_dim: int = 16
    commitment_cost: float = 0.05
    ema_decay: float = 0.999
    restart_dead_codes: bool = False
    idm_multiplier: int = 0
    idm_frame_differences: bool = False
    fdm_residual: bool = False
    learning_rate: float = 2e-4
    warmup_steps: int = 50
    final_lr_fraction: float = 0.01
    batch_size: int = 128
    steps: int = 70_000
    grad_clip: float = 2.0
    bf16: bool = True
    compile: bool = False
    test_fraction: float = 0.05
    log_every: int = 100
    eval_every: int = 1000
    checkpoint_every: int = 1000
    probe_samples: int = 8192
    seed: int = 0

    def __post_init__(self) -> None:
        if self.quantizer not in ("vq", "none", "fsq"):
            raise ValueError(f"quantizer must be one of vq, none, fsq; got {self.quantizer!r}")
        if self.context < 0:
            raise ValueError(f"context must be >= 0, got {self.context}")
        if self.size not in ("paper", "cpu", "smoke"):
            raise ValueError(f"size must be one of paper, cpu, smoke; got {self.size!r}")
        if self.idm_multiplier < 0:
            raise ValueError(
                f"idm_multiplier must be >= 1 (or 0 for the size's own), got {self.idm_multiplier}"
            )
        for name in (
            "num_codebooks",
            "num_latents",
            "codebook_size",
            "code_dim",
            "batch_size",
            "steps",
            "log_every",
            "eval_every",
            "checkpoint_every",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction}")
        _check_ints(self, 0, "warmup_steps")
        _check_ints(self, 1, "probe_samples")
        _check_reals(self, 0.0, float("inf"), "learning_rate", "grad_clip", open_low=True)
        _check_reals(self, 0.0, 1.0, "final_lr_fraction", "ema_decay")
        _check_reals(self, 0.0, float("inf"), "commitment_cost")
        _check_seed(self)

    @property
    def latent_dim(self) -> int:
        """Size of the latent action: num_codebooks * num_latents * code_dim."""
        return self.num_codebooks * self.num_latents * self.code_dim

    def learning_rate_at(self, step: int) -> float:
        """Warm-up from 0.1x over ``warmup_steps``, then linear decay to ``final_lr_fraction``."""
        if step < self.warmup_steps:
            return self.learning_rate * (0.1 + 0.9 * step / self.warmup_steps)
        progress = (step - self.warmup_steps) / max(self.steps - self.warmup_steps, 1)
        return self.learning_rate * (1.0 - (1.0 - self.final_lr_fraction) * min(progress, 1.0))


#: Named stage-1 presets. ``paper``: the paper table (sizes, lr 2e-4, batch 128, 70k updates).
#: ``cpu``: small networks for 2 CPU cores. Its codebook EMA decay is 0.95 (paper 0.999): in a
#: short run the codebook must follow fast-moving latents; on the synthetic sprite video the
#: MLP probe reached 0.997 with 0.95, 0.75 with 0.99 and 0.37 with 0.999 after 3,000 updates.
#: Two more departures from the paper make a small, briefly trained model learn the action of a
#: small sprite: the IDM also sees the frame differences (``idm_frame_differences``) and the FDM
#: predicts the change from o_t (``fdm_residual``). On a miner random-policy recording, held-out
#: MLP probe after 2,500 updates: 0.097 with neither, 0.186 with the residual FDM, 0.223 with
#: both (restarting dead codes on top of the residual FDM: 0.178, no gain). Its 3,000 updates take
#: 13-16 minutes on 2 cores (3-4 updates/s); the learning rate decays over them, and a
#: run stopped early by a time budget with the learning rate still high was worse than a
#: shorter run that decayed fully (miner, 25-minute budget, 4,096-window probe: 0.216 after
#: 5,204 of 8,000 planned updates, 0.228 after 5,589 of 5,800, 0.249 after 5,000 of 5,000).
#: Dead codes are restarted (``restart_dead_codes``): without it the codebook collapsed on maze,
#: whose mouse covers a few pixels (one code from the first updates on; 25-minute protocol, MLP
#: probe 0.111, frame difference 0.156); with it 0.190, NMI 0.21. On miner three 25-minute
#: runs with it ended at 0.216, 0.230 (seed 1) and 0.219 (seed 2), within the range of the runs
#: above without it. Rerun with nothing else on the machine (all 5,000 updates, 14-18 min), probed
#: with ``lapo probe-lam`` on 32,768 windows of a second recording (where the frame-difference MLP
#: scores 0.218): 0.263, 0.201 and 0.270 for seeds 0, 1 and 2 (with 7,000 updates in 22 min:
#: seed 1 0.234, seed 2 0.242). A narrower bottleneck, one discrete latent of 64 dimensions per
#: codebook (``num_latents=1, code_dim=64``: the same 128-d latent action, 12 bits per
#: transition instead of 48), gave 0.270, 0.269 and 0.214 for seeds 0-2 under the same
#: protocol: the low seed moved, the spread stayed, so the layout stays the paper's.
#: A wider IDM lifted every seed: IMPALA x2 instead of the ``cpu`` size's x1
#: (``idm_multiplier=2``; 1.47M parameters instead of 0.66M, the FDM unchanged; about 12% more
#: time per update), same protocol: 0.261, 0.265, 0.275 and 0.269 for seeds 0-3 (mean 0.268;
#: x1: 0.245 over seeds 0-2), so the preset's IDM is x2.
#: ``smoke``: seconds, for tests.
LAM_PRESETS: dict[str, dict] = {
    "paper": {},
    "cpu": {"size": "cpu", "batch_size": 64, "learning_rate": 1e-3, "steps": 3000,
            "ema_decay": 0.95, "idm_frame_differences": True, "fdm_residual": True,
            "restart_dead_codes": True, "idm_multiplier": 2,
            "log_every": 50, "eval_every": 500, "checkpoint_every": 500, "probe_samples": 4096},
    "smoke": {"size": "smoke", "batch_size": 8, "steps": 6, "log_every": 2, "eval_every": 3,
              "checkpoint_every": 3, "probe_samples": 64, "warmup_steps": 2},
}  # fmt: skip


@dataclass(frozen=True)
class BCConfig:
    """Stage 2, latent behaviour cloning: pi(o_t) regresses the frozen IDM's z_t (section 4.2).

    Units: ``steps`` are optimizer updates of ``batch_size`` observations. Train and test
    episodes are stage 1's split (the latent action model's ``test_fraction`` and ``seed``).

    Attributes:
        encoder, multiplier, features: the policy's image encoder (paper: IMPALA x4, 256).
        target: ``continuous`` (the IDM's pre-quantization latent, as the release) or
            ``quantized`` (the quantizer's output).
        learning_rate: peak Adam step size (paper 2e-4).
        warmup_steps: linear warm-up from 0.01x the peak (release: 1,000), then linear decay to 0.
        batch_size, steps: observations per update and number of updates (paper 128, 60,000).
        bf16: bf16 autocast (and channels_last) where the device has native bf16 (fp32
            elsewhere, with a warning; ``lapo.device``).
        compile: train the policy through ``torch.compile`` (off by default, as stage 1's).
        log_every, eval_every, checkpoint_every: updates between log lines, test evaluations
            and checkpoints.
        seed: initialization and data-order seed.
    """

    encoder: Literal["impala", "nature"] = "impala"
    multiplier: int = 4
    features: int = 256
    target: Literal["continuous", "quantized"] = "continuous"
    learning_rate: float = 2e-4
    warmup_steps: int = 1000
    batch_size: int = 128
    steps: int = 60_000
    bf16: bool = True
    compile: bool = False
    log_every: int = 100
    eval_every: int = 1000
    checkpoint_every: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.target not in ("continuous", "quantized"):
            raise ValueError(f"target must be continuous or quantized, got {self.target!r}")
        if self.encoder not in ("impala", "nature"):
            raise ValueError(f"encoder must be impala or nature, got {self.encoder!r}")
        for name in ("multiplier", "features", "batch_size", "steps", "log_every", "eval_every",
                     "checkpoint_every"):  # fmt: skip
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        _check_ints(self, 0, "warmup_steps")
        _check_reals(self, 0.0, float("inf"), "learning_rate", open_low=True)
        _check_seed(self)

    def learning_rate_at(self, step: int) -> float:
        """Warm-up from 0.01x over ``warmup_steps``, then linear decay to 0 at ``steps``."""
        if step < self.warmup_steps:
            return self.learning_rate * (0.01 + 0.99 * step / self.warmup_steps)
        progress = (step - self.warmup_steps) / max(self.steps - self.warmup_steps, 1)
        return self.learning_rate * max(1.0 - progress, 0.0)


#: Named stage-2 presets. ``paper``: IMPALA x4, lr 2e-4, batch 128, 60k updates. ``cpu``: the
#: Nature-CNN of the CPU experts (its conv trunk is reused frozen by online fine-tuning, whose
#: PPO-from-scratch baseline must train the same network on 2 cores). ``smoke``: tests.
BC_PRESETS: dict[str, dict] = {
    "paper": {},
    "cpu": {"encoder": "nature", "multiplier": 1, "learning_rate": 1e-3, "warmup_steps": 100,
            "batch_size": 128, "steps": 6000, "log_every": 50, "eval_every": 500,
            "checkpoint_every": 500},
    "smoke": {"encoder": "nature", "multiplier": 1, "features": 32, "batch_size": 8, "steps": 6,
              "warmup_steps": 2, "log_every": 2, "eval_every": 3, "checkpoint_every": 3},
}  # fmt: skip


@dataclass(frozen=True)
class DecodeConfig:
    """Stage 3 offline: decode latent actions to true actions with ``labels`` labelled transitions.

    Attributes:
        labels: number of labelled transitions (o_t, a_t) drawn reproducibly from the training
            episodes; the only place where true actions enter the pipeline.
        hidden: decoder MLP hidden sizes (paper (128, 128)).
        validation_fraction: part of the labels held out for early stopping (at least one).
        learning_rate, batch_size, max_epochs, patience: decoder training (epochs over the
            labelled set; stop after ``patience`` epochs without validation improvement).
        bc_steps, bc_learning_rate: the label-only behaviour-cloning baseline (same encoder as the
            latent policy, trained from scratch on the same labels), in updates.
        pseudo_label_updates: not in the paper; 0 (default, the paper's method) skips it. Updates
            of the optional fine-tuning of the decoded policy on the decoder's soft labels of
            ``pseudo_label_frames`` unlabelled training transitions plus the N true labels
            (``lapo.stages.pseudo_label``); the result is saved as a third policy.
        pseudo_label_frames, pseudo_label_batch_size, pseudo_label_learning_rate,
            pseudo_label_label_weight: its unlabelled transitions (drawn with ``seed``), batch
            size (of each of the two parts), Adam step size and the true labels' loss weight.
        seed: label draw and initialization seed.
    """

    labels: int = 256
    hidden: tuple[int, ...] = (128, 128)
    validation_fraction: float = 0.2
    learning_rate: float = 1e-3
    batch_size: int = 64
    max_epochs: int = 500
    patience: int = 50
    bc_steps: int = 2000
    bc_learning_rate: float = 5e-4
    pseudo_label_updates: int = 0
    pseudo_label_frames: int = 32768
    pseudo_label_batch_size: int = 128
    pseudo_label_learning_rate: float = 3e-4
    pseudo_label_label_weight: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.labels < 2:
            raise ValueError(f"labels must be >= 2 (train + validation), got {self.labels}")
        if not 0.0 < self.validation_fraction < 1.0:
            raise ValueError(
                f"validation_fraction must be in (0, 1), got {self.validation_fraction}"
            )
        if self.max_epochs < 1 or self.patience < 1 or self.batch_size < 1 or self.bc_steps < 0:
            raise ValueError("max_epochs, patience and batch_size must be >= 1, bc_steps >= 0")
        if self.pseudo_label_updates < 0 or self.pseudo_label_frames < 1:
            raise ValueError(
                f"pseudo_label_updates must be >= 0 and pseudo_label_frames >= 1, got "
                f"{self.pseudo_label_updates} and {self.pseudo_label_frames}"
            )
        if self.pseudo_label_batch_size < 1 or not self.pseudo_label_learning_rate > 0:
            raise ValueError(
                f"pseudo_label_batch_size must be >= 1 and pseudo_label_learning_rate > 0, got "
                f"{self.pseudo_label_batch_size} and {self.pseudo_label_learning_rate}"
            )
        if not self.pseudo_label_label_weight >= 0:
            raise ValueError(
                f"pseudo_label_label_weight must be >= 0, got {self.pseudo_label_label_weight}"
            )
        _check_reals(self, 0.0, float("inf"), "pseudo_label_label_weight")
        _check_reals(self, 0.0, float("inf"), "learning_rate", "bc_learning_rate",
                     "pseudo_label_learning_rate", open_low=True)  # fmt: skip
        if not all(isinstance(h, int) and not isinstance(h, bool) and h >= 1 for h in self.hidden):
            raise ValueError(f"hidden sizes must be integers >= 1, got {self.hidden!r}")
        _check_seed(self)


@dataclass(frozen=True)
class FinetuneConfig(PPOConfig):
    """Stage 3 online (paper sections 4.3 and 6.1, Figure 3): PPO fine-tuning of the latent
    policy, or PPO from scratch on the same network (the baseline; ``latent_policy=None``).

    Every ``PPOConfig`` field applies (units: ``total_steps`` in environment steps); the
    encoder fields describe the network and must equal the latent policy's. Fine-tuning replaces
    the latent head by a policy head over the true actions and a value head, freezes the
    convolutional trunk and trains the fully connected layer and both heads at
    ``learning_rate`` (paper 0.01); from scratch every layer is trained (paper 5e-4,
    ``SCRATCH_LEARNING_RATE``).

    Attributes:
        latent_policy: stage-2 latent policy checkpoint to start from; None: PPO from scratch.
        hybrid: the release's RL+SL variant: the policy's logits are the mean of the RL head's and
            those of a decoder on the frozen latent policy's output, retrained by supervised
            learning on IDM labels of the agent's own transitions (needs ``lam``).
        lam: latent action model checkpoint whose IDM labels the agent's transitions (hybrid).
        hybrid_steps: environment steps during which the decoder is retrained (release 400k);
            afterwards it stays in the policy, frozen, as in the release.
        hybrid_every: updates between decoder retrainings (1: after every update).
        hybrid_epochs, hybrid_batch_size, hybrid_learning_rate, hybrid_label_smoothing: the
            decoder's supervised training, from a fresh initialization each time, on every
            labelled transition so far (release: 3 epochs, 512, Adam 1e-3, smoothing 0.05).
    """

    total_steps: int = 4_000_000
    learning_rate: float = 0.01
    eval_every: int = 10
    latent_policy: str | None = None
    hybrid: bool = False
    lam: str | None = None
    hybrid_steps: int = 400_000
    hybrid_every: int = 1
    hybrid_epochs: int = 3
    hybrid_batch_size: int = 512
    hybrid_learning_rate: float = 1e-3
    hybrid_label_smoothing: float = 0.05

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.hybrid and (self.latent_policy is None or self.lam is None):
            raise ValueError(
                "hybrid fine-tuning needs a latent policy and a latent action model (lam) whose "
                "IDM labels the agent's transitions"
            )
        if self.lam is not None and not self.hybrid:
            raise ValueError("lam is only used by hybrid fine-tuning; pass hybrid=True or drop it")
        for name in ("hybrid_every", "hybrid_epochs", "hybrid_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.hybrid_steps < 0 or self.hybrid_learning_rate <= 0:
            raise ValueError("hybrid_steps must be >= 0 and hybrid_learning_rate > 0")
        _check_reals(self, 0.0, float("inf"), "hybrid_learning_rate", open_low=True)
        if not 0.0 <= self.hybrid_label_smoothing < 1.0:
            raise ValueError(
                f"hybrid_label_smoothing must be in [0, 1), got {self.hybrid_label_smoothing}"
            )

    @property
    def from_scratch(self) -> bool:
        """PPO from scratch (no latent policy): every layer trained."""
        return self.latent_policy is None


#: PPO from scratch's learning rate (paper section 6.1: 5e-4, a larger rate did not help it).
SCRATCH_LEARNING_RATE = 5e-4

#: Named stage-3 online presets; the encoder fields are those of the matching ``BC_PRESETS``
#: (fine-tuning takes them from the latent policy's checkpoint anyway).
#: ``paper``: 4M steps, 64 envs x 256 steps and the other Cobbe et al. 2020 settings, learning
#: rate 0.01 for the fine-tuned layers. The release differs: 64 envs x 64 steps per rollout,
#: entropy coefficient 0.0025, the hybrid RL+SL head during the first 400k steps, and per-layer
#: piecewise-linear learning-rate schedules that start late (heads after 25k-35k steps, fc after
#: 50k) at 0.01/4 and 0.01/10. ``cpu``: the Nature-CNN of the CPU presets, 1M steps, the hybrid
#: decoder retrained during the first tenth of the run (as the release's 400k of 4M).
#: ``smoke``: seconds, for tests.
FINETUNE_PRESETS: dict[str, dict] = {
    "paper": {"encoder": "impala", "multiplier": 4, "features": 256},
    "cpu": {"encoder": "nature", "multiplier": 1, "features": 256, "total_steps": 1_000_000,
            "eval_every": 10, "eval_episodes": 32, "hybrid_steps": 100_000},
    "smoke": {
        "encoder": "nature", "features": 32, "num_envs": 4, "num_steps": 16,
        "num_minibatches": 2, "total_steps": 4 * 16 * 3, "eval_every": 2, "eval_episodes": 2,
        "checkpoint_every": 1, "hybrid_steps": 4 * 16 * 2, "hybrid_batch_size": 16,
    },
}  # fmt: skip


@dataclass(frozen=True)
class AggregateConfig:
    """``lapo aggregate``: one report over several ``lapo run`` directories.

    Attributes:
        runs: ``lapo run`` directories (any games, any seeds; made anywhere).
        out: output directory for report.md, report.html, figures/ and aggregate.json (new,
            empty, or an earlier aggregate's, whose files are replaced).
        reps: stratified-bootstrap resamples per confidence interval (rliable: 50,000).
        seed: seed of the bootstrap (the same seed gives the same intervals).
    """

    runs: tuple[Path, ...]
    out: Path
    reps: int = 50_000
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "runs", tuple(Path(p) for p in self.runs))
        object.__setattr__(self, "out", Path(self.out))
        if not self.runs:
            raise ValueError("aggregate needs at least one run directory")
        if len(set(p.resolve() for p in self.runs)) != len(self.runs):
            raise ValueError("a run directory is listed twice; each run counts once")
        _check_ints(self, 1, "reps")
        _check_seed(self)


#: ``VideoImportConfig.resize`` modes.
RESIZE_MODES = ("crop", "pad", "stretch")


@dataclass(frozen=True)
class VideoImportConfig:
    """``lapo data import`` of video files: how frames are sampled, resized and cut.

    Attributes:
        resolution: ``(H, W)`` of the stored frames, in pixels.
        resize: ``crop`` (default): scale so the frame covers ``resolution`` and cut the centre,
            keeping the aspect ratio and using every stored pixel; ``pad``: scale so the whole
            frame fits and fill the rest black (nothing is lost, but a 16:9 clip at 64x64 uses
            only 56% of the pixels, a 2.35:1 clip 43%); ``stretch``: scale each side on its
            own (distorts the geometry unless the aspect ratios match).
        fps: keep frames at most this many per second of video time (by presentation time;
            frames are dropped, never duplicated); None: every frame. Excludes
            ``frame_stride`` > 1.
        frame_stride: keep every n-th decoded frame (1: every frame).
        clip_frames: cut each video into episodes of this many kept frames (the remainder
            becomes one more episode when it has at least half as many, else it is dropped);
            None: one episode per video.
    """

    resolution: tuple[int, int] = (64, 64)
    resize: str = "crop"
    fps: float | None = None
    frame_stride: int = 1
    clip_frames: int | None = None

    def __post_init__(self) -> None:
        try:
            height, width = self.resolution
        except (TypeError, ValueError):
            raise ValueError(
                f"resolution must be (height, width), got {self.resolution!r}"
            ) from None
        for size in (height, width):
            if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
                raise ValueError(
                    f"resolution must be two positive integers (height, width), "
                    f"got {self.resolution!r}"
                )
        object.__setattr__(self, "resolution", (int(height), int(width)))
        if self.resize not in RESIZE_MODES:
            raise ValueError(
                f"resize must be one of {', '.join(RESIZE_MODES)}, got {self.resize!r}"
            )
        if self.fps is not None and not 0 < self.fps < float("inf"):
            raise ValueError(f"fps must be a finite number > 0 (None: every frame), got {self.fps}")
        if isinstance(self.frame_stride, bool) or self.frame_stride < 1:
            raise ValueError(f"frame_stride must be >= 1, got {self.frame_stride}")
        if self.fps is not None and self.frame_stride != 1:
            raise ValueError("give fps or frame_stride, not both")
        if self.clip_frames is not None and self.clip_frames < 2:
            raise ValueError(
                f"clip_frames must be >= 2 (None: whole videos), got {self.clip_frames}"
            )


@dataclass(frozen=True)
class ILPOConfig:
    """``lapo ilpo``: ILPO (Edwards et al. 2019), LAPO's baseline (paper section 6.1, A.4).

    Offline: a latent forward model over ``num_latents`` discrete latents (min-over-latents loss)
    and a latent policy (expected-transition loss) on a dataset's (o_t, o_{t+1}) pairs, no true
    actions (``lapo.models.ilpo``). Online: the action-remapping network learns from the agent's
    own transitions in ``env`` (``online_steps`` environment steps; 0 skips the online phase).

    Units: ``steps`` are offline optimizer updates of ``batch_size`` transitions;
    ``online_steps`` are environment steps summed over envs, taken in rollouts of
    ``num_envs * num_steps``; ``eval_every_rollouts`` counts rollouts.

    Attributes:
        env: Procgen game of the online phase (the dataset's game).
        num_latents: K, discrete latent actions (ILPO uses the size of the action space; 15).
        size: generator U-Net size, ``paper`` (base width 24), ``cpu`` (8) or ``smoke`` (4)
            (``lapo.models.ilpo.ILPO_SIZES``).
        encoder, multiplier, features: the latent policy's image encoder (``impala`` as the LAPO
            paper's policies, or ``nature``), channel multiplier and feature width.
        learning_rate: Adam step size of the offline phase (ILPO's code: 2e-4).
        batch_size, steps: transitions per offline update and number of updates.
        grad_clip: global gradient-norm clip of the offline phase.
        test_fraction: fraction of episodes held out for the test losses and the diagnostic.
        diagnostic_samples: held-out transitions of the collapse diagnostic (appendix A.4).
        bf16: bf16 autocast where the device has native bf16 (fp32 elsewhere).
        log_every, eval_every, checkpoint_every: offline cadence, in updates.
        online_steps: environment steps of the online phase (0: offline only).
        num_envs, num_steps: parallel environments and steps per env per rollout.
        exploration: probability of a uniform random action (epsilon-greedy, as ILPO online).
        remap_hidden: hidden sizes of the remapping MLP.
        remap_learning_rate, remap_batch_size, remap_updates: its Adam step size, minibatch and
            updates after each rollout, on transitions drawn from the buffer.
        buffer_size: transitions kept for the remapping network (oldest dropped first).
        distribution_mode, num_levels, start_level: training levels of the online phase.
        eval_start_level, eval_num_levels: held-out evaluation levels (0 levels = all).
        eval_every_rollouts: rollouts between evaluations (0: only at the end);
            eval_episodes: episodes per evaluation.
        seed: initialization, split, data-order and environment seed.
    """

    env: str = "coinrun"
    num_latents: int = 15
    size: str = "paper"
    encoder: str = "impala"
    multiplier: int = 4
    features: int = 256
    learning_rate: float = 2e-4
    batch_size: int = 128
    steps: int = 70_000
    grad_clip: float = 2.0
    test_fraction: float = 0.05
    diagnostic_samples: int = 4096
    bf16: bool = True
    log_every: int = 100
    eval_every: int = 1000
    checkpoint_every: int = 1000
    online_steps: int = 1_000_000
    num_envs: int = 64
    num_steps: int = 64
    exploration: float = 0.1
    remap_hidden: tuple[int, ...] = (128, 128)
    remap_learning_rate: float = 1e-3
    remap_batch_size: int = 256
    remap_updates: int = 8
    buffer_size: int = 200_000
    distribution_mode: str = "easy"
    num_levels: int = 0
    start_level: int = 0
    eval_start_level: int = 1_000_000
    eval_num_levels: int = 0
    eval_every_rollouts: int = 20
    eval_episodes: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "remap_hidden", tuple(self.remap_hidden))
        if self.num_latents < 2:
            raise ValueError(f"num_latents must be >= 2, got {self.num_latents}")
        if self.size not in ("paper", "cpu", "smoke"):
            raise ValueError(f"size must be one of paper, cpu, smoke; got {self.size!r}")
        if self.encoder not in ("impala", "nature"):
            raise ValueError(f"encoder must be impala or nature, got {self.encoder!r}")
        positive = ("multiplier", "features", "batch_size", "steps", "log_every", "eval_every",
                    "checkpoint_every", "diagnostic_samples", "num_envs", "num_steps",
                    "remap_batch_size", "remap_updates", "buffer_size",
                    "eval_episodes")  # fmt: skip
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.online_steps < 0 or self.eval_every_rollouts < 0:
            raise ValueError(
                f"online_steps and eval_every_rollouts must be >= 0, got {self.online_steps} "
                f"and {self.eval_every_rollouts}"
            )
        if not 0.0 <= self.exploration <= 1.0:
            raise ValueError(f"exploration must be in [0, 1], got {self.exploration}")
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction}")
        if self.learning_rate <= 0 or self.remap_learning_rate <= 0 or self.grad_clip <= 0:
            raise ValueError("learning_rate, remap_learning_rate and grad_clip must be > 0")
        _check_reals(self, 0.0, float("inf"), "learning_rate", "remap_learning_rate", "grad_clip",
                     open_low=True)  # fmt: skip
        _check_ints(self, 0, "num_levels", "start_level", "eval_start_level", "eval_num_levels")
        if not 0 <= self.seed < 2**31:
            raise ValueError(f"seed must be in [0, 2**31), got {self.seed}")

    @property
    def rollout_size(self) -> int:
        """Environment steps per rollout (num_envs * num_steps)."""
        return self.num_envs * self.num_steps

    @property
    def num_rollouts(self) -> int:
        """Rollouts of the online phase: online_steps // rollout_size."""
        return self.online_steps // self.rollout_size


#: Named ILPO presets. ``paper``: K = 15 (the action space), IMPALA x4 policy, a base-24 U-Net
#: generator, lapo's stage-1 budget (batch 128, 70k updates) and 1M online steps (Figure 3's
#: comparison at 1M). ``cpu``: the Nature-CNN and a base-8 generator of the CPU presets, 3,000
#: updates of 32 transitions, 200k online steps. ``smoke``: seconds, for tests.
ILPO_PRESETS: dict[str, dict] = {
    "paper": {},
    "cpu": {"size": "cpu", "encoder": "nature", "multiplier": 1, "features": 256,
            "learning_rate": 1e-3, "batch_size": 32, "steps": 3000, "log_every": 50,
            "eval_every": 500, "checkpoint_every": 500, "diagnostic_samples": 2048,
            "online_steps": 200_000, "num_envs": 16, "num_steps": 64, "eval_episodes": 16,
            "eval_every_rollouts": 40},
    "smoke": {"num_latents": 4, "size": "smoke", "encoder": "nature", "multiplier": 1,
              "features": 32, "batch_size": 8, "steps": 6, "log_every": 2, "eval_every": 3,
              "checkpoint_every": 3, "diagnostic_samples": 32, "online_steps": 4 * 16 * 2,
              "num_envs": 4, "num_steps": 16, "remap_hidden": (16,), "remap_batch_size": 16,
              "remap_updates": 2, "buffer_size": 256, "eval_every_rollouts": 1,
              "eval_episodes": 2},
}  # fmt: skip
