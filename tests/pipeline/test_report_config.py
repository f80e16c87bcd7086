"""The report's stage-1 settings row names the departures from the paper that are on."""

from __future__ import annotations

import dataclasses

from lapo.config import LAM_PRESETS, LAMConfig
from lapo.pipeline.report.summary import lam_options


def test_stage1_options_in_the_report_follow_the_config() -> None:
    assert lam_options(LAMConfig(**LAM_PRESETS["paper"])) == ""
    cpu = LAMConfig(**LAM_PRESETS["cpu"])
    text = lam_options(cpu)
    assert "frame differences" in text and "change from o_t" in text and "dead codes" in text
    assert "IDM IMPALA x2" in text
    plain = dataclasses.replace(
        cpu, idm_frame_differences=False, restart_dead_codes=False, idm_multiplier=0
    )
    assert lam_options(plain) == "; FDM predicts the change from o_t"
