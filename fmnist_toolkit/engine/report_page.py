"""The report as ``index.html`` (one self-contained page: inline style, no script, figures as
files beside it) and ``report.md``, from a :class:`~fmnist_toolkit.engine.report.ReportResult`.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fmnist_toolkit.engine.report import Measure, ReportResult, Section

if TYPE_CHECKING:
    from collections.abc import Iterator

TITLE = "The course report, re-made by fmnist-toolkit"
COLUMNS = ("measure", "course report", "toolkit, when trained", "this machine", "model")
WIDE_FIGURE = 2.0  # width / height: wider figures (confusion matrices, sample grids) get a row
STATUS_LABELS = {
    "done": "done",
    "partial": "partly drawn",
    "skipped": "skipped",
    "failed": "failed",
}

STYLE = """
body { font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d1d1f;
       max-width: 1100px; margin: 0 auto; padding: 1.5rem; background: #fff; }
h1 { font-size: 1.8rem; margin-bottom: .2rem; }
h2 { border-top: 1px solid #ddd; padding-top: 1.2rem; margin-top: 2.2rem; }
table { border-collapse: collapse; margin: .8rem 0; font-size: .92rem; }
th, td { border: 1px solid #d6d6d6; padding: .3rem .6rem; text-align: left; vertical-align: top; }
th { background: #f3f4f6; }
td.number { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
code { background: #f3f4f6; padding: 0 .25rem; border-radius: 3px; font-size: .9em; }
.figures { display: flex; flex-wrap: wrap; gap: 0 1.5rem; align-items: flex-start; }
figure { margin: 1.2rem 0; flex: 1 1 420px; min-width: 0; max-width: 100%; }
figure.wide { flex-basis: 100%; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: .9rem; }
.badge { font-size: .75rem; padding: .1rem .5rem; border-radius: 1rem; vertical-align: middle;
         margin-left: .5rem; font-weight: normal; }
.done { background: #d1fae5; color: #065f46; } .partial { background: #fef3c7; color: #92400e; }
.skipped { background: #e5e7eb; color: #374151; } .failed { background: #fee2e2; color: #991b1b; }
.error { border-left: 4px solid #dc2626; background: #fef2f2; padding: .5rem .8rem; }
.missing { border-left: 4px solid #d97706; background: #fffbeb; padding: .5rem .8rem; }
.meta td:first-child { font-weight: 600; }
"""


def format_value(value: Any, unit: str) -> str:
    """A number as the report prints it: MSE to six places, accuracies in per cent."""
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    if unit == "mse":
        return f"{value:.6f}"
    if unit == "accuracy":
        return f"{value:.2%}"
    if unit == "distance":
        return f"{value:.1f}"
    if unit == "count":
        return f"{value:,.0f}"
    return f"{value:g}"


def _cells(measure: Measure) -> list[str]:
    return [
        measure.what,
        format_value(measure.report, measure.unit),
        format_value(measure.toolkit, measure.unit),
        format_value(measure.here, measure.unit),
        measure.model or "",
    ]


def _meta(result: ReportResult) -> list[tuple[str, str]]:
    versions = ", ".join(f"{name} {version}" for name, version in result.versions.items())
    return [
        ("made", result.created),
        ("toolkit", f"fmnist-toolkit {result.toolkit_version} ({versions})"),
        ("device", result.device),
        ("data", result.data),
        ("time", f"{result.seconds:.1f} s for the whole page"),
    ]


def _stage_rows(result: ReportResult) -> list[list[str]]:
    return [
        [
            str(stage.get("stage", "")),
            str(stage.get("model", "")),
            str(stage.get("status", "")),
            f"{stage.get('seconds', 0.0):.1f} s",
        ]
        for stage in result.stages
    ]


# --------------------------------------------------------------------------- HTML


def png_size(path: Path) -> tuple[int, int]:
    """Width and height of a PNG, from its header."""
    header = path.read_bytes()[:24]
    return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")


def _html_section(section: Section, folder: Path) -> Iterator[str]:
    escape = html.escape
    status = section.status
    yield (
        f'<section id="{section.key}"><h2>{escape(section.title)}'
        f'<span class="badge {status}">{STATUS_LABELS[status]}</span></h2>'
    )
    if section.intro:
        yield f"<p>{escape(section.intro)}</p>"
    if section.models:
        yield f"<p>Models: {escape(', '.join(section.models))}. Time: {section.seconds:.1f} s.</p>"
    if section.error:
        yield f'<p class="error">This section failed: {escape(section.error)}</p>'
    if section.skipped:
        yield '<div class="missing"><p>Not drawn here:</p><ul>'
        for item in section.skipped:
            fix = f" — <code>{escape(item.command)}</code>" if item.command else ""
            yield f"<li>{escape(item.what)}: {escape(item.reason)}{fix}</li>"
        yield "</ul></div>"
    if section.measures:
        yield "<table><tr>" + "".join(f"<th>{escape(c)}</th>" for c in COLUMNS) + "</tr>"
        for measure in section.measures:
            cells = _cells(measure)
            yield (
                f"<tr><td>{escape(cells[0])}</td>"
                + "".join(f'<td class="number">{escape(cell)}</td>' for cell in cells[1:4])
                + f"<td>{escape(cells[4])}</td></tr>"
            )
        yield "</table>"
    for note in section.notes:
        yield f"<p>{escape(note)}</p>"
    yield '<div class="figures">'
    for figure in section.figures:
        width, height = png_size(folder / figure.file)
        wide = ' class="wide"' if width >= WIDE_FIGURE * height else ""
        yield (
            f'<figure{wide}><img src="{escape(figure.file)}" width="{width}" height="{height}" '
            f'alt="{escape(figure.caption)}"><figcaption>{escape(figure.caption)}</figcaption>'
            "</figure>"
        )
    yield "</div></section>"


def render_html(result: ReportResult, folder: Path) -> str:
    """The whole page (its figures in ``folder``): no script, no request outside its folder."""
    escape = html.escape
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(TITLE)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{escape(TITLE)}</h1>",
        "<p>Every figure and number of the course report, made again by <code>fmt report</code> "
        "on this machine. <b>course report</b> is the report's own number, <b>toolkit, when "
        "trained</b> what the model recorded when it was trained, <b>this machine</b> what "
        "this run measured.</p>",
        '<table class="meta">',
        *(f"<tr><td>{escape(k)}</td><td>{escape(v)}</td></tr>" for k, v in _meta(result)),
        "</table>",
        "<ul>",
        *(
            f'<li><a href="#{s.key}">{escape(s.title)}</a>'
            f'<span class="badge {s.status}">{STATUS_LABELS[s.status]}</span></li>'
            for s in result.sections
        ),
        "</ul>",
    ]
    if result.stages:
        parts.append("<h2>Trained for this page (--retrain)</h2><table>")
        parts.append("<tr><th>stage</th><th>model</th><th>status</th><th>time</th></tr>")
        for row in _stage_rows(result):
            parts.append("<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>")
        parts.append("</table>")
    for section in result.sections:
        parts.extend(_html_section(section, folder))
    parts.append(
        "<p><small>Made by fmt report. Open report.md for the same in Markdown."
        "</small></p></body></html>"
    )
    return "\n".join(parts) + "\n"


# --------------------------------------------------------------------------- Markdown


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_table(header: list[str] | tuple[str, ...], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(_md_cell(cell) for cell in row) + " |" for row in rows]
    return [*lines, ""]


def render_markdown(result: ReportResult) -> str:
    """The same content as the page, in Markdown (figures linked from figures/)."""
    lines = [f"# {TITLE}", ""]
    lines += _md_table(["", ""], [[key, value] for key, value in _meta(result)])
    if result.stages:
        lines += ["## Trained for this page (--retrain)", ""]
        lines += _md_table(["stage", "model", "status", "time"], _stage_rows(result))
    for section in result.sections:
        lines += [f"## {section.title} ({STATUS_LABELS[section.status]})", ""]
        if section.intro:
            lines += [section.intro, ""]
        if section.models:
            lines += [f"Models: {', '.join(section.models)}. Time: {section.seconds:.1f} s.", ""]
        if section.error:
            lines += [f"**This section failed:** {section.error}", ""]
        for item in section.skipped:
            fix = f" (`{item.command}`)" if item.command else ""
            lines.append(f"- not drawn here: {item.what}: {item.reason}{fix}")
        if section.skipped:
            lines.append("")
        if section.measures:
            lines += _md_table(COLUMNS, [_cells(measure) for measure in section.measures])
        for note in section.notes:
            lines += [note, ""]
        for figure in section.figures:
            lines += [f"![{figure.caption}]({figure.file})", "", f"*{figure.caption}*", ""]
    return "\n".join(lines).rstrip() + "\n"


def write_pages(result: ReportResult, folder: Path) -> None:
    """index.html and report.md into ``folder``."""
    (folder / "index.html").write_text(render_html(result, folder), encoding="utf-8")
    (folder / "report.md").write_text(render_markdown(result), encoding="utf-8")
