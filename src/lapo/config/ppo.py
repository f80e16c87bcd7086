"""PPO configurations: expert training (Cobbe et al. 2020 settings) and stage 3 online
(fine-tuning the latent policy, or PPO from scratch as the baseline; paper section 6.1)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from lapo.config.checks import check_ints, check_reals, check_seed, check_types


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
        check_types(self)
        check_ints(self, 1, "multiplier", "features", "num_envs", "num_steps", "epochs",
                    "num_minibatches", "checkpoint_every", "eval_episodes")  # fmt: skip
        check_ints(self, 0, "total_steps", "num_levels", "start_level", "eval_start_level",
                    "eval_num_levels", "eval_every")  # fmt: skip
        check_reals(self, 0.0, 1.0, "gamma", "gae_lambda", open_low=True)
        check_reals(self, 0.0, float("inf"), "value_coef", "entropy_coef")
        check_reals(self, 0.0, float("inf"), "learning_rate", "clip", "max_grad_norm",
                     open_low=True)  # fmt: skip
        if self.value_clip is not None:
            check_reals(self, 0.0, float("inf"), "value_clip", open_low=True)
        check_seed(self)
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
        check_reals(self, 0.0, float("inf"), "hybrid_learning_rate", open_low=True)
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
