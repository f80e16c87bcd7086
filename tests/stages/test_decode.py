"""Stage 3 offline (``lapo.stages.decode``): decoder, decoded policy, baseline, evaluation,
sweep."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lapo.checkpoint import CheckpointError
from lapo.cli import main
from lapo.config import CollectConfig, DecodeConfig
from lapo.data import open_dataset
from lapo.data.windows import split_windows
from lapo.eval.actors import PolicyActor
from lapo.eval.evaluate import evaluate_checkpoint
from lapo.load import load_lam, load_policy
from lapo.models import make_encoder
from lapo.models.policy import ActionDecoder, DecodedPolicy, LatentPolicy
from lapo.stages import decode as decode_module
from lapo.stages.decode import LabelledSet, decode_offline, draw_labelled_set, train_decoder


def test_decoder_learns_a_known_latent_to_action_mapping() -> None:
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(6, 16)).astype(np.float32) * 3
    actions = rng.integers(0, 6, size=400)
    latents = centers[actions] + rng.normal(scale=0.3, size=(400, 16)).astype(np.float32)
    obs = np.zeros((400, 1, 1, 1), dtype=np.uint8)
    labelled = LabelledSet(np.arange(400), obs, latents, actions.astype(np.int64))
    decoder, info = train_decoder(labelled, DecodeConfig(labels=400, max_epochs=100), 6)
    assert info["validation_accuracy"] >= 0.95
    fresh = centers[np.arange(6)] + rng.normal(scale=0.3, size=(6, 16)).astype(np.float32)
    with torch.no_grad():
        assert decoder(torch.from_numpy(fresh)).argmax(-1).tolist() == list(range(6))
    # a decoder trained on shuffled labels cannot beat chance by much: the test can fail
    shuffled = dataclasses.replace(labelled, actions=rng.permutation(labelled.actions))
    _, bad = train_decoder(shuffled, DecodeConfig(labels=400, max_epochs=100), 6)
    assert bad["validation_accuracy"] < 0.5


def test_decoded_policy_is_its_parts_and_samples_their_distribution() -> None:
    torch.manual_seed(0)
    latent_policy = LatentPolicy(make_encoder("nature", features=32), 8)
    decoder = ActionDecoder(8, 15, (16,))
    decoded = DecodedPolicy(latent_policy, decoder).eval()
    obs = torch.randint(0, 256, (3, 64, 64, 3), dtype=torch.uint8)
    with torch.no_grad():
        assert torch.equal(decoded(obs), decoder(latent_policy(obs)))
        probs = torch.softmax(decoded(obs[:1]).float(), -1)[0].numpy()
    actor = PolicyActor(decoded, bf16=False, seed=0)
    many = np.repeat(obs[:1].numpy(), 4000, axis=0)
    counts = np.bincount(actor.act(many), minlength=15) / 4000
    assert np.abs(counts - probs).max() < 0.03
    with pytest.raises(ValueError, match="latent policy outputs 8 dims"):
        DecodedPolicy(latent_policy, ActionDecoder(16, 15))


def test_decode_offline_saves_loadable_policies(trained) -> None:
    out = trained["root"] / "decode"
    config = DecodeConfig(labels=32, max_epochs=5, bc_steps=10)
    facts = decode_offline(config, trained["bc"], trained["lam"], trained["data"], out)
    saved = json.loads((out / "decode.json").read_text())
    assert saved["labels"] == 32 and len(saved["test/true_actions"]) == facts["test_samples"]
    for key in ("test/decoder_accuracy", "test/decoded_policy_accuracy", "test/label_bc_accuracy"):
        assert 0.0 <= facts[key] <= 1.0
    for sub, kind in (("decoded", "decoded-policy"), ("label-bc", "bc-policy")):
        net, meta = load_policy(out / sub)
        assert meta["kind"] == kind
        logits = net(torch.zeros((2, 64, 64, 3), dtype=torch.uint8))
        assert logits.shape == (2, 8)  # the sprite data has 8 actions
    with pytest.raises(CheckpointError, match="does not act"):
        load_policy(trained["bc"])


def test_decode_offline_reads_stage_2s_cached_latents_and_they_match_the_idm(
    trained, monkeypatch
) -> None:
    # with stage 2's cache valid, the IDM labels nothing again
    config = DecodeConfig(labels=32, max_epochs=5, bc_steps=10)
    computed = decode_offline(config, trained["bc"], trained["lam"], trained["data"],
                              trained["root"] / "decode-computed", baseline=False)  # fmt: skip

    def refuse(*args, **kwargs):
        raise AssertionError("the IDM labelled windows that stage 2 had cached")

    monkeypatch.setattr(decode_module, "label_windows", refuse)
    facts = decode_offline(config, trained["bc"], trained["lam"], trained["data"],
                           trained["root"] / "decode-cached", baseline=False)  # fmt: skip
    assert facts["test_samples"] == computed["test_samples"]
    assert facts["test/true_actions"] == computed["test/true_actions"]  # the same windows
    # the same latents up to batching round-off, so the decoder sees the same labels
    assert abs(facts["test/decoder_accuracy"] - computed["test/decoder_accuracy"]) <= 0.05


def test_draw_labelled_set_takes_the_latents_of_the_drawn_windows_from_a_cache(trained) -> None:
    lam, lam_config = load_lam(trained["lam"], torch.device("cpu"))
    dataset = open_dataset(trained["data"])
    index, _ = split_windows(dataset, lam_config.context, lam_config.test_fraction,
                             lam_config.seed)  # fmt: skip
    fake = np.arange(len(index) * 3, dtype=np.float32).reshape(len(index), 3)
    drawn = draw_labelled_set(lam, index, 10, seed=0, cached=fake)
    assert np.array_equal(drawn.latents, fake[drawn.windows])
    computed = draw_labelled_set(lam, index, 10, seed=0)
    assert np.array_equal(computed.windows, drawn.windows) and computed.latents.shape[1] != 3


def test_decode_offline_with_pseudo_labels_saves_a_third_policy(trained) -> None:
    out = trained["root"] / "decode-pseudo"
    config = DecodeConfig(labels=32, max_epochs=5, pseudo_label_updates=4,
                          pseudo_label_frames=48, pseudo_label_batch_size=8)  # fmt: skip
    facts = decode_offline(config, trained["bc"], trained["lam"], trained["data"], out,
                           baseline=False)  # fmt: skip
    info = facts["pseudo_label"]
    assert info["updates"] == 4 and info["pseudo_labelled"] == 48
    assert 0.0 <= facts["test/pseudo_label_accuracy"] <= 1.0
    assert info["validation_loss"] <= info["initial_validation_loss"]  # best kept, start included
    net, meta = load_policy(out / "pseudo-label")
    assert meta["kind"] == "decoded-policy" and meta["metrics"] == info
    assert net(torch.zeros((2, 64, 64, 3), dtype=torch.uint8)).shape == (2, 8)
    assert not (out / "label-bc").exists()


def test_cli_decode_and_evaluate_reproducible(tmp_path: Path) -> None:
    """Tiny Procgen recording -> smoke stages -> decode -> sweep -> evaluate twice, same returns."""
    from lapo.stages.collect import collect

    data = tmp_path / "data"
    collect(CollectConfig(env="bigfish", frames=1200, out=data, num_envs=8, seed=3), progress=False)
    assert (
        main(
            [
                "train-lam",
                "--data",
                str(data),
                "--preset",
                "smoke",
                "--out",
                str(tmp_path / "lam"),
                "--no-progress",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "train-bc",
                "--lam",
                str(tmp_path / "lam"),
                "--data",
                str(data),
                "--preset",
                "smoke",
                "--out",
                str(tmp_path / "bc"),
                "--no-progress",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    common = ["--policy", str(tmp_path / "bc"), "--lam", str(tmp_path / "lam"), "--data", str(data)]
    # short decoder and label-only BC trainings (DecodeConfig options; defaults 500 and 2,000)
    common += ["--max-epochs", "20", "--bc-steps", "20", "--device", "cpu"]
    assert main(["decode-offline", *common, "--labels", "16", "--out", str(tmp_path / "dec")]) == 0
    assert (
        main(
            [
                "decode-offline",
                *common,
                "--no-progress",
                "--sweep",
                "4,8",
                "--seeds",
                "2",
                "--episodes",
                "2",
                "--out",
                str(tmp_path / "sweep"),
            ]
        )
        == 0
    )
    rows = json.loads((tmp_path / "sweep" / "label_sweep.json").read_text())
    assert [(r["method"], r["labels"], r["seed"]) for r in rows] == [
        (m, n, s) for s in (0, 1) for n in (4, 8) for m in ("lapo", "label-bc")
    ]
    assert all(r["episodes"] == 2 for r in rows)
    # how each policy acts on held-out frames (the sweep's diagnostics) is in every row
    for r in rows:
        assert 0.0 <= r["heldout_accuracy"] <= 1.0 and 0.0 < r["top_action_fraction"] <= 1.0
        assert 0.0 <= r["action_entropy"] <= np.log(15) + 1e-5
    results = []
    for name in ("a", "b"):
        out = tmp_path / f"{name}.json"
        assert (
            main(
                [
                    "evaluate",
                    str(tmp_path / "dec" / "decoded"),
                    "--episodes",
                    "3",
                    "--json",
                    str(out),
                    "--device",
                    "cpu",
                ]
            )
            == 0
        )
        results.append(json.loads(out.read_text()))
    assert results[0]["game"] == "bigfish" and results[0]["episodes"] == 3
    assert results[0]["returns"] == results[1]["returns"]
    assert main(["evaluate", str(tmp_path / "lam"), "--episodes", "1"]) == 1
    with pytest.raises(ValueError, match="acts with 15 discrete actions, Pendulum-v1 takes 1-"):
        evaluate_checkpoint(tmp_path / "dec" / "decoded", 1, game="Pendulum-v1")


def test_sweep_table_means_per_method_and_count_by_hand() -> None:
    from lapo.pipeline.label_sweep import sweep_table

    def row(method, n, seed, value, ci):
        return {"method": method, "labels": n, "seed": seed, "normalized": value,
                "normalized_ci95": ci}  # fmt: skip

    rows = [
        row("label-bc", 16, 0, 0.1, 0.3),
        row("lapo", 16, 0, 0.2, 0.3),
        row("lapo", 16, 1, 0.6, 0.4),
        row("label-bc", 16, 1, 0.3, 0.4),
        {"labels": 32, "seed": 0, "normalized": 0.5, "normalized_ci95": 0.2},  # before "method"
    ]
    table = sweep_table(rows)
    assert [(r["method"], r["labels"], r["seeds"]) for r in table] == [
        ("lapo", 16, 2), ("lapo", 32, 1), ("label-bc", 16, 2),
    ]  # fmt: skip
    lapo16, lapo32, bc16 = table
    assert lapo16["normalized"] == pytest.approx(0.4)
    assert lapo16["normalized_sem"] == pytest.approx(np.std([0.2, 0.6], ddof=1) / np.sqrt(2))
    assert lapo16["normalized_ci95"] == pytest.approx(np.sqrt(0.3**2 + 0.4**2) / 2)  # 0.25
    assert bc16["normalized"] == pytest.approx(0.2)
    assert bc16["normalized_sem"] == pytest.approx(0.1)  # |0.3 - 0.1| / 2
    assert lapo32["normalized_sem"] == 0.0 and lapo32["normalized_ci95"] == pytest.approx(0.2)
