"""The report tells the truth at a glance: the banner's findings, the precision actually
computed, the label-sweep CIs, and one definition of "codes used" for summary and figure."""

from __future__ import annotations

import copy
import re

import numpy as np
import pytest
import torch

from lapo import device
from lapo.eval import plots
from lapo.eval.report import Report
from lapo.pipeline.report import (
    BANNER_HEADING,
    heldout_codebook_metrics,
    precision_text,
    report_warnings,
    sweep_ci95,
)
from lapo.pipeline.report import codes as report_codes
from lapo.pipeline.report import summary as report_summary
from lapo.pipeline.run_config import RunConfig


def _returns(mean: float, ci: float, normalized: float, normalized_ci: float) -> dict:
    return {
        "mean": mean,
        "ci95": ci,
        "normalized": normalized,
        "normalized_ci95": normalized_ci,
        "episodes": 100,
    }


#: A run whose numbers can mean something: cpu preset, expert far above random, codes in use,
#: probe well above the majority class.
SOUND = {
    "preset": "cpu",
    "returns": {
        "expert": _returns(20.0, 1.0, 0.55, 0.03),
        "random": _returns(1.0, 0.2, 0.00, 0.01),
    },
    "lam": {
        "probe_mlp_accuracy": 0.62,
        "majority_accuracy": 0.31,
        "distinct_codes": 57,
        "heldout_transitions": 3000,
        "heldout_codes_used/0": 12,
        "heldout_perplexity/0": 6.5,
        "heldout_codes_used/1": 9,
        "heldout_perplexity/1": 4.0,
        "heldout_distinct_codes": 140,
        "heldout_joint_perplexity": 31.0,
    },
    "bc": {"test/relative_mse": 0.55},
}


def _with(**changes) -> dict:
    """``SOUND`` with ``section__key=value`` (or top-level ``key=value``) replaced."""
    metrics = copy.deepcopy(SOUND)
    for name, value in changes.items():
        *path, key = name.split("__")
        target = metrics
        for part in path:
            target = target[part]
        target[key] = value
    return metrics


def _one_sentence(text: str) -> bool:
    """Ends with a full stop and has no other sentence end (decimals are not ends)."""
    return text.endswith(".") and not re.search(r"[.!?]\s+[A-Z]", text[:-1])


def test_a_sound_run_gets_no_banner() -> None:
    assert report_warnings(SOUND) == []
    assert report_warnings({}) == []  # nothing known, nothing claimed


def test_smoke_preset_is_flagged() -> None:
    (warning,) = report_warnings(_with(preset="smoke"))
    assert "`smoke` preset" in warning and _one_sentence(warning)


@pytest.mark.parametrize(
    "expert",
    [
        _returns(2.0, 1.5, 0.03, 0.05),  # CIs overlap: 0.03 - 0.05 < 0.00 + 0.01
        _returns(0.9, 0.1, -0.003, 0.001),  # mean below random's, tight CIs
        _returns(20.0, float("nan"), 0.55, float("nan")),  # one episode: no CI, not shown above
    ],
)
def test_expert_not_above_random_is_flagged(expert) -> None:
    (warning,) = report_warnings(_with(returns__expert=expert))
    assert "not above the uniform random policy" in warning and _one_sentence(warning)
    assert f"{expert['normalized']:.3f}" in warning and "0.000 ± 0.010" in warning


def test_without_reference_returns_the_raw_returns_decide() -> None:
    nan = float("nan")
    far = _with(returns__expert=_returns(200.0, 10.0, nan, nan),
                returns__random=_returns(20.0, 2.0, nan, nan))  # fmt: skip
    assert report_warnings(far) == []  # CartPole-like: clearly above, normalized undefined
    close = _with(returns__expert=_returns(21.0, 3.0, nan, nan),
                  returns__random=_returns(20.0, 2.0, nan, nan))  # fmt: skip
    (warning,) = report_warnings(close)
    assert "The expert's return (21.000 ± 3.000, 95% CI) is not above" in warning


def test_expert_just_above_random_is_not_flagged() -> None:
    expert = _returns(1.5, 0.1, 0.05, 0.039)  # lowest 0.011 > random's highest 0.010
    assert report_warnings(_with(returns__expert=expert)) == []


@pytest.mark.parametrize(
    ("lam", "fact"),
    [
        (
            {"heldout_distinct_codes": 1, "heldout_joint_perplexity": 1.0},
            "1 distinct latent action among 3,000 held-out transitions, joint perplexity 1.00",
        ),
        ({"heldout_distinct_codes": 6, "heldout_joint_perplexity": 1.2}, "joint perplexity 1.20"),
        ({"distinct_codes": 1}, "; 1 in the probe's sample"),  # the stage-1 probe windows
    ],
)
def test_collapsed_codebook_is_flagged(lam, fact) -> None:
    metrics = _with()
    metrics["lam"] |= lam
    (warning,) = report_warnings(metrics)
    assert warning.startswith("The codebook collapsed (") and fact in warning
    assert _one_sentence(warning)


def test_a_codebook_in_use_is_not_flagged() -> None:
    # low per-codebook perplexities alone are no collapse: what counts is the whole latent action
    metrics = _with()
    metrics["lam"] |= {"heldout_perplexity/0": 1.0, "heldout_perplexity/1": 1.0}
    assert report_warnings(metrics) == []
    metrics["lam"]["heldout_joint_perplexity"] = 1.6  # above COLLAPSED_PERPLEXITY = 1.5
    assert report_warnings(metrics) == []


@pytest.mark.parametrize("probe", [0.31, 0.32, 0.25])
def test_probe_at_the_majority_class_is_flagged(probe) -> None:
    (warning,) = report_warnings(_with(lam__probe_mlp_accuracy=probe))
    assert f"held-out accuracy {probe:.3f} vs majority class 0.310" in warning
    assert _one_sentence(warning)


def test_probe_above_the_margin_is_not_flagged() -> None:
    assert report_warnings(_with(lam__probe_mlp_accuracy=0.34)) == []


@pytest.mark.parametrize("relative", [0.9, 0.98, 1.2])
def test_a_latent_policy_that_predicts_nothing_is_flagged(relative) -> None:
    metrics = _with()
    metrics["bc"]["test/relative_mse"] = relative
    (warning,) = report_warnings(metrics)
    assert f"held-out relative MSE {relative:.2f}" in warning and _one_sentence(warning)


def test_a_latent_policy_that_predicts_is_not_flagged() -> None:
    metrics = _with()
    metrics["bc"]["test/relative_mse"] = 0.89
    assert report_warnings(metrics) == []
    assert report_warnings(_with(bc={})) == []


def test_every_finding_at_once_in_order() -> None:
    metrics = _with(preset="smoke", lam__probe_mlp_accuracy=0.3, lam__distinct_codes=1)
    metrics["bc"]["test/relative_mse"] = 1.0
    metrics["returns"]["expert"] = _returns(1.0, 0.3, 0.0, 0.01)
    warnings = report_warnings(metrics)
    assert [w.split()[:3] for w in warnings] == [
        ["This", "run", "used"],
        ["The", "expert's", "normalized"],
        ["The", "codebook", "collapsed"],
        ["The", "MLP", "probe"],
        ["The", "latent", "policy"],
    ]


def test_banner_is_the_first_thing_in_both_files(tmp_path) -> None:
    rep = Report("LAPO on bigfish (preset smoke)")
    rep.heading("Summary")
    rep.paragraph("body")
    rep.banner(BANNER_HEADING, report_warnings(_with(preset="smoke")))  # added last, shown first
    md_path, html_path = rep.write(tmp_path)
    md, page = md_path.read_text(), html_path.read_text()
    assert md.index(BANNER_HEADING) < md.index("## Summary")
    assert "> - This run used the `smoke` preset" in md
    assert page.index('<div class="banner" role="alert">') < page.index("<h2")
    assert "<li>This run used the <code>smoke</code> preset" in page


def test_no_findings_no_banner(tmp_path) -> None:
    rep = Report("t").banner(BANNER_HEADING, report_warnings(SOUND))
    md_path, html_path = rep.write(tmp_path)
    assert "Warning" not in md_path.read_text()
    assert 'class="banner"' not in html_path.read_text()


def test_precision_states_what_was_computed(monkeypatch) -> None:
    monkeypatch.setattr(device, "_onednn_bf16", lambda: False)
    text = precision_text(True, torch.device("cpu"))
    assert text.startswith("fp32 (bf16 requested; no native bf16 on this cpu: CPU capability ")
    assert precision_text(False, "cpu") == "fp32"
    monkeypatch.setattr(device, "_onednn_bf16", lambda: True)
    assert precision_text(True, "cpu") == "bf16 (native)"


def _settings_rows(rep: Report) -> dict[str, str]:
    (table,) = [b for b in rep._blocks if b.kind == "table"]
    return dict(table.data[1])


def test_settings_table_reports_fp32_where_bf16_fell_back(monkeypatch) -> None:
    monkeypatch.setattr(device, "_onednn_bf16", lambda: False)
    monkeypatch.setattr(device, "default_device", lambda: torch.device("cpu"))
    rep = Report("t")
    report_summary.config_section(rep, RunConfig(env="bigfish", preset="smoke"))
    rows = _settings_rows(rep)
    for stage in ("stage 1: IDM + FDM", "stage 2: latent BC"):
        assert "fp32 (bf16 requested; no native bf16 on this cpu" in rows[stage]
        assert "bf16 True" not in rows[stage]
    monkeypatch.setattr(device, "_onednn_bf16", lambda: True)
    rep = Report("t")
    report_summary.config_section(rep, RunConfig(env="bigfish", preset="smoke"))
    assert "bf16 (native)" in _settings_rows(rep)["stage 1: IDM + FDM"]


def test_sweep_ci_uses_student_t_over_seeds() -> None:
    two = {"seeds": 2, "normalized_sem": 0.1, "normalized_ci95": 0.05}
    assert sweep_ci95(two) == pytest.approx(1.27062, abs=1e-5)  # t_{0.975, 1} = 12.706
    five = {"seeds": 5, "normalized_sem": 0.1, "normalized_ci95": 0.05}
    assert sweep_ci95(five) == pytest.approx(0.277645, abs=1e-6)  # t_{0.975, 4} = 2.7764
    one = {"seeds": 1, "normalized_sem": 0.0, "normalized_ci95": 0.05}
    assert sweep_ci95(one) == 0.05


def test_codes_used_is_one_number_in_summary_table_metrics_and_figure(tmp_path, monkeypatch):
    # 64-code codebooks, 2 latents each. On 500 held-out transitions codebook 1 uses 4 codes and
    # codebook 2 uses 2. Training's usage EMA counted all 64 (it starts uniform): the report
    # names that one apart and never calls it "codes used".
    rng = np.random.default_rng(0)
    codes = np.stack(
        [rng.choice([3, 9, 17, 40], (500, 2)), rng.choice([5, 6], (500, 2))], 1
    )  # (N=500, G=2, L=2)
    lam = heldout_codebook_metrics(codes, 64)
    lam |= report_codes.training_code_counts({"codes_used/0": 64, "codes_used/1": 64})
    assert lam["heldout_codes_used/0"] == 4 and lam["heldout_codes_used/1"] == 2
    assert lam["heldout_transitions"] == 500
    assert lam["heldout_distinct_codes"] == len(np.unique(codes.reshape(500, -1), axis=0))
    assert lam["train_ema_codes_alive/0"] == 64 and "codes_used/0" not in lam

    figures = []
    save = plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig) or save(fig, path))
    plots.plot_codebook_usage(plots.codebook_counts(codes, 64), tmp_path / "codebook.png")
    titles = [ax.get_title() for ax in figures[0].axes]
    summary = report_codes.codebook_summary(lam, 64)
    assert summary.startswith("4/64 and 2/64 (perplexity ")
    assert "on 500 held-out transitions, which get" in summary
    for g, title in enumerate(titles):
        assert f"{lam[f'heldout_codes_used/{g}']}/64 codes used" in title
        assert f"perplexity {lam[f'heldout_perplexity/{g}']:.1f}" in title
    rows = report_codes.codebook_rows(lam, 64)
    assert rows == [
        ["codebook 1", "4/64", f"{lam['heldout_perplexity/0']:.2f}", "64/64"],
        ["codebook 2", "2/64", f"{lam['heldout_perplexity/1']:.2f}", "64/64"],
    ]
    # the summary row's text is the table's
    metrics = {"lam": {"probe_mlp_accuracy": 0.5, "frame_difference_mlp_accuracy": 0.4,
                       "majority_accuracy": 0.3, **lam},
               "returns": {}, "decode": {"labels": 32}, "seconds": {"lam": 60.0}}  # fmt: skip
    rep = Report("t")
    report_summary.summary_section(rep, metrics, 64)
    (table,) = [b for b in rep._blocks if b.kind == "table"]
    assert dict(table.data[1])["codes used per codebook (held-out, as in the codebook figure)"] == (
        summary
    )


def test_a_constant_latent_action_is_one_joint_code_whatever_each_slot_uses() -> None:
    # every transition gets the same 4 codes in its 4 latent slots: 4 codes "used" per codebook
    # (the figure), yet one latent action (the smoke run of this change looked like this)
    codes = np.tile(np.array([[[1, 2, 3, 4], [5, 6, 7, 8]]]), (100, 1, 1))  # (100, 2, 4)
    lam = heldout_codebook_metrics(codes, 64)
    assert lam["heldout_codes_used/0"] == 4 and lam["heldout_perplexity/0"] == pytest.approx(4)
    assert lam["heldout_distinct_codes"] == 1 and lam["heldout_joint_perplexity"] == 1.0
    (warning,) = report_warnings({"lam": lam})
    assert "1 distinct latent action among 100 held-out transitions" in warning


def test_codebook_stats_perplexity() -> None:
    used, perplexity = plots.codebook_stats(np.array([[5, 5, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]))
    assert used.tolist() == [2, 1, 0]
    np.testing.assert_allclose(perplexity, [2.0, 1.0, 0.0])
