"""Stage 1's configuration, the latent action model (IDM + quantizer + FDM), and its presets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from lapo.config.checks import check_ints, check_reals, check_seed, check_types


@dataclass(frozen=True)
class LAMConfig:
    """Stage 1, the latent action model: IDM + quantizer + FDM (paper section 4.1, PAPER.md).

    Units: ``steps`` are optimizer updates of ``batch_size`` windows (summed over DDP ranks).

    Attributes:
        context: k, frames before o_t the IDM and FDM see (windows hold k + 2 frames).
        size: network sizes, ``paper`` (IDM IMPALA x4, FDM U-Net base 24, about 8M parameters),
            ``cpu`` or ``smoke`` (``lapo.models.lam_sizes.LAM_SIZES``).
        quantizer: ``vq`` (EMA vector quantization, the paper's), ``none`` (no-VQ ablation),
            or ``fsq``.
        num_codebooks, num_latents, codebook_size, code_dim: VQ layout; the latent action has
            ``num_codebooks * num_latents * code_dim`` dimensions (2 x 4 x 16 = 128).
        commitment_cost, ema_decay: VQ commitment weight and codebook EMA decay.
        restart_dead_codes: re-seed unused codes from the batch (off in the paper).
        idm_multiplier: the IDM's IMPALA channel multiplier; 0 keeps the ``size``'s own
            (``paper`` 4, ``cpu`` 1).
        idm_frame_differences: the IDM also sees the differences of consecutive frames
            (``InverseDynamicsModel`` ``frame_differences``); off in the paper.
        fdm_residual: the FDM predicts o_{t+1} as o_t plus a change (``ForwardDynamicsModel``
            ``residual``); off in the paper, which predicts the frame itself.
        learning_rate: peak Adam step size (paper table 2e-4; release 3e-4).
        warmup_steps: linear warm-up from ``0.1 x`` the peak (release: 50 steps).
        final_lr_fraction: linear decay to this fraction of the peak at ``steps`` (release 0.01).
        batch_size: windows per update (global).
        steps: updates (paper 70,000; release 50,000).
        grad_clip: global gradient-norm clip (release 2).
        bf16: bf16 autocast (and channels_last) for the forward and backward passes where the
            device has native bf16 (fp32 elsewhere, with a warning; ``lapo.device``).
        compile: train through ``torch.compile`` (off by default: compiling takes minutes and
            pays back only over long runs on an accelerator; ``benchmarks/gpu_check.py``
            measures both).
        test_fraction: fraction of episodes held out for test loss and latent probes.
        log_every, eval_every, checkpoint_every: updates between log lines, test evaluations
            and checkpoints.
        probe_samples: held-out windows used for the final latent-quality probes.
        seed: initialization, split and data-order seed.
    """

    context: int = 1
    size: Literal["paper", "cpu", "smoke"] = "paper"
    quantizer: Literal["vq", "none", "fsq"] = "vq"
    num_codebooks: int = 2
    num_latents: int = 4
    codebook_size: int = 64
    code_dim: int = 16
    commitment_cost: float = 0.05
    ema_decay: float = 0.999
    restart_dead_codes: bool = False
    idm_multiplier: int = 0
    idm_frame_differences: bool = False
    fdm_residual: bool = False
    learning_rate: float = 2e-4
    warmup_steps: int = 50
    final_lr_fraction: float = 0.01
    batch_size: int = 128
    steps: int = 70_000
    grad_clip: float = 2.0
    bf16: bool = True
    compile: bool = False
    test_fraction: float = 0.05
    log_every: int = 100
    eval_every: int = 1000
    checkpoint_every: int = 1000
    probe_samples: int = 8192
    seed: int = 0

    def __post_init__(self) -> None:
        check_types(self)
        if self.quantizer not in ("vq", "none", "fsq"):
            raise ValueError(f"quantizer must be one of vq, none, fsq; got {self.quantizer!r}")
        if self.context < 0:
            raise ValueError(f"context must be >= 0, got {self.context}")
        if self.size not in ("paper", "cpu", "smoke"):
            raise ValueError(f"size must be one of paper, cpu, smoke; got {self.size!r}")
        if self.idm_multiplier < 0:
            raise ValueError(
                f"idm_multiplier must be >= 1 (or 0 for the size's own), got {self.idm_multiplier}"
            )
        for name in (
            "num_codebooks",
            "num_latents",
            "codebook_size",
            "code_dim",
            "batch_size",
            "steps",
            "log_every",
            "eval_every",
            "checkpoint_every",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction}")
        check_ints(self, 0, "warmup_steps")
        check_ints(self, 1, "probe_samples")
        check_reals(self, 0.0, float("inf"), "learning_rate", "grad_clip", open_low=True)
        check_reals(self, 0.0, 1.0, "final_lr_fraction", "ema_decay")
        check_reals(self, 0.0, float("inf"), "commitment_cost")
        check_seed(self)

    @property
    def latent_dim(self) -> int:
        """Size of the latent action: num_codebooks * num_latents * code_dim."""
        return self.num_codebooks * self.num_latents * self.code_dim

    def learning_rate_at(self, step: int) -> float:
        """Warm-up from 0.1x over ``warmup_steps``, then linear decay to ``final_lr_fraction``."""
        if step < self.warmup_steps:
            return self.learning_rate * (0.1 + 0.9 * step / self.warmup_steps)
        progress = (step - self.warmup_steps) / max(self.steps - self.warmup_steps, 1)
        return self.learning_rate * (1.0 - (1.0 - self.final_lr_fraction) * min(progress, 1.0))


#: Named stage-1 presets. ``paper``: the paper table (sizes, lr 2e-4, batch 128, 70k updates).
#: ``cpu``: small networks for 2 CPU cores. Its codebook EMA decay is 0.95 (paper 0.999): in a
#: short run the codebook must follow fast-moving latents; on the synthetic sprite video the
#: MLP probe reached 0.997 with 0.95, 0.75 with 0.99 and 0.37 with 0.999 after 3,000 updates.
#: Two more departures from the paper make a small, briefly trained model learn the action of a
#: small sprite: the IDM also sees the frame differences (``idm_frame_differences``) and the FDM
#: predicts the change from o_t (``fdm_residual``). On a miner random-policy recording, held-out
#: MLP probe after 2,500 updates: 0.097 with neither, 0.186 with the residual FDM, 0.223 with
#: both (restarting dead codes on top of the residual FDM: 0.178, no gain). Its 3,000 updates take
#: 13-16 minutes on 2 cores (3-4 updates/s); the learning rate decays over them, and a
#: run stopped early by a time budget with the learning rate still high was worse than a
#: shorter run that decayed fully (miner, 25-minute budget, 4,096-window probe: 0.216 after
#: 5,204 of 8,000 planned updates, 0.228 after 5,589 of 5,800, 0.249 after 5,000 of 5,000).
#: Dead codes are restarted (``restart_dead_codes``): without it the codebook collapsed on maze,
#: whose mouse covers a few pixels (one code from the first updates on; 25-minute protocol, MLP
#: probe 0.111, frame difference 0.156); with it 0.190, NMI 0.21. On miner three 25-minute
#: runs with it ended at 0.216, 0.230 (seed 1) and 0.219 (seed 2), within the range of the runs
#: above without it. Rerun with nothing else on the machine (all 5,000 updates, 14-18 min), probed
#: with ``lapo probe-lam`` on 32,768 windows of a second recording (where the frame-difference MLP
#: scores 0.218): 0.263, 0.201 and 0.270 for seeds 0, 1 and 2 (with 7,000 updates in 22 min:
#: seed 1 0.234, seed 2 0.242). A narrower bottleneck, one discrete latent of 64 dimensions per
#: codebook (``num_latents=1, code_dim=64``: the same 128-d latent action, 12 bits per
#: transition instead of 48), gave 0.270, 0.269 and 0.214 for seeds 0-2 under the same
#: protocol: the low seed moved, the spread stayed, so the layout stays the paper's.
#: A wider IDM lifted every seed: IMPALA x2 instead of the ``cpu`` size's x1
#: (``idm_multiplier=2``; 1.47M parameters instead of 0.66M, the FDM unchanged; about 12% more
#: time per update), same protocol: 0.261, 0.265, 0.275 and 0.269 for seeds 0-3 (mean 0.268;
#: x1: 0.245 over seeds 0-2), so the preset's IDM is x2.
#: ``smoke``: seconds, for tests.
LAM_PRESETS: dict[str, dict] = {
    "paper": {},
    "cpu": {"size": "cpu", "batch_size": 64, "learning_rate": 1e-3, "steps": 3000,
            "ema_decay": 0.95, "idm_frame_differences": True, "fdm_residual": True,
            "restart_dead_codes": True, "idm_multiplier": 2,
            "log_every": 50, "eval_every": 500, "checkpoint_every": 500, "probe_samples": 4096},
    "smoke": {"size": "smoke", "batch_size": 8, "steps": 6, "log_every": 2, "eval_every": 3,
              "checkpoint_every": 3, "probe_samples": 64, "warmup_steps": 2},
}  # fmt: skip
