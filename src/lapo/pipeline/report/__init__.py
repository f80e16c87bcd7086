"""The report of ``lapo run``: ``report.md``, a self-contained ``report.html``, figures and
``metrics.json``, assembled from the artifacts each stage left in the run directory.

- ``build``: ``build_report`` (the whole document), ``rebuild_report`` (``lapo report``),
  ``load_run_config``
- ``summary``: ``metrics.json``'s content, the summary and configuration tables
- ``banner``: ``report_warnings``, why a run's numbers cannot mean what they seem to
- ``stage_sections``: stages 1-3 and the returns
- ``comparisons``: the label sweep, online fine-tuning, ILPO's collapse diagnostic
- ``codes``: code use on held-out transitions, as the codebook figure counts it
"""

from lapo.pipeline.report.banner import BANNER_HEADING, report_warnings
from lapo.pipeline.report.build import build_report, load_run_config, rebuild_report
from lapo.pipeline.report.codes import code_classes, heldout_codebook_metrics
from lapo.pipeline.report.comparisons import sweep_ci95
from lapo.pipeline.report.summary import METRICS_FIELDS, precision_text

__all__ = [
    "BANNER_HEADING",
    "METRICS_FIELDS",
    "build_report",
    "code_classes",
    "heldout_codebook_metrics",
    "load_run_config",
    "precision_text",
    "rebuild_report",
    "report_warnings",
    "sweep_ci95",
]
