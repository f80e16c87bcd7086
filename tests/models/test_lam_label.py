"""``LatentActionModel.label``: the IDM's latent actions of every window of a frame sequence, on
the model's device (a meta-device model stands in for an accelerator on a CPU-only machine)."""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch import nn

import lapo.models.lam as lam_module
from lapo.config import LAM_PRESETS, LAMConfig
from lapo.models.lam import LatentActionModel, frames_to_float
from lapo.models.quantizers import VQOutput

CONFIG = LAMConfig(**LAM_PRESETS["smoke"])
FRAMES = np.random.default_rng(0).integers(0, 256, (7, 64, 64, 3), dtype=np.uint8)


def test_label_is_the_idm_and_quantizer_of_every_window_on_cpu() -> None:
    torch.manual_seed(0)
    model = LatentActionModel(CONFIG, channels=3, image_size=64).eval()
    latents, codes = model.label(FRAMES, batch_size=2, bf16=False)
    k = CONFIG.context
    windows = np.stack([FRAMES[t - k : t + 2] for t in range(k, len(FRAMES) - 1)])
    with torch.no_grad():
        expected = model.idm(frames_to_float(torch.from_numpy(windows)))
        expected_codes = model.quantizer(expected).indices
    assert latents.shape == (len(FRAMES) - k - 1, CONFIG.latent_dim)
    assert latents.dtype == np.float32 and codes.dtype == np.int64
    np.testing.assert_allclose(latents, expected.numpy(), rtol=1e-5, atol=1e-6)
    assert np.array_equal(codes, expected_codes.numpy())
    again, _ = model.label(torch.from_numpy(FRAMES), bf16=False)  # default batch, a tensor
    np.testing.assert_allclose(again, latents, rtol=1e-5, atol=1e-6)


class _RecordingIDM(nn.Module):
    """Stands in for the IDM on the meta device: records what it is given, returns host zeros."""

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.latent_dim, self.seen = latent_dim, []

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        self.seen.append((frames.device, frames.dtype, tuple(frames.shape)))
        return torch.full((len(frames), self.latent_dim), float(len(self.seen)))


class _Passthrough(nn.Module):
    def forward(self, z: torch.Tensor) -> VQOutput:
        return VQOutput(z, None, torch.zeros(()), None)


def test_label_moves_frames_to_the_models_device_and_autocasts_there(monkeypatch) -> None:
    model = LatentActionModel(CONFIG, channels=3, image_size=64)
    model.idm = _RecordingIDM(CONFIG.latent_dim)
    model.quantizer = _Passthrough()
    model = model.to("meta")  # an accelerator's stand-in: no data, but a device of its own
    casts = []
    monkeypatch.setattr(
        lam_module,
        "autocast",
        lambda device, bf16: casts.append((torch.device(device), bf16)) or contextlib.nullcontext(),
    )
    monkeypatch.setattr(lam_module, "ACCELERATOR_LABEL_BATCH", 4)  # the default off the CPU
    latents, codes = model.label(FRAMES)  # host uint8 frames
    meta = torch.device("meta")
    k2 = CONFIG.context + 2
    assert model.idm.seen == [
        (meta, torch.float32, (4, k2, 3, 64, 64)),
        (meta, torch.float32, (len(FRAMES) - k2 + 1 - 4, k2, 3, 64, 64)),
    ]
    assert casts == [(meta, True), (meta, True)]
    assert codes is None and latents.shape == (len(FRAMES) - k2 + 1, CONFIG.latent_dim)
    assert np.array_equal(latents[:, 0], [1] * 4 + [2] * (len(FRAMES) - k2 - 3))  # batches in order
