"""``lapo train-lam`` and ``lapo probe-lam`` (``lapo.cli.lam``)."""

from __future__ import annotations

import dataclasses

import pytest

from lapo.cli import build_parser


@pytest.mark.parametrize(
    ("preset", "flags"),
    [("cpu", []), ("paper", []), ("cpu", ["--no-restart-dead-codes", "--no-fdm-residual"]),
     ("paper", ["--restart-dead-codes", "--idm-frame-differences"])],
)  # fmt: skip
def test_train_lam_options_override_the_preset(preset, flags) -> None:
    from lapo.cli.lam import lam_config_from_args
    from lapo.config import LAM_PRESETS, LAMConfig

    args = build_parser().parse_args(["train-lam", "--data", "d", "--preset", preset, *flags])
    config = lam_config_from_args(args)
    expected = LAMConfig(**LAM_PRESETS[preset])
    for flag in flags:
        name = flag.removeprefix("--").removeprefix("no-").replace("-", "_")
        expected = dataclasses.replace(expected, **{name: not flag.startswith("--no-")})
    assert config == expected


def test_train_lam_bottleneck_options_set_the_vq_layout() -> None:
    from lapo.cli.lam import lam_config_from_args

    options = ["--preset", "paper", "--num-latents", "2", "--code-dim", "8"]
    argv = ["train-lam", "--data", "d", *options]
    config = lam_config_from_args(build_parser().parse_args(argv))
    assert (config.num_codebooks, config.num_latents, config.code_dim) == (2, 2, 8)
    assert config.latent_dim == 32


def test_train_lam_idm_multiplier_widens_only_the_idm() -> None:
    from lapo.cli.lam import lam_config_from_args
    from lapo.config import LAMConfig
    from lapo.models.lam import LatentActionModel

    argv = ["train-lam", "--data", "d", "--preset", "cpu", "--idm-multiplier", "2"]
    config = lam_config_from_args(build_parser().parse_args(argv))
    assert config.idm_multiplier == 2
    wide = LatentActionModel(config)
    plain = LatentActionModel(dataclasses.replace(config, idm_multiplier=0))
    # IMPALA's last stack has 32 x multiplier channels on an 8 x 8 grid, flattened into fc
    assert wide.idm.encoder.fc[0].in_features == 2 * plain.idm.encoder.fc[0].in_features == 4096
    assert sum(p.numel() for p in wide.fdm.parameters()) == sum(
        p.numel() for p in plain.fdm.parameters()
    )
    with pytest.raises(ValueError, match="idm_multiplier must be >= 1"):
        LAMConfig(idm_multiplier=-1)
