"""The report builder: markdown with relative figure links, self-contained and escaped HTML."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import numpy as np
import pytest

from lapo.eval import plots
from lapo.eval.report import Report


@pytest.fixture
def figures(tmp_path) -> list[Path]:
    """Two real PNGs with the same file name in different folders."""
    paths = []
    for i, folder in enumerate(("a", "b")):
        series = {"loss": (np.arange(10), np.arange(10) * (i + 1.0))}
        paths.append(plots.plot_training_curves(series, tmp_path / folder / "loss.png", "t"))
    return paths


def build(figures: list[Path]) -> Report:
    report = Report("LAPO <run> & co")
    report.heading("Configuration")
    report.paragraph("Run with `lapo run --preset cpu` and **bold** <script>alert(1)</script>.")
    report.paragraph("- first item\n- second & last\n\nA second paragraph.")
    report.code('{"steps": 100, "lr": "2e-4 <peak>"}')
    report.heading("Returns", level=3)
    report.table(
        ["method", "return", "normalized"],
        [["expert | PPO", 36.3, 1.0], ["LAPO <decoded>", 20.123456, float("nan")]],
    )
    report.heading("Figures")
    report.figure(figures[0], "Stage 1 loss <train>")
    report.figure(figures[1], "Same name, other folder")
    report.heading("Third")
    return report


def test_report_writes_markdown_with_existing_figures(tmp_path, figures) -> None:
    md_path, html_path = build(figures).write(tmp_path / "out")
    assert md_path == tmp_path / "out" / "report.md" and html_path.name == "report.html"
    md = md_path.read_text()
    assert md.startswith("# LAPO \\<run> & co")  # "<" escaped for markdown renderers
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert links == ["loss.png", "loss-2.png"]  # copied beside the report, collision renamed
    for link in links:
        assert not Path(link).is_absolute() and (md_path.parent / link).is_file()
    assert (md_path.parent / "loss-2.png").read_bytes() == figures[1].read_bytes()
    assert "| expert \\| PPO | 36.3 | 1 |" in md
    assert "| LAPO \\<decoded> | 20.1 | n/a |" in md
    assert "Run with `lapo run --preset cpu`" in md and "\\<script>" in md
    assert "### Returns" in md and "```\n{" in md
    # writing again reuses the copies instead of piling up loss-3.png, loss-4.png
    build(figures).write(tmp_path / "out")
    assert sorted(p.name for p in md_path.parent.glob("*.png")) == ["loss-2.png", "loss.png"]
    assert md_path.read_text() == md


def test_report_html_is_self_contained_and_escaped(tmp_path, figures) -> None:
    _, html_path = build(figures).write(tmp_path / "out")
    page = html_path.read_text()
    images = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 2
    assert base64.b64decode(images[0]) == figures[0].read_bytes()
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<title>LAPO &lt;run&gt; &amp; co</title>" in page
    assert "<code>lapo run --preset cpu</code>" in page and "<strong>bold</strong>" in page
    assert "<li>second &amp; last</li>" in page and "<p>A second paragraph.</p>" in page
    assert "<td>LAPO &lt;decoded&gt;</td>" in page and '<td class="num">20.1</td>' in page
    assert "<figcaption>Stage 1 loss &lt;train&gt;</figcaption>" in page
    assert "2e-4 &lt;peak&gt;" in page
    assert 'href="#configuration"' in page  # contents list: three level-2 headings
    assert 'src="/' not in page and "src='" not in page  # no file references


def test_report_figures_already_in_out_dir_stay(tmp_path) -> None:
    out = tmp_path / "out"
    png = plots.plot_codebook_usage(np.ones((1, 4), int), out / "figs" / "usage.png")
    md_path, _ = Report("r").figure(png, "usage").write(out)
    assert "](figs/usage.png)" in md_path.read_text()
    assert sorted(p.name for p in out.rglob("*.png")) == ["usage.png"]


def test_report_rejects_bad_input(tmp_path) -> None:
    report = Report("r")
    with pytest.raises(FileNotFoundError):
        report.figure(tmp_path / "missing.png")
    (tmp_path / "fake.png").write_text("not a png")
    with pytest.raises(ValueError, match="not a PNG"):
        report.figure(tmp_path / "fake.png")
    with pytest.raises(ValueError, match="row 1 has 1 cells"):
        report.table(["a", "b"], [[1, 2], [3]])
    with pytest.raises(ValueError, match="non-empty header"):
        report.table([], [])
    with pytest.raises(ValueError, match="level"):
        report.heading("x", level=1)


def test_report_folds_a_collapsed_code_block(tmp_path) -> None:
    report = Report("r").code("shown <a>").code('{"lr": 1e-3} <b>', collapsed="all <settings>")
    md_path, html_path = report.write(tmp_path)
    page, md = html_path.read_text(), md_path.read_text()
    assert "<pre><code>shown &lt;a&gt;</code></pre>" in page
    assert page.count("<details>") == 1
    assert (
        "<details><summary>all &lt;settings&gt;</summary><pre><code>{&quot;lr&quot;: 1e-3} "
        "&lt;b&gt;</code></pre></details>" in page
    )
    assert '<details><summary>all &lt;settings&gt;</summary>\n\n```\n{"lr": 1e-3} <b>\n```' in md
    assert md.count("</details>") == 1
