"""Size presets for the latent action model's networks (LAPO stage 1: IDM and FDM).

``LAM_SIZES[name]`` holds keyword arguments for ``InverseDynamicsModel`` (key ``"idm"``) and
``ForwardDynamicsModel`` (key ``"fdm"``); the data-dependent arguments (context k, latent size,
channels, image size) come from the caller. Figures below are for k = 1, latent size 128 and
64x64x3 frames; GFLOP are per sample for forward + backward (2 FLOPs per multiply-add); samples/s
are IDM + FDM training steps (forward, backward, Adam) under bf16 autocast with channels_last,
from ``benchmarks/lam_throughput.py`` on one thread of the project's 2-core CPU while another job
loaded both cores (about 91% of the bf16 matmul rate measured at the same time for ``paper``).

- ``paper``: the paper's sizes. IDM: IMPALA-CNN x4, 256 features, 3.69M parameters, 2.8 GFLOP.
  FDM: U-Net of base width 24 (widths 24, 48, 96, 192), 7.96M parameters (paper: "about 8M"),
  5.0 GFLOP. 7.9 GFLOP per sample in all; 22.6 samples/s (batch 128).
- ``cpu``: for training on a CPU: IMPALA x1 (0.66M) and a base-8 U-Net with one block per level
  and two at the bottleneck (0.45M); 0.60 GFLOP per sample, 185 samples/s (batch 64). The
  ``cpu`` stage-1 preset widens this IDM to x2 (``idm_multiplier``, 1.47M; ``lapo.config``).
- ``smoke``: tiny networks for tests (0.17M + 0.10M): a batch-2 step takes milliseconds.
"""

from __future__ import annotations

from lapo.models.fdm import ForwardDynamicsModel
from lapo.models.idm import InverseDynamicsModel

LAM_SIZES: dict[str, dict[str, dict]] = {
    "paper": {
        "idm": {"multiplier": 4, "features": 256},
        "fdm": {"base": 24, "mults": (1, 2, 4, 8), "blocks": (1, 1, 1, 3), "mid_blocks": 4},
    },
    "cpu": {
        "idm": {"multiplier": 1, "features": 256},
        "fdm": {"base": 8, "mults": (1, 2, 4, 8), "blocks": (1, 1, 1, 1), "mid_blocks": 2},
    },
    "smoke": {
        "idm": {"multiplier": 1, "features": 32},
        "fdm": {
            "base": 4, "mults": (1, 2, 4, 8), "blocks": (1, 1, 1, 1), "mid_blocks": 1,
            "tile_channels": 2,
        },
    },
}  # fmt: skip


def make_lam_nets(
    size: str,
    *,
    context: int = 1,
    latent_dim: int = 128,
    channels: int = 3,
    image_size: int = 64,
    frame_differences: bool = False,
    idm_multiplier: int = 0,
    **fdm_overrides,
) -> tuple[InverseDynamicsModel, ForwardDynamicsModel]:
    """Build the IDM and FDM of preset ``size`` (``paper``, ``cpu`` or ``smoke``).

    ``frame_differences`` is the IDM's option of that name; ``idm_multiplier`` (when >= 1)
    replaces the preset's IMPALA channel multiplier; ``fdm_overrides`` replace entries of the
    preset's FDM arguments (e.g. ``norm_groups=8``, ``residual=True``).

    Raises:
        ValueError: unknown size; the message lists the valid ones.
    """
    if size not in LAM_SIZES:
        raise ValueError(f"unknown LAM size {size!r}; expected one of: {', '.join(LAM_SIZES)}")
    preset = LAM_SIZES[size]
    idm_args = {**preset["idm"], **({"multiplier": idm_multiplier} if idm_multiplier else {})}
    idm = InverseDynamicsModel(
        context=context, latent_dim=latent_dim, channels=channels, image_size=image_size,
        frame_differences=frame_differences, **idm_args,
    )  # fmt: skip
    fdm = ForwardDynamicsModel(
        context=context, latent_dim=latent_dim, channels=channels,
        **{**preset["fdm"], **fdm_overrides},
    )  # fmt: skip
    return idm, fdm
