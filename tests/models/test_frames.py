"""Entry points that take frames check them against the model's resolution and say what they
expected (``lapo.models.frames``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lapo.config import BC_PRESETS, LAM_PRESETS, BCConfig, LAMConfig
from lapo.eval.actors import PolicyActor, predict_actions
from lapo.models.build import build_latent_policy
from lapo.models.frames import check_frames, model_frame_shape
from lapo.models.lam import LatentActionModel
from lapo.models.policy import ActionDecoder, DecodedPolicy


def test_label_names_the_expected_resolution() -> None:
    lam = LatentActionModel(LAMConfig(**LAM_PRESETS["smoke"]), image_size=32)
    k = lam.context
    latents, _ = lam.label(np.zeros((k + 3, 32, 32, 3), np.uint8), bf16=False)
    assert latents.shape == (2, lam.latent_dim)
    with pytest.raises(ValueError, match=r"label expects \(T, 32, 32, 3\) uint8.*got uint8 "
                       r"\(6, 64, 64, 3\); import or resize"):  # fmt: skip
        lam.label(np.zeros((6, 64, 64, 3), np.uint8))
    with pytest.raises(ValueError, match=r"expects \(T, 32, 32, 3\) uint8.*got float32"):
        lam.label(np.zeros((6, 32, 32, 3), np.float32))


def test_policy_actor_and_predict_actions_check_the_frames() -> None:
    bc = BCConfig(**BC_PRESETS["smoke"])
    policy = DecodedPolicy(build_latent_policy(bc, 8, (48, 48, 3)), ActionDecoder(8, 5))
    assert model_frame_shape(policy) == (48, 48, 3)
    good = np.zeros((2, 48, 48, 3), np.uint8)
    assert predict_actions(policy, good).shape == (2,)
    actor = PolicyActor(policy, bf16=False, greedy=True)
    assert actor.act(good).shape == (2,)
    assert (actor.act(torch.from_numpy(good)) == actor.act(good)).all()  # a tensor acts alike
    with pytest.raises(ValueError, match=r"expects a \(N, H, W, C\) uint8 numpy array or tensor"):
        actor.act(list(good))
    with pytest.raises(ValueError, match=r"expected \(B, H, W, C\) uint8 frames .the network "
                       r"scales them itself., got float32 \(2, 48, 48, 3\)"):  # fmt: skip
        policy(torch.from_numpy(good).float() / 255)  # the raw module, called directly
    with pytest.raises(ValueError, match=r"PolicyActor.act expects \(N, 48, 48, 3\) uint8"):
        PolicyActor(policy, bf16=False).act(np.zeros((2, 64, 64, 3), np.uint8))
    with pytest.raises(ValueError, match=r"predict_actions expects \(N, 48, 48, 3\).*\(64, 48"):
        predict_actions(policy, np.zeros((64, 48, 3), np.uint8))
    with pytest.raises(ValueError, match=r"expected \(B, 48, 48, 3\) uint8 frames .those the "
                       r"network was trained on., got \(2, 32, 32, 3\)"):  # fmt: skip
        policy(torch.zeros(2, 32, 32, 3, dtype=torch.uint8))  # the raw module, other frames


def test_check_frames_without_a_known_shape_checks_rank_and_dtype() -> None:
    check_frames(np.zeros((1, 5, 7, 3), np.uint8), None, "f")
    with pytest.raises(ValueError, match=r"f expects \(N, H, W, C\) uint8 frames"):
        check_frames(np.zeros((5, 7, 3), np.uint8), None, "f")
