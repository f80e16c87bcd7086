"""What ``lapo run`` adds on top of the paper's stages: the plan of stages and its manifest
(``plan``), the stage actions (``run``), the label sweep, the online comparison and the report.
The stages never import this package."""

from lapo.pipeline.plan import StageConflict, StageInterrupted
from lapo.pipeline.run_config import RUN_PRESETS, RunConfig

__all__ = ["RUN_PRESETS", "RunConfig", "StageConflict", "StageInterrupted", "run_pipeline"]


def __getattr__(name: str):
    """``run_pipeline`` on first use: it imports torch and every stage, which ``RunConfig``
    (read by ``lapo --help``) does not need."""
    if name == "run_pipeline":
        from lapo.pipeline.run import run_pipeline

        return run_pipeline
    raise AttributeError(f"module 'lapo.pipeline' has no attribute {name!r}")
