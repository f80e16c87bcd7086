"""Known answer: on synthetic video whose true actions we generate, the latents recover them.

A 6-pixel sprite moves by one of 8 actions over a random background (new per episode). No action
is used in training; afterwards an MLP probe from the IDM's latent to the true action, trained on
half of the held-out windows and tested on the other half, must reach >= 95% accuracy. The
quantizer's EMA decay is 0.95 here (paper: 0.999): in a short run the codebook has to follow the
fast-moving latents, and with 0.999 the same run ends near 0.37 (measured).
"""

from __future__ import annotations

import pytest

from lapo.config import LAMConfig
from lapo.data.synthetic import write_sprite_dataset
from lapo.stages.lam import train_lam


@pytest.mark.slow
def test_probe_recovers_sprite_actions(tmp_path) -> None:
    write_sprite_dataset(tmp_path / "sprites", episodes=400, length=25, size=32, seed=0)
    config = LAMConfig(
        size="cpu",
        quantizer="vq",
        ema_decay=0.95,
        learning_rate=2e-3,
        batch_size=32,
        steps=3000,
        warmup_steps=20,
        log_every=500,
        eval_every=3000,
        checkpoint_every=3000,
        probe_samples=3000,
        test_fraction=0.2,
    )
    metrics = train_lam(config, tmp_path / "sprites", tmp_path / "run", progress=False)
    assert metrics["probe_mlp_accuracy"] >= 0.95, metrics
    assert metrics["majority_accuracy"] < 0.2  # the probe task is not trivially easy
