"""Every checkpoint kind: written, resolved from a run directory, kind-checked and loaded back
(lapo.load); networks rebuilt by lapo.models.build."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lapo.checkpoint import CheckpointError, save_checkpoint
from lapo.config import (
    BC_PRESETS,
    FINETUNE_PRESETS,
    LAM_PRESETS,
    PPO_PRESETS,
    BCConfig,
    FinetuneConfig,
    LAMConfig,
    PPOConfig,
)
from lapo.eval.actors import PolicyActor
from lapo.load import (
    BC_KIND,
    DECODED_KIND,
    bc_config_meta,
    checkpoint_path,
    expect_kind,
    load_expert,
    load_finetuned,
    load_lam,
    load_latent_policy,
    load_policy,
    save_policy,
)
from lapo.models.build import (
    build_encoder,
    build_expert_policy,
    build_latent_policy,
    build_online_policy,
)
from lapo.models.lam import LatentActionModel
from lapo.models.policy import ActionClassifier, ActionDecoder

OBS = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)


def _same_output(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    x = torch.from_numpy(OBS)
    with torch.no_grad():
        ya, yb = a.eval()(x), b.eval()(x)
    ya, yb = (ya[0], yb[0]) if isinstance(ya, tuple) else (ya, yb)
    return torch.equal(ya, yb)


def test_checkpoint_path_accepts_a_run_directory_a_base_path_or_its_json(tmp_path: Path) -> None:
    assert checkpoint_path(tmp_path) == tmp_path / "checkpoint"
    assert checkpoint_path(tmp_path / "x.json") == tmp_path / "x"
    assert checkpoint_path(tmp_path / "x") == tmp_path / "x"


def test_acting_kinds_round_trip_and_act(tmp_path: Path) -> None:
    torch.manual_seed(0)
    bc = BCConfig(**BC_PRESETS["smoke"])
    latent_policy = build_latent_policy(bc, latent_dim=8)
    decoder = ActionDecoder(8, 15, (16,))
    save_policy(tmp_path / "decoded", DECODED_KIND,
                {"latent_policy": latent_policy, "decoder": decoder},
                {"bc_config": bc_config_meta(bc), "latent_dim": 8, "num_actions": 15,
                 "hidden": [16], "env": "coinrun"})  # fmt: skip
    classifier = ActionClassifier(build_encoder(bc), 15).to(memory_format=torch.channels_last)
    save_policy(tmp_path / "bc", BC_KIND, {"policy": classifier},
                {"bc_config": bc_config_meta(bc), "num_actions": 15})  # fmt: skip
    for name in ("decoded", "bc"):
        net, meta = load_policy(tmp_path / name)  # a run directory
        logits = net(torch.from_numpy(OBS))
        assert logits.shape == (3, 15) and logits.dtype == torch.float32
        actions = PolicyActor(net, seed=1).act(OBS)
        assert actions.shape == (3,) and actions.dtype == np.int64
        assert np.array_equal(actions, PolicyActor(net, seed=1).act(OBS))  # seeded
    net, _ = load_policy(tmp_path / "bc")
    assert _same_output(net, classifier)


def test_expert_and_finetuned_policies_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    ppo = PPOConfig(env="coinrun", **PPO_PRESETS["smoke"])
    expert = build_expert_policy(ppo)
    save_checkpoint(tmp_path / "expert" / "checkpoint", modules={"policy": expert},
                    meta={"kind": "ppo-expert", "config": ppo.__dict__})  # fmt: skip
    loaded, config = load_expert(tmp_path / "expert")
    assert config == ppo and _same_output(loaded, expert)
    ft = FinetuneConfig(env="coinrun", **FINETUNE_PRESETS["smoke"])
    online = build_online_policy(ft)
    save_checkpoint(tmp_path / "ft" / "checkpoint", modules={"policy": online},
                    meta={"kind": "finetuned-policy", "config": ft.__dict__,
                          "num_actions": 15, "latent_dim": None})  # fmt: skip
    loaded, config = load_finetuned(tmp_path / "ft")
    assert config == ft and _same_output(loaded, online)
    logits_only, _ = load_policy(tmp_path / "ft")
    assert logits_only(torch.from_numpy(OBS)).shape == (3, 15)


def test_latent_models_load_and_refuse_to_act(tmp_path: Path) -> None:
    torch.manual_seed(0)
    lam_config = LAMConfig(**LAM_PRESETS["smoke"])
    lam = LatentActionModel(lam_config, channels=3, image_size=64)
    save_checkpoint(tmp_path / "lam" / "checkpoint", modules={"lam": lam},
                    meta={"kind": "latent-action-model", "config": lam_config.__dict__,
                          "frame_shape": [64, 64, 3]})  # fmt: skip
    loaded, config = load_lam(tmp_path / "lam", device="cpu")
    assert config == lam_config and not loaded.training
    bc = BCConfig(**BC_PRESETS["smoke"])
    policy = build_latent_policy(bc, lam_config.latent_dim)
    save_policy(
        tmp_path / "pi",
        "latent-policy",
        {"policy": policy},
        {"config": bc_config_meta(bc), "latent_dim": lam_config.latent_dim},
    )
    loaded_policy, bc_loaded = load_latent_policy(tmp_path / "pi")
    assert bc_loaded == bc and _same_output(loaded_policy, policy)
    with pytest.raises(CheckpointError, match="does not act in the environment; expected one of"):
        load_policy(tmp_path / "lam")
    with pytest.raises(CheckpointError, match=r"load it with lapo\.load\.load_latent_policy"):
        load_policy(tmp_path / "pi")
    with pytest.raises(CheckpointError, match="expected a ppo-expert or bc-policy checkpoint, "
                       "found 'latent-policy'"):  # fmt: skip
        expect_kind(tmp_path / "pi", "ppo-expert", "bc-policy")
    with pytest.raises(CheckpointError, match="expected a PPO expert checkpoint"):
        load_expert(tmp_path / "pi")
    with pytest.raises(FileNotFoundError):
        load_lam(tmp_path / "nothing")


def test_every_loader_reads_onto_the_device_given_or_the_device_policy(tmp_path, monkeypatch):
    import lapo.device
    import lapo.load

    torch.manual_seed(0)
    lam_config = LAMConfig(**LAM_PRESETS["smoke"])
    save_checkpoint(tmp_path / "lam" / "checkpoint",
                    modules={"lam": LatentActionModel(lam_config, channels=3, image_size=64)},
                    meta={"kind": "latent-action-model", "config": lam_config.__dict__,
                          "frame_shape": [64, 64, 3]})  # fmt: skip
    bc = BCConfig(**BC_PRESETS["smoke"])
    save_policy(tmp_path / "pi", "latent-policy", {"policy": build_latent_policy(bc, 8)},
                {"config": bc_config_meta(bc), "latent_dim": 8})  # fmt: skip
    parts = {"latent_policy": build_latent_policy(bc, 8), "decoder": ActionDecoder(8, 15, (16,))}
    save_policy(tmp_path / "decoded", DECODED_KIND, parts,
                {"bc_config": bc_config_meta(bc), "latent_dim": 8, "num_actions": 15,
                 "hidden": [16]})  # fmt: skip
    ppo = PPOConfig(env="coinrun", **PPO_PRESETS["smoke"])
    save_checkpoint(tmp_path / "expert" / "checkpoint",
                    modules={"policy": build_expert_policy(ppo)},
                    meta={"kind": "ppo-expert", "config": ppo.__dict__})  # fmt: skip
    ft = FinetuneConfig(env="coinrun", **FINETUNE_PRESETS["smoke"])
    save_checkpoint(tmp_path / "ft" / "checkpoint", modules={"policy": build_online_policy(ft)},
                    meta={"kind": "finetuned-policy", "config": ft.__dict__,
                          "num_actions": 15, "latent_dim": None})  # fmt: skip
    loaders = {
        "lam": lambda device: load_lam(tmp_path / "lam", device)[0],
        "latent_policy": lambda device: load_latent_policy(tmp_path / "pi", device)[0],
        "expert": lambda device: load_expert(tmp_path / "expert", device)[0],
        "finetuned": lambda device: load_finetuned(tmp_path / "ft", device)[0],
        "decoded": lambda device: load_policy(tmp_path / "decoded", device)[0],
        "policy(expert)": lambda device: load_policy(tmp_path / "expert", device)[0],
        "policy(finetuned)": lambda device: load_policy(tmp_path / "ft", device)[0],
    }
    asked, read_to = [], []
    policy_device = torch.device("cpu")  # what the (mocked) policy picks on this machine
    monkeypatch.setattr(lapo.device, "default_device", lambda: asked.append(1) or policy_device)
    real_load = lapo.load.load_checkpoint

    def recording_load(path, **kwargs):
        read_to.append(torch.device(kwargs["map_location"]))
        return real_load(path, **kwargs)

    monkeypatch.setattr(lapo.load, "load_checkpoint", recording_load)
    for name, load in loaders.items():
        asked.clear(), read_to.clear()
        net = load(None)  # the device policy decides
        assert asked == [1], f"{name} did not ask the device policy"
        assert read_to == [policy_device], name
        assert {p.device for p in net.parameters()} == {policy_device} and not net.training
        asked.clear(), read_to.clear()
        net = load("cpu")  # an explicit device: the policy is not asked
        assert asked == [] and read_to == [torch.device("cpu")], name
