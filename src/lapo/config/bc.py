"""Stage 2's configuration, latent behaviour cloning, and its presets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from lapo.config.checks import check_ints, check_reals, check_seed, check_types


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
        check_types(self)
        if self.target not in ("continuous", "quantized"):
            raise ValueError(f"target must be continuous or quantized, got {self.target!r}")
        if self.encoder not in ("impala", "nature"):
            raise ValueError(f"encoder must be impala or nature, got {self.encoder!r}")
        for name in ("multiplier", "features", "batch_size", "steps", "log_every", "eval_every",
                     "checkpoint_every"):  # fmt: skip
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        check_ints(self, 0, "warmup_steps")
        check_reals(self, 0.0, float("inf"), "learning_rate", open_low=True)
        check_seed(self)

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
