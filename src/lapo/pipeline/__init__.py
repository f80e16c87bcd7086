"""What ``lapo run`` adds on top of the paper's stages: the plan of stages and its manifest
(``plan``), the stage actions (``run``), the label sweep, the online comparison and the report.
The stages never import this package."""

from lapo.pipeline.plan import RUN_PRESETS, RunConfig, StageConflict, StageInterrupted
from lapo.pipeline.run import run_pipeline

__all__ = ["RUN_PRESETS", "RunConfig", "StageConflict", "StageInterrupted", "run_pipeline"]
