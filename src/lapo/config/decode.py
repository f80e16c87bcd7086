"""Stage 3 offline's configuration: decoding latent actions to true actions from labels."""

from __future__ import annotations

from dataclasses import dataclass

from lapo.config.checks import check_reals, check_seed, check_types


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
        check_types(self)
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
        check_reals(self, 0.0, float("inf"), "pseudo_label_label_weight")
        check_reals(self, 0.0, float("inf"), "learning_rate", "bc_learning_rate",
                     "pseudo_label_learning_rate", open_low=True)  # fmt: skip
        if not all(isinstance(h, int) and not isinstance(h, bool) and h >= 1 for h in self.hidden):
            raise ValueError(f"hidden sizes must be integers >= 1, got {self.hidden!r}")
        check_seed(self)
