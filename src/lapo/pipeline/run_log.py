"""What ``lapo run`` logs besides the report, as peers do: the resolved config as text, the
report's figures as images and its headline numbers as scalars in TensorBoard (``RUN/tb``,
beside each stage's own ``tb/``), and, with ``--wandb``, all of it plus every stage's logged
metrics mirrored to a Weights & Biases run (wandb is imported only then)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from lapo.runtime import RunLogger, open_wandb

#: Report figures logged as images: file name -> tag.
FIGURES = {
    "latent_map.png": "latent/map",
    "fdm_predictions.png": "latent/fdm_predictions",
    "codebook_usage.png": "latent/codebook_usage",
    "lam_loss.png": "losses/stage1",
    "bc_loss.png": "losses/stage2",
    "confusion.png": "decode/confusion",
    "returns.png": "returns",
}
#: Stage folders whose ``metrics.jsonl`` the mirror replays.
STAGE_LOGS = ("lam", "bc")


def require_wandb() -> None:
    """Check that wandb can be imported (``lapo run --wandb`` asks before any work).

    Raises:
        ImportError: it is not installed (``pip install 'lapo[wandb]'``).
    """
    import importlib.util

    if importlib.util.find_spec("wandb") is None:
        raise ImportError(
            "--wandb needs wandb, which is not installed; install it with "
            "pip install 'lapo[wandb]' (or pip install wandb)"
        )


def resolved_config(config) -> dict:
    """Every field of the run and of its stages' configs (JSON-able)."""
    from lapo.pipeline.run_config import stage_configs

    def plain(obj) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(obj), default=str))

    return {"run": plain(config), **{k: plain(v) for k, v in stage_configs(config).items()}}


def _flat(metrics: dict, prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            out |= _flat(value, f"{prefix}{key}/")
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[f"{prefix}{key}"] = value
    return out


def log_run(config, run_dir: Path, report_dir: Path) -> None:
    """Write the config text, the report's figures and headline numbers to ``run_dir/tb`` (and
    ``run_dir/metrics.jsonl``); mirror them and the stages' metrics to W&B when
    ``config.wandb``.

    Raises:
        ImportError: ``config.wandb`` without wandb installed (``pip install 'lapo[wandb]'``).
    """
    run_dir, report_dir = Path(run_dir), Path(report_dir)
    settings = resolved_config(config)
    mirror = None
    if getattr(config, "wandb", False):
        mirror = open_wandb(config.wandb_project, run_dir / "wandb", settings, run_dir.name)
        _replay_stages(mirror, run_dir)
    logger = RunLogger(run_dir)
    try:
        text = json.dumps(settings, indent=1)
        logger.text("config", "    " + text.replace("\n", "\n    "))  # markdown code block
        images = {}
        for name, tag in FIGURES.items():
            path = report_dir / "figures" / name
            if path.is_file():
                images[tag] = logger.image(tag, path)
        metrics_file = report_dir / "metrics.json"
        numbers = {}
        if metrics_file.is_file():
            numbers = {f"report/{k}": v for k, v in
                       _flat(json.loads(metrics_file.read_text())).items()}  # fmt: skip
            logger.log(0, numbers)
        if mirror is not None:
            import wandb

            mirror.log({tag: wandb.Image(pixels) for tag, pixels in images.items()})
            mirror.summary.update(numbers)
    finally:
        logger.close()
        if mirror is not None:
            mirror.finish()


def _replay_stages(mirror, run_dir: Path) -> None:
    """Every row of the stages' ``metrics.jsonl`` as ``STAGE/KEY``, against ``STAGE/step``."""
    for stage in STAGE_LOGS:
        path = run_dir / stage / "metrics.jsonl"
        if not path.is_file():
            continue
        mirror.define_metric(f"{stage}/*", step_metric=f"{stage}/step")
        for line in path.read_text().splitlines():
            row = json.loads(line)
            values = {f"{stage}/{k}": v for k, v in row.items()
                      if isinstance(v, int | float) and k not in ("step", "time")}  # fmt: skip
            mirror.log({**values, f"{stage}/step": row["step"]})
