"""Stage 3 online: fine-tuned network composition, frozen trunk, exact resume, CLI, hybrid."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lapo.checkpoint import CheckpointError, load_checkpoint, read_meta, save_checkpoint
from lapo.cli import main
from lapo.config import (
    BC_PRESETS,
    FINETUNE_PRESETS,
    LAM_PRESETS,
    BCConfig,
    FinetuneConfig,
    LAMConfig,
)
from lapo.load import load_finetuned, load_latent_policy, load_policy, save_policy
from lapo.models.build import build_latent_policy, build_online_policy
from lapo.models.lam import LatentActionModel
from lapo.models.online import HybridActorCritic, OnlineActorCritic
from lapo.models.policy import ActionDecoder
from lapo.stages.finetune import fit_decoder, label_transitions, train_finetune, trained_parameters


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """A smoke latent policy (random weights) and a smoke latent action model, as checkpoints."""
    root = tmp_path_factory.mktemp("online")
    torch.manual_seed(0)
    bc = BCConfig(**BC_PRESETS["smoke"])
    lam_config = LAMConfig(**LAM_PRESETS["smoke"])
    policy = build_latent_policy(bc, lam_config.latent_dim)
    save_policy(root / "bc" / "checkpoint", "latent-policy", {"policy": policy},
                {"config": dataclasses.asdict(bc), "latent_dim": lam_config.latent_dim,
                 "frame_shape": [64, 64, 3]})  # fmt: skip
    lam = LatentActionModel(lam_config)
    save_checkpoint(root / "lam" / "checkpoint", modules={"lam": lam},
                    meta={"kind": "latent-action-model", "config": dataclasses.asdict(lam_config),
                          "frame_shape": [64, 64, 3]})  # fmt: skip
    return {"bc": root / "bc", "lam": root / "lam"}


def _config(models: dict[str, Path], **changes) -> FinetuneConfig:
    bc = BCConfig(**BC_PRESETS["smoke"])
    network = {"encoder": bc.encoder, "multiplier": bc.multiplier, "features": bc.features}
    base = FinetuneConfig(env="coinrun", **{**FINETUNE_PRESETS["smoke"], **network},
                          latent_policy=str(models["bc"]))  # fmt: skip
    return dataclasses.replace(base, **changes)


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    net, _ = load_finetuned(run_dir)
    return {k: v.clone() for k, v in net.state_dict().items()}


def test_network_is_the_latent_policy_with_new_heads(models) -> None:
    latent_policy, _ = load_latent_policy(models["bc"])
    saved = {k: v.clone() for k, v in latent_policy.encoder.state_dict().items()}
    torch.manual_seed(0)
    net = build_online_policy(_config(models), latent_policy)
    assert isinstance(net, OnlineActorCritic) and net.encoder is latent_policy.encoder
    assert all(torch.equal(net.encoder.state_dict()[k], v) for k, v in saved.items())
    w = net.policy_head.weight  # (15, 32): orthogonal rows of norm 0.01, zero bias
    assert w.shape == (15, 32)
    assert torch.allclose(w @ w.T, 0.01**2 * torch.eye(15), atol=1e-7)
    assert torch.equal(net.policy_head.bias, torch.zeros(15))
    v = net.value_head.weight  # (1, 32): unit norm (orthogonal, gain 1)
    assert torch.allclose(v.norm(), torch.tensor(1.0)) and net.value_head.bias.item() == 0.0
    trained = {id(p) for p in trained_parameters(net)}
    for name, p in net.named_parameters():
        assert (id(p) in trained) == (not name.startswith("encoder.conv")), name
    obs = torch.randint(0, 256, (3, 64, 64, 3), dtype=torch.uint8)
    logits, value = net(obs)
    assert logits.shape == (3, 15) and value.shape == (3,)
    features = latent_policy.encoder(obs.permute(0, 3, 1, 2).float() / 255)
    assert torch.allclose(logits, net.policy_head(features), atol=1e-6)


def test_frozen_trunk_unchanged_and_trained_layers_change(models, tmp_path: Path) -> None:
    config = _config(models, eval_every=0)
    metrics = train_finetune(config, tmp_path / "run", progress=False, device="cpu")
    after = _weights(tmp_path / "run")
    before, _ = load_latent_policy(models["bc"])
    start = {f"encoder.{k}": v for k, v in before.encoder.state_dict().items()}
    for name, value in after.items():
        if name.startswith("encoder.conv"):
            assert torch.equal(value, start[name]), f"frozen {name} changed"
        elif name.startswith("encoder.fc"):
            assert not torch.equal(value, start[name]), f"{name} was not trained"
    assert np.isfinite(metrics["train/policy_loss"])
    meta = read_meta(tmp_path / "run" / "checkpoint")
    assert meta["kind"] == "finetuned-policy" and meta["source"] == "latent-policy"
    assert meta["env_steps"] == config.total_steps


def test_resume_after_interruption_is_bitwise(models, tmp_path: Path) -> None:
    config = _config(models, total_steps=4 * 16 * 4, eval_every=0)
    train_finetune(config, tmp_path / "full", progress=False, device="cpu")
    train_finetune(config, tmp_path / "stopped", progress=False, device="cpu", max_updates=2)
    assert read_meta(tmp_path / "stopped" / "checkpoint")["update"] == 2
    train_finetune(config, tmp_path / "stopped", resume=True, progress=False, device="cpu")
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "stopped")
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(FileExistsError, match="--resume"):
        train_finetune(config, tmp_path / "full", progress=False, device="cpu")


def test_a_moved_latent_policy_resumes_and_another_one_is_refused(models, tmp_path) -> None:
    """A run directory copied elsewhere (its latent policy with it) resumes: the latent policy's
    checkpoint digest, not its path, is the identity; other weights at the path are refused."""
    import shutil

    shutil.copytree(models["bc"], tmp_path / "moved-bc")
    config = _config(models, total_steps=4 * 16 * 2, eval_every=0)
    train_finetune(config, tmp_path / "run", progress=False, device="cpu", max_updates=1)
    moved = dataclasses.replace(config, latent_policy=str(tmp_path / "moved-bc"))
    train_finetune(moved, tmp_path / "run", resume=True, progress=False, device="cpu")
    assert read_meta(tmp_path / "run" / "checkpoint")["config"]["latent_policy"] == str(
        tmp_path / "moved-bc"
    )
    other = tmp_path / "other-bc"
    torch.manual_seed(1)
    bc = BCConfig(**BC_PRESETS["smoke"])
    save_policy(other / "checkpoint", "latent-policy", {"policy": build_latent_policy(bc, 32)},
                {"config": dataclasses.asdict(bc), "latent_dim": 32,
                 "frame_shape": [64, 64, 3]})  # fmt: skip
    with pytest.raises(ValueError, match="the config differs .latent_policy: checkpoint"):
        train_finetune(dataclasses.replace(config, latent_policy=str(other)), tmp_path / "run",
                       resume=True, progress=False, device="cpu")  # fmt: skip


def test_cli_finetune_smoke_logs_normalized_return_against_env_steps(models, tmp_path) -> None:
    out = tmp_path / "ft"
    argv = ["finetune", "--policy", str(models["bc"]), "--env", "coinrun", "--preset", "smoke",
            "--out", str(out), "--no-progress", "--device", "cpu"]  # fmt: skip
    assert main(argv) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [0, 64, 128, 192]
    assert set(records[0]) >= {"step", "return/eval_normalized"}  # the curve's starting point
    assert not any(k.startswith("train/") for k in records[0])
    assert all("return/train_normalized" in r for r in records if "return/train_mean100" in r)
    assert records[-1]["return/eval_normalized"] is not None
    config = FinetuneConfig(**read_meta(out / "checkpoint")["config"])
    assert config.learning_rate == 0.01 and config.latent_policy == str(models["bc"].resolve())
    net, meta = load_policy(out)  # lapo evaluate's loader
    assert meta["kind"] == "finetuned-policy"
    assert net(torch.zeros(2, 64, 64, 3, dtype=torch.uint8)).shape == (2, 15)
    assert main([*argv[:-2], "--resume", "--device", "cpu"]) == 0  # finished: nothing to do


def test_cli_ppo_from_scratch_trains_every_layer(models, tmp_path: Path) -> None:
    out = tmp_path / "ppo"
    argv = ["ppo", "--env", "coinrun", "--preset", "smoke", "--out", str(out), "--device", "cpu",
            "--eval-every", "0", "--network-from", str(models["bc"]), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    meta = read_meta(out / "checkpoint")
    assert meta["source"] == "scratch" and meta["config"]["learning_rate"] == 5e-4
    net, _ = load_finetuned(out)
    assert isinstance(net, OnlineActorCritic) and not net.trunk_frozen
    latent_policy, _ = load_latent_policy(models["bc"])  # same architecture, other weights
    assert net.encoder.state_dict().keys() == latent_policy.encoder.state_dict().keys()


def test_wrong_checkpoints_are_refused_before_work(models, tmp_path, capsys) -> None:
    argv = ["finetune", "--policy", str(models["lam"]), "--env", "coinrun", "--preset", "smoke",
            "--out", str(tmp_path / "x")]  # fmt: skip
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "expected a latent-policy checkpoint" in err and "'latent-action-model'" in err
    assert not (tmp_path / "x").exists()
    with pytest.raises(CheckpointError, match="expected a latent-action-model|latent action"):
        train_finetune(_config(models, hybrid=True, lam=str(models["bc"])), tmp_path / "y",
                       progress=False)  # fmt: skip
    with pytest.raises(ValueError, match="encoder is nature x1 with 32 features"):
        train_finetune(_config(models, features=64), tmp_path / "z", progress=False)
    with pytest.raises(ValueError, match="needs a latent policy and a latent action model"):
        _config(models, hybrid=True)


def test_label_transitions_never_cross_episode_ends() -> None:
    class StampIDM(torch.nn.Module):  # latent = the stamps of the window's frames
        latent_dim = 3

        def forward(self, frames):  # (B, k+2, C, H, W) in [-0.5, 0.5]
            return (frames[:, :, 0, 0, 0] + 0.5) * 255

    class StampLAM(torch.nn.Module):
        context = 1
        idm = StampIDM()

    T, N = 6, 2
    frames = torch.zeros(T + 1, N, 64, 64, 3, dtype=torch.uint8)
    frames[..., 0, 0, 0] = torch.arange((T + 1) * N, dtype=torch.uint8).reshape(T + 1, N)
    dones = torch.zeros(T, N, dtype=torch.bool)
    dones[2, 0] = True  # env 0: o_3 starts a new episode
    actions = torch.arange(T * N).reshape(T, N)
    latents, labels = label_transitions(StampLAM(), frames, dones, actions, bf16=False)
    expected = [(t, n) for t in range(1, T) for n in range(N) if n or t not in (2, 3)]
    assert labels.tolist() == [int(actions[t, n]) for t, n in expected]
    for z, (t, n) in zip(latents, expected, strict=True):  # window o_{t-1}, o_t, o_{t+1}
        assert torch.allclose(z, frames[t - 1 : t + 2, n, 0, 0, 0].float(), atol=0.5)


def test_fit_decoder_is_seeded_and_learns_separable_labels() -> None:
    torch.manual_seed(0)
    latents = torch.randn(300, 8)
    actions = (latents[:, 0] > 0).long() + 2 * (latents[:, 1] > 0).long()  # 4 actions
    fits = []
    for _ in range(2):
        decoder = ActionDecoder(8, 15, (16,))
        kwargs = dict(epochs=30, batch_size=64, learning_rate=1e-2, label_smoothing=0.05, seed=7)
        metrics = fit_decoder(decoder, latents, actions, **kwargs)
        fits.append({k: v.clone() for k, v in decoder.state_dict().items()})
    assert metrics["hybrid/decoder_accuracy"] > 0.9
    assert all(torch.equal(fits[0][k], fits[1][k]) for k in fits[0])


def test_hybrid_smoke_refits_decoder_and_resumes_bitwise(models, tmp_path: Path) -> None:
    config = _config(models, hybrid=True, lam=str(models["lam"]), eval_every=0)
    assert config.hybrid_steps == 128  # the smoke preset: 2 of 3 updates refit the decoder
    train_finetune(config, tmp_path / "full", progress=False, device="cpu")
    records = [
        json.loads(x) for x in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()
    ]
    assert [("hybrid/decoder_loss" in r) for r in records] == [True, True, False]
    assert 0 < records[1]["hybrid/labels"] <= 2 * 15 * 4  # T - k transitions per env, 2 rollouts
    train_finetune(config, tmp_path / "stopped", progress=False, device="cpu", max_updates=1)
    train_finetune(config, tmp_path / "stopped", resume=True, progress=False, device="cpu")
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "stopped")
    assert all(torch.equal(a[k], b[k]) for k in a)
    net, _ = load_finetuned(tmp_path / "full")
    assert isinstance(net, HybridActorCritic)
    latent_policy, _ = load_latent_policy(models["bc"])  # the SL path is the frozen latent policy
    obs = torch.randint(0, 256, (2, 64, 64, 3), dtype=torch.uint8)
    with torch.no_grad():
        assert torch.allclose(net.latent(net.trunk(obs)), latent_policy(obs), atol=1e-5)
        logits, _ = net(obs)
        rl_logits, _ = net.rl(obs)
        expected = (rl_logits + net.decoder(latent_policy(obs))) / 2
    assert torch.allclose(logits, expected, atol=1e-5)
    assert load_checkpoint(tmp_path / "full" / "checkpoint").tensors["hook/actions"].numel() == 0
