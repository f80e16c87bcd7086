"""Optional stage 3 extension: fine-tuning the decoded policy on the decoder's pseudo-labels."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from lapo.config import DecodeConfig
from lapo.models import make_encoder
from lapo.models.policy import ActionDecoder, DecodedPolicy, LatentPolicy
from lapo.stages.pseudo_label import pseudo_label_finetune

ACTIONS, LATENT = 4, 8


class FrameIndex:
    """The two members of ``WindowIndex`` the fine-tuning reads: ``read`` and ``context``."""

    context = 1

    def __init__(self, frames: np.ndarray) -> None:
        self.frames = frames  # (W, H, W, C) uint8: o_t of window w

    def read(self, windows: np.ndarray) -> np.ndarray:
        o_t = self.frames[windows]
        return np.stack([o_t, o_t, o_t], axis=1)  # (B, k+2, H, W, C)


def _frames(actions: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A 36x36 frame whose lit quadrant is the true action, over uniform noise."""
    frames = rng.integers(0, 60, size=(len(actions), 36, 36, 3), dtype=np.uint8)
    for i, a in enumerate(actions):
        r, c = divmod(int(a), 2)
        frames[i, 18 * r : 18 * r + 18, 18 * c : 18 * c + 18] = 230
    return frames


def _setup(seed: int = 0):
    """Unlabelled video whose IDM latents identify the action, a decoder that reads them exactly,
    and a latent policy that knows nothing yet (random initialization): the decoded policy starts
    near chance, and only the pseudo-labels can teach it the quadrant -> action mapping (8 true
    labels, 2 per action, are far too few for a 2-layer CNN)."""
    rng = np.random.default_rng(seed)
    actions = rng.integers(0, ACTIONS, size=1200)
    index = FrameIndex(_frames(actions, rng))
    centers = np.eye(ACTIONS, LATENT, dtype=np.float32) * 4
    latents = centers[actions] + rng.normal(scale=0.2, size=(1200, LATENT)).astype(np.float32)
    torch.manual_seed(seed)
    decoder = ActionDecoder(LATENT, ACTIONS, (16,))
    optimizer = torch.optim.Adam(decoder.parameters(), lr=1e-2)
    for _ in range(200):  # fit the decoder on the latents themselves: a known teacher
        loss = torch.nn.functional.cross_entropy(
            decoder(torch.from_numpy(latents)), torch.from_numpy(actions)
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    latent_policy = LatentPolicy(make_encoder("nature", features=32, image_size=36), LATENT)
    decoded = DecodedPolicy(latent_policy, decoder).eval()
    labelled_rows = np.concatenate([np.flatnonzero(actions == a)[:2] for a in range(ACTIONS)])
    labelled = (index.frames[labelled_rows], actions[labelled_rows].astype(np.int64))
    held_out = np.arange(1000, 1200)
    validation = (index.frames[held_out[:100]], actions[held_out[:100]].astype(np.int64))
    test = (index.frames[held_out[100:]], actions[held_out[100:]])
    return decoded, index, np.arange(1000), latents[:1000], labelled, validation, test


def _accuracy(net: torch.nn.Module, obs: np.ndarray, actions: np.ndarray) -> float:
    with torch.no_grad():
        return float((net(torch.from_numpy(obs)).argmax(-1).numpy() == actions).mean())


def test_pseudo_labels_teach_the_decoded_policy_a_known_mapping() -> None:
    decoded, index, windows, latents, labelled, validation, test = _setup()
    before = {k: v.clone() for k, v in decoded.state_dict().items()}
    initial = _accuracy(decoded, *test)
    config = DecodeConfig(pseudo_label_updates=150, pseudo_label_batch_size=64,
                          pseudo_label_learning_rate=1e-3)  # fmt: skip
    tuned, info = pseudo_label_finetune(
        decoded, index, windows, latents, labelled, validation, config, bf16=False
    )
    assert initial < 0.5  # a random latent policy: near chance (0.25)
    assert _accuracy(tuned, *test) >= 0.95
    assert info["validation_accuracy"] >= 0.95 and info["teacher_agreement"] >= 0.95
    assert info["validation_loss"] < info["initial_validation_loss"]
    assert 0 < info["best_update"] <= 150 and info["pseudo_labelled"] == 1000
    for key, value in decoded.state_dict().items():  # the input policy is left unchanged
        assert torch.equal(value, before[key]), key


def test_pseudo_labels_from_a_shuffled_teacher_teach_nothing() -> None:
    """The same run with latents shuffled across windows: the soft targets no longer match the
    frames, and the tuned policy stays far from the true mapping (so the test above can fail)."""
    decoded, index, windows, latents, labelled, validation, test = _setup()
    shuffled = np.random.default_rng(1).permutation(latents)
    config = DecodeConfig(
        pseudo_label_updates=150,
        pseudo_label_batch_size=64,
        pseudo_label_learning_rate=1e-3,
        pseudo_label_label_weight=0.0,
    )
    tuned, _ = pseudo_label_finetune(
        decoded, index, windows, shuffled, labelled, validation, config, bf16=False
    )
    assert _accuracy(tuned, *test) < 0.6


def test_pseudo_label_input_errors_and_config_checks() -> None:
    decoded, index, windows, latents, labelled, validation, _ = _setup()
    config = DecodeConfig(pseudo_label_updates=1)
    with pytest.raises(ValueError, match="one latent per window"):
        pseudo_label_finetune(decoded, index, windows, latents[:-1], labelled, validation, config)
    for bad in ({"pseudo_label_updates": -1}, {"pseudo_label_frames": 0},
                {"pseudo_label_batch_size": 0}, {"pseudo_label_learning_rate": 0.0},
                {"pseudo_label_label_weight": -1.0}):  # fmt: skip
        with pytest.raises(ValueError, match=next(iter(bad))):
            dataclasses.replace(DecodeConfig(), **bad)
