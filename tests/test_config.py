"""Typed configs and their presets (lapo.config): every preset builds, the paper preset is the
paper's table, schedules follow their stated shapes, and bad values are refused."""

from __future__ import annotations

import pytest

from lapo.config import (
    BC_PRESETS,
    FINETUNE_PRESETS,
    LAM_PRESETS,
    PPO_PRESETS,
    BCConfig,
    CollectConfig,
    DecodeConfig,
    FinetuneConfig,
    LAMConfig,
    PPOConfig,
    check_temperature,
)


@pytest.mark.parametrize("preset", ["paper", "cpu", "smoke"])
def test_every_preset_builds_a_valid_config(preset: str) -> None:
    assert LAMConfig(**LAM_PRESETS[preset]).latent_dim > 0
    assert BCConfig(**BC_PRESETS[preset]).steps >= 1
    assert PPOConfig(env="coinrun", **PPO_PRESETS[preset]).batch_size > 0
    assert FinetuneConfig(env="coinrun", **FINETUNE_PRESETS[preset]).from_scratch


def test_paper_preset_is_the_paper_table() -> None:
    lam = LAMConfig(**LAM_PRESETS["paper"])  # PAPER.md, Stage 1 table
    assert (lam.num_codebooks, lam.num_latents, lam.code_dim) == (2, 4, 16)
    assert lam.latent_dim == 128 and lam.batch_size == 128 and lam.steps == 70_000
    assert lam.learning_rate == 2e-4 and lam.context == 1
    bc = BCConfig(**BC_PRESETS["paper"])  # Stage 2: lr 2e-4, batch 128
    assert (bc.learning_rate, bc.batch_size) == (2e-4, 128)


def test_stage1_schedule_warms_up_from_a_tenth_then_decays_linearly() -> None:
    c = LAMConfig(learning_rate=1.0, warmup_steps=10, steps=110, final_lr_fraction=0.01)
    assert c.learning_rate_at(0) == pytest.approx(0.1)
    assert c.learning_rate_at(5) == pytest.approx(0.55)
    assert c.learning_rate_at(10) == pytest.approx(1.0)
    assert c.learning_rate_at(60) == pytest.approx(1.0 - 0.99 * 0.5)
    assert c.learning_rate_at(110) == pytest.approx(0.01) == c.learning_rate_at(500)


def test_stage2_schedule_warms_up_from_a_hundredth_and_decays_to_zero() -> None:
    c = BCConfig(learning_rate=1.0, warmup_steps=100, steps=200)
    assert c.learning_rate_at(0) == pytest.approx(0.01)
    assert c.learning_rate_at(150) == pytest.approx(0.5)
    assert c.learning_rate_at(200) == 0.0 == c.learning_rate_at(300)


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: LAMConfig(quantizer="pq"), "quantizer must be one of"),
        (lambda: LAMConfig(context=-1), "context must be >= 0"),
        (lambda: LAMConfig(test_fraction=1.0), "test_fraction must be in"),
        (lambda: BCConfig(target="raw"), "target must be one of continuous, quantized"),
        (lambda: LAMConfig(steps=1.5), r"LAMConfig.steps must be an integer, got 1.5"),
        (lambda: LAMConfig(steps="500"), "LAMConfig.steps must be an integer, got .500."),
        (lambda: BCConfig(bf16=1), "BCConfig.bf16 must be true or false, got 1"),
        (lambda: DecodeConfig(hidden=(64, "x")), "hidden must be a tuple of integers"),
        (lambda: DecodeConfig(labels=1), "labels must be >= 2"),
        (lambda: CollectConfig(env="coinrun", frames=0, out="x"), "frames must be >= 1"),
        (lambda: check_temperature(float("nan")), "temperature must be a finite number > 0"),
    ],
)
def test_bad_values_are_refused_with_what_was_expected(build, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build()


def test_config_package_imports_nothing_from_the_rest_of_lapo() -> None:
    """The lowest layer (docs/layout.md): every module of lapo.config imports only the standard
    library and lapo.config itself, so any layer can import it without a cycle."""
    import ast
    from pathlib import Path

    import lapo.config

    package = Path(lapo.config.__file__).parent
    modules = sorted(package.glob("*.py"))
    assert len(modules) >= 9
    for module in modules:
        for node in ast.walk(ast.parse(module.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            for name in names:
                if name == "lapo" or name.startswith("lapo."):
                    assert name.startswith("lapo.config"), f"{module.name} imports {name}"


def test_numpy_scalars_and_iterables_are_stored_as_plain_python_values() -> None:
    import numpy as np

    lam = LAMConfig(steps=np.int64(5), warmup_steps=np.int64(2), learning_rate=np.float32(1e-3))
    assert type(lam.steps) is int and type(lam.warmup_steps) is int  # JSON-writable
    assert type(lam.learning_rate) is float
    decode = DecodeConfig(hidden=np.array([32, 16]))
    assert decode.hidden == (32, 16) and all(type(h) is int for h in decode.hidden)
    assert BCConfig(bf16=np.bool_(False)).bf16 is False
    assert DecodeConfig(hidden=[64]).hidden == (64,)  # a list read back from a checkpoint
