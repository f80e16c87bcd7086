"""Latent labels for export (``lapo.pipeline.export``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lapo.config import LAM_PRESETS, LAMConfig
from lapo.data import open_dataset
from lapo.data.synthetic import write_sprite_dataset
from lapo.models.lam import LatentActionModel
from lapo.pipeline.export import latent_labels


def _labelled(tmp_path: Path):
    data = tmp_path / "sprites"
    write_sprite_dataset(data, episodes=3, length=7, size=32)
    lam = LatentActionModel(LAMConfig(**LAM_PRESETS["smoke"]), image_size=32).eval()
    dataset = open_dataset(data)
    return dataset, *latent_labels(lam, dataset)


def test_latent_labels_mark_frames_without_a_latent(tmp_path: Path) -> None:
    dataset, latent, codes = _labelled(tmp_path)
    k = LAMConfig(**LAM_PRESETS["smoke"]).context
    valid = np.isfinite(latent).all(1).reshape(3, 7)
    assert (valid == ((np.arange(7) >= k) & (np.arange(7) < 6))).all()
    assert ((codes >= 0).all(1).reshape(3, 7) == valid).all()
