"""The report folder of a lab run: report.md, summary.json, samples, settings, charts, HTML.

One section per story: its cells in a table of the story's columns, its verdict rules quoted
from the story's module (so the docs cannot drift from the code), what each cell says beyond
its row (optional figures ``notes``, a list of sentences, and ``task_groups``, the top lines
of the service's task dump), its charts.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from pathlib import Path

from leaklab.story import CellSummary, RunInfo, Sample, Story

__all__ = ["markdown_report", "table_rows", "write_report"]

INTERRUPTED = (
    "**Interrupted:** this run was stopped before the end of its matrix; only the cells "
    "that finished are reported."
)
# (story, its finished cells with their samples), in the order they ran.
StoryResults = tuple[Story, Sequence[tuple[CellSummary, Sequence[Sample]]]]


def table_rows(story: Story, entries: Sequence[CellSummary]) -> list[list[str]]:
    """One story's table, a row of display strings per cell (header first)."""
    rows = [["cell", *(column.header for column in story.columns), "verdict", "expected"]]
    for entry in entries:
        rows.append([
            entry["label"],
            # A cell that could not run has no figures (the runner's "unknown" entry).
            *(column.text(entry["figures"]) if entry["figures"] else "-"
              for column in story.columns),
            entry["reason"],
            entry["expected"] + (" **(surprise)**" if entry["surprise"] else ""),
        ])  # fmt: skip
    return rows


def cell_notes(entries: Sequence[CellSummary]) -> list[tuple[str, list[str], list[str]]]:
    """(label, notes, task groups) of the cells that have either, in order."""
    found = []
    for entry in entries:
        notes = list(entry["figures"].get("notes") or [])
        groups = list(entry["figures"].get("task_groups") or [])
        if notes or groups:
            found.append((entry["label"], notes, groups))
    return found


def _markdown_notes(entries: Sequence[CellSummary]) -> list[str]:
    lines = []
    for label, notes, groups in cell_notes(entries):
        lines += [f"**{label}**", "", *(f"- {note}" for note in notes)]
        if notes and groups:
            lines.append("")
        if groups:
            lines += ["Top asyncio task groups (`GET /debug/tasks`):", "", "```", *groups, "```"]
        lines.append("")
    return lines


def _html_notes(entries: Sequence[CellSummary]) -> str:
    parts = []
    for label, notes, groups in cell_notes(entries):
        parts.append(f"<p><strong>{html.escape(label)}</strong></p>")
        if notes:
            parts.append("<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
        if groups:
            parts.append(f"<pre>{html.escape(chr(10).join(groups))}</pre>")
    return "\n".join(parts)


def _markdown_table(rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(rows[0]) + " |",
        "|" + "---|" * len(rows[0]),
        *("| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows[1:]),
    ]


def markdown_report(run: RunInfo, results: Sequence[StoryResults]) -> str:
    """report.md: what ran, a table with verdicts per story, and where the rest is."""
    lines = [
        "# Connection-resource leaks: lab report",
        "",
        f"Run at {run['started_at']} with `{run['command']}`: {run['clients']} clients per cell, "
        f"{run['duration_s']} s per cell, events from the {run['source']} source.",
        "",
        *([INTERRUPTED, ""] if run.get("interrupted") else []),
    ]
    for story, cells in results:
        entries = [entry for entry, _ in cells]
        charts = ", ".join(f"{story.name}_{chart.name}.png" for chart in story.charts)
        lines += [
            f"## {story.title} (`{story.name}`)",
            "",
            *_markdown_table(table_rows(story, entries)),
            "",
            *_markdown_notes(entries),
            f"Verdicts come from the samples by fixed rules (the story's module): {story.rules}.",
            "",
            f"Charts: {charts}.",
            "",
        ]
    lines += [
        "Raw samples: samples.jsonl (one JSON object per cell and second). Exact settings: "
        "settings.json. Figures and verdicts: summary.json. Process logs: logs/.",
        "",
    ]
    return "\n".join(lines)


def html_report(
    run: RunInfo, results: Sequence[StoryResults], charts: dict[str, list[Path]]
) -> str:
    """index.html: the same tables and the charts inlined, so it opens without a network."""
    interrupted = (
        f"<p><strong>{html.escape(INTERRUPTED.replace('**', ''))}</strong></p>\n"
        if run.get("interrupted")
        else ""
    )
    sections = []
    for story, cells in results:
        rows = table_rows(story, [entry for entry, _ in cells])
        head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(c.replace('**', ''))}</td>" for c in row) + "</tr>"
            for row in rows[1:]
        )
        notes = _html_notes([entry for entry, _ in cells])
        images = "".join(
            f'<figure><img alt="{path.stem}" src="data:image/png;base64,'
            f'{base64.b64encode(path.read_bytes()).decode()}"></figure>'
            for path in charts.get(story.name, [])
        )
        sections.append(
            f"<h2>{html.escape(story.title)} (<code>{html.escape(story.name)}</code>)</h2>\n"
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>\n{notes}"
            f"<p>Verdicts come from the samples by fixed rules: "
            f"{html.escape(story.rules.replace('**', ''))}.</p>\n{images}"
        )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Leak lab report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; font-size: 14px; }}
td, th {{ border: 1px solid #ccc; padding: 4px 8px; text-align: left; }}
th {{ background: #f4f4f4; }}
figure {{ display: inline-block; margin: 1em 1em 0 0; }}
img {{ max-width: 800px; }}
</style></head><body>
<h1>Connection-resource leaks: lab report</h1>
<p>Run at {html.escape(run["started_at"])}: {run["clients"]} clients per cell,
{run["duration_s"]} s per cell, events from the {html.escape(run["source"])} source.</p>
{interrupted}{"".join(sections)}
</body></html>
"""


def write_report(out_dir: Path, run: RunInfo, results: Sequence[StoryResults]) -> list[Path]:
    """Write every file of the report; return the files written."""
    from leaklab.charts import draw_charts  # matplotlib: the optional "lab" extra

    out_dir.mkdir(parents=True, exist_ok=True)
    entries = [entry for _, cells in results for entry, _ in cells]
    with (out_dir / "samples.jsonl").open("w") as samples_file:
        for _, cells in results:
            for entry, samples in cells:
                for sample in samples:
                    record = {"story": entry["story"], "cell": entry["name"], **sample}
                    samples_file.write(json.dumps(record) + "\n")
    settings = {
        "run": run,
        "cells": {
            e["name"]: {"story": e["story"], "settings": e["settings"], **e["processes"]}
            for e in entries
        },
    }
    (out_dir / "settings.json").write_text(json.dumps(settings, indent=2) + "\n")
    summary = {"run": run, "cells": entries}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    charts = {
        story.name: draw_charts(
            story.name, story.charts, [(e["label"], s) for e, s in cells], out_dir
        )
        for story, cells in results
    }
    (out_dir / "report.md").write_text(markdown_report(run, results))
    (out_dir / "index.html").write_text(html_report(run, results, charts))
    names = ["report.md", "index.html", "summary.json", "samples.jsonl", "settings.json"]
    return [out_dir / name for name in names] + [p for paths in charts.values() for p in paths]
