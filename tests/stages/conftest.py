"""Shared fixtures of the stage tests."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from lapo.config import BC_PRESETS, LAM_PRESETS, BCConfig, LAMConfig
from lapo.data.synthetic import write_sprite_dataset
from lapo.stages.bc import train_bc
from lapo.stages.lam import train_lam


def bc_smoke(**changes) -> BCConfig:
    return dataclasses.replace(BCConfig(**BC_PRESETS["smoke"]), **changes)


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> dict[str, Path]:
    """A 64x64 sprite dataset, a smoke latent action model and a smoke latent policy.

    Session-scoped: trained once for both tests/stages/test_bc.py and test_decode.py.
    """
    root = tmp_path_factory.mktemp("bc")
    data = root / "sprites"
    write_sprite_dataset(data, episodes=16, length=24, size=64, seed=0)
    lam = root / "lam"
    train_lam(LAMConfig(**LAM_PRESETS["smoke"]), data, lam, progress=False)
    bc = root / "bc"
    train_bc(bc_smoke(), lam, data, bc, progress=False)
    return {"data": data, "lam": lam, "bc": bc, "root": root}
