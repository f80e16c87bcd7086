"""The ILPO baseline's configuration (Edwards et al. 2019; paper section 6.1, A.4) and its
presets."""

from __future__ import annotations

from dataclasses import dataclass

from lapo.config.checks import check_ints, check_reals, check_types


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
        check_types(self)
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
        check_reals(self, 0.0, float("inf"), "learning_rate", "remap_learning_rate", "grad_clip",
                     open_low=True)  # fmt: skip
        check_ints(self, 0, "num_levels", "start_level", "eval_start_level", "eval_num_levels")
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
