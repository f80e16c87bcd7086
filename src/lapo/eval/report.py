"""A small report builder: one list of blocks written as ``report.md`` and ``report.html``.

``report.md`` references its figures by relative path (they are copied beside it);
``report.html`` stands alone: figures are embedded as base64 PNGs and the stylesheet is inline.
Paragraphs accept a little markdown: ``code``, **bold**, and lines starting with ``- `` as lists.
A banner (``Report.banner``) is shown right under the title, before everything else.
"""

from __future__ import annotations

import base64
import filecmp
import html
import math
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #222;
       max-width: 1000px; margin: 2em auto; padding: 0 1.5em; line-height: 1.5; }
h1 { border-bottom: 2px solid #ddd; padding-bottom: .3em; }
h2 { border-bottom: 1px solid #eee; padding-bottom: .2em; margin-top: 2em; }
code, pre { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, "DejaVu Sans Mono",
            monospace; }
code { background: #f3f3f3; padding: .1em .3em; border-radius: 3px; font-size: .9em; }
pre { background: #f6f8fa; padding: .8em 1em; border-radius: 4px; overflow-x: auto;
      font-size: .85em; line-height: 1.4; }
pre code { background: none; padding: 0; }
table { border-collapse: collapse; margin: 1em 0; font-size: 92%; }
th, td { border: 1px solid #d0d7de; padding: .35em .8em; }
th { background: #f0f3f6; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr:nth-child(even) td { background: #fafbfc; }
figure { margin: 1.5em 0; text-align: center; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 90%; margin-top: .4em; }
nav { background: #f8f8f8; padding: .5em 1.2em; border-radius: 4px; font-size: 92%; }
nav ul { margin: .3em 0; }
details { margin: 1em 0; }
summary { cursor: pointer; color: #0550ae; }
.banner { background: #fff4e5; border: 2px solid #d9822b; border-radius: 4px;
          padding: .6em 1.2em; margin: 1em 0; }
.banner p { margin: .2em 0; }
"""


@dataclass(frozen=True)
class _Block:
    kind: str  # heading, paragraph, code, table, figure
    data: tuple


def _cell(value: object, float_format: str) -> str:
    """Table cell text: floats formatted (NaN -> ``n/a``), everything else ``str``."""
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else format(value, float_format)
    return str(value)


def _is_number(text: str) -> bool:
    return re.fullmatch(r"[-+]?[\d.,]+(e[-+]?\d+)?%?( ± [\d.]+(e[-+]?\d+)?%?)?", text) is not None


def _inline_html(text: str) -> str:
    """Escaped text with ``code`` and **bold** turned into tags."""
    parts = re.split(r"(`[^`]+`)", text)
    out = []
    for part in parts:
        if len(part) > 1 and part.startswith("`") and part.endswith("`"):
            out.append(f"<code>{html.escape(part[1:-1])}</code>")
        else:
            out.append(re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", html.escape(part)))
    return "".join(out)


def _paragraph_html(text: str) -> str:
    """Blank-line separated paragraphs; a paragraph whose lines all start with ``- `` is a list."""
    chunks = []
    for para in re.split(r"\n\s*\n", text.strip()):
        lines = para.splitlines()
        if lines and all(line.lstrip().startswith("- ") for line in lines):
            items = "".join(f"<li>{_inline_html(line.lstrip()[2:])}</li>" for line in lines)
            chunks.append(f"<ul>{items}</ul>")
        else:
            chunks.append(f"<p>{_inline_html(' '.join(line.strip() for line in lines))}</p>")
    return "\n".join(chunks)


def _md_text(text: str) -> str:
    """``<`` escaped outside code spans, so that markdown renderers show it instead of a tag."""
    parts = re.split(r"(`[^`]+`)", text)
    return "".join(p if p.startswith("`") else p.replace("<", "\\<") for p in parts)


def _md_row(cells: Sequence[str]) -> str:
    cells = [_md_text(c).replace("|", "\\|").replace("\n", " ") for c in cells]
    return "| " + " | ".join(cells) + " |"


def _md_fence(text: str) -> str:
    """A backtick fence longer than any backtick run in ``text``."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def _table_html(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Escaped HTML table; cells that read as numbers are right-aligned."""
    ths = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    trs = []
    for row in rows:
        tds = "".join(
            f'<td class="num">{html.escape(c)}</td>'
            if _is_number(c)
            else f"<td>{html.escape(c)}</td>"
            for c in row
        )
        trs.append(f"<tr>{tds}</tr>")
    return f"<table><thead><tr>{ths}</tr></thead><tbody>{''.join(trs)}</tbody></table>"


def _slug(text: str, used: set[str]) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"
    slug, i = base, 2
    while slug in used:
        slug, i = f"{base}-{i}", i + 1
    used.add(slug)
    return slug


class Report:
    """Builder of a markdown + self-contained HTML report.

    Example::

        report = Report("LAPO on bigfish")
        report.heading("Returns")
        report.table(["method", "return"], [["expert", 36.3], ["LAPO", 20.1]])
        report.figure(plot_returns(rows, tmp / "returns.png"), "Returns with 95% CIs.")
        md_path, html_path = report.write(run_dir / "report")

    Args:
        title: the report's title (level-1 heading).
    """

    def __init__(self, title: str) -> None:
        self.title = title
        self._blocks: list[_Block] = []
        self._banner: tuple[str, tuple[str, ...]] | None = None

    def banner(self, heading: str, lines: Sequence[str]) -> Report:
        """A warning box right under the title, wherever in the report it is added.

        Args:
            heading: its first, bold line.
            lines: one list item each (``code`` and **bold** allowed); none: no banner at all.
        Adding a banner again replaces the previous one.
        """
        self._banner = (heading, tuple(lines)) if lines else None
        return self

    def heading(self, text: str, level: int = 2) -> Report:
        """A section heading; ``level`` 2..6 (1 is the title)."""
        if not 2 <= level <= 6:
            raise ValueError(f"heading level must be in 2..6 (1 is the title), got {level}")
        self._blocks.append(_Block("heading", (text, level)))
        return self

    def paragraph(self, text: str) -> Report:
        """Text; blank lines separate paragraphs, ``- `` lines make a list, ``code``, **bold**."""
        self._blocks.append(_Block("paragraph", (text,)))
        return self

    def code(self, text: str, collapsed: str | None = None) -> Report:
        """A preformatted block (configuration dumps, command lines).

        Args:
            collapsed: if given, the block is folded behind this one-line summary (an HTML
                ``<details>`` element, which GitHub's markdown renders too).
        """
        self._blocks.append(_Block("code", (text, collapsed)))
        return self

    def table(
        self,
        header: Sequence[object],
        rows: Sequence[Sequence[object]],
        float_format: str = ".3g",
    ) -> Report:
        """A table; floats are formatted with ``float_format`` (NaN as ``n/a``), the rest ``str``.

        Raises: ValueError for an empty header or a row of another length than the header.
        """
        if not header:
            raise ValueError("table needs a non-empty header")
        for i, row in enumerate(rows):
            if len(row) != len(header):
                raise ValueError(f"table row {i} has {len(row)} cells, the header {len(header)}")
        head = tuple(_cell(h, float_format) for h in header)
        body = tuple(tuple(_cell(v, float_format) for v in row) for row in rows)
        self._blocks.append(_Block("table", (head, body)))
        return self

    def figure(self, png_path: str | Path, caption: str = "") -> Report:
        """A PNG figure with a caption; the file must exist now (it is read at ``write``).

        Raises: FileNotFoundError for a missing file; ValueError for a file that is not a PNG.
        """
        path = Path(png_path)
        if not path.is_file():
            raise FileNotFoundError(f"figure {path} does not exist")
        with path.open("rb") as f:
            if f.read(8) != b"\x89PNG\r\n\x1a\n":
                raise ValueError(f"figure {path} is not a PNG file")
        self._blocks.append(_Block("figure", (path.resolve(), caption)))
        return self

    def write(self, out_dir: str | Path) -> tuple[Path, Path]:
        """Write ``out_dir/report.md``, ``out_dir/report.html`` and copy figures into ``out_dir``.

        Figures already in ``out_dir`` stay where they are; others are copied beside the
        report (renamed ``name-2.png`` etc. when another file holds the name; a file with the
        same bytes is reused, so writing the same report twice copies nothing new).

        Returns: ``(md_path, html_path)``.
        """
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        names = self._place_figures(out_dir.resolve())
        md_path, html_path = out_dir / "report.md", out_dir / "report.html"
        md_path.write_text(self._markdown(names), encoding="utf-8")
        html_path.write_text(self._html(), encoding="utf-8")
        return md_path, html_path

    def _place_figures(self, out_dir: Path) -> dict[Path, str]:
        """Source path -> path relative to ``out_dir``, copying files that live elsewhere."""
        names: dict[Path, str] = {}
        for block in self._blocks:
            if block.kind != "figure" or block.data[0] in names:
                continue
            src: Path = block.data[0]
            if src.is_relative_to(out_dir):
                names[src] = src.relative_to(out_dir).as_posix()
                continue
            name, i = src.name, 2
            while (out_dir / name).exists() and (
                name in names.values() or not filecmp.cmp(src, out_dir / name, shallow=False)
            ):  # taken by another figure: rename; the same bytes (a rewrite): reuse
                name, i = f"{src.stem}-{i}{src.suffix}", i + 1
            if not (out_dir / name).exists():
                shutil.copyfile(src, out_dir / name)
            names[src] = name
        return names

    def _markdown(self, names: dict[Path, str]) -> str:
        lines = [f"# {_md_text(self.title)}", ""]
        if self._banner:  # a block quote: GitHub and most renderers set it apart
            heading, items = self._banner
            lines += [f"> **{_md_text(heading)}**", ">"]
            lines += [f"> - {_md_text(item.strip())}".replace("\n", " ") for item in items] + [""]
        for block in self._blocks:
            if block.kind == "heading":
                text, level = block.data
                lines += ["#" * level + " " + _md_text(text), ""]
            elif block.kind == "paragraph":
                lines += [_md_text(block.data[0].strip()), ""]
            elif block.kind == "code":
                text, collapsed = block.data
                fence = _md_fence(text)
                code = [fence, text.rstrip("\n"), fence, ""]
                if collapsed:
                    summary = html.escape(collapsed)
                    code = [f"<details><summary>{summary}</summary>", "", *code, "</details>", ""]
                lines += code
            elif block.kind == "table":
                head, body = block.data
                lines += [_md_row(head), "|" + "---|" * len(head), *map(_md_row, body), ""]
            elif block.kind == "figure":
                path, caption = block.data
                alt = _md_text(caption).replace("]", ")").replace("[", "(").replace("\n", " ")
                lines += [f"![{alt}]({names[path]})", ""]
                if caption:
                    lines += [f"*{_md_text(caption.strip())}*", ""]
        return "\n".join(lines)

    def _html(self) -> str:
        used: set[str] = set()
        body, toc = [], []
        for block in self._blocks:
            if block.kind == "heading":
                text, level = block.data
                slug = _slug(text, used)
                if level == 2:
                    toc.append(f'<li><a href="#{slug}">{html.escape(text)}</a></li>')
                body.append(f'<h{level} id="{slug}">{html.escape(text)}</h{level}>')
            elif block.kind == "paragraph":
                body.append(_paragraph_html(block.data[0]))
            elif block.kind == "code":
                text, collapsed = block.data
                pre = f"<pre><code>{html.escape(text.rstrip())}</code></pre>"
                if collapsed:
                    pre = f"<details><summary>{_inline_html(collapsed)}</summary>{pre}</details>"
                body.append(pre)
            elif block.kind == "table":
                body.append(_table_html(*block.data))
            elif block.kind == "figure":
                path, caption = block.data
                data = base64.b64encode(path.read_bytes()).decode("ascii")
                cap = f"<figcaption>{_inline_html(caption)}</figcaption>" if caption else ""
                body.append(
                    f'<figure><img src="data:image/png;base64,{data}" '
                    f'alt="{html.escape(caption)}">{cap}</figure>'
                )
        nav = f"<nav><strong>Contents</strong><ul>{''.join(toc)}</ul></nav>" if len(toc) > 2 else ""
        title = html.escape(self.title)
        return (
            '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{title}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
            f"<h1>{title}</h1>\n{self._banner_html()}{nav}\n"
            + "\n".join(body)
            + "\n</body>\n</html>\n"
        )

    def _banner_html(self) -> str:
        if not self._banner:
            return ""
        heading, items = self._banner
        lis = "".join(f"<li>{_inline_html(item.strip())}</li>" for item in items)
        return (
            f'<div class="banner" role="alert"><p><strong>{_inline_html(heading)}</strong></p>'
            f"<ul>{lis}</ul></div>\n"
        )
