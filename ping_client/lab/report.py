"""The report folder of a lab run: report.md, summary.json, samples, settings, charts, HTML."""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ping_client.lab.verdict import RULES

KIB = 1024
MIB = 1024 * 1024
INTERRUPTED = (
    "**Interrupted:** this run was stopped before the end of its matrix; only the cells "
    "that finished are reported."
)


def _first_close(figures: dict[str, Any]) -> str:
    first = figures["first_close"]
    return f"{first['code']} at {first['after_s']:.0f} s" if first else "none"


def table_rows(entries: Sequence[dict[str, Any]]) -> list[list[str]]:
    """The report table, one row of display strings per cell (header first)."""
    rows = [[
        "cell", "kernel TCP mem growth (MB/min)", "held for service growth (MB/min)",
        "peak Recv-Q per socket", "peak server receive memory (skmem r)", "RSS change",
        "first close", "events lost", "verdict", "expected",
    ]]  # fmt: skip
    for entry in entries:
        figures = entry["figures"]
        rows.append([
            entry["label"],
            f"{figures['kernel_mem_growth_mb_per_min']:+.2f}",
            f"{figures['held_growth_mb_per_min']:+.2f}",
            f"{figures['recv_q_peak_bytes'] / KIB:.0f} KiB",
            f"{figures.get('skmem_r_peak_bytes', 0) / MIB:.1f} MiB",
            f"{figures['rss_change_bytes'] / MIB:+.1f} MiB",
            _first_close(figures),
            str(figures["events_lost"]),
            entry["reason"],
            entry["expected"] + (" **(surprise)**" if entry["surprise"] else ""),
        ])  # fmt: skip
    return rows


def markdown_report(run: dict[str, Any], entries: Sequence[dict[str, Any]]) -> str:
    """report.md: what ran, the table with verdicts, and where the rest is."""
    rows = table_rows(entries)
    lines = [
        "# WebSocket read-handler leak: lab report",
        "",
        f"Run at {run['started_at']} with `{run['command']}`: {run['clients']} clients per cell, "
        f"{run['size_bytes']}-byte pings every {run['interval_s']} s, {run['duration_s']} s per "
        f"cell, events from the {run['source']} source at {run['event_rate']}/s.",
        "",
        *([INTERRUPTED, ""] if run.get("interrupted") else []),
        "| " + " | ".join(rows[0]) + " |",
        "|" + "---|" * len(rows[0]),
        *("| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows[1:]),
        "",
        f"Verdicts come from the samples by fixed rules (ping_client/lab/verdict.py): {RULES}. "
        "*Held for service* is the server's Recv-Q plus the clients' Send-Q; kernel TCP memory "
        "is host-wide.",
        "",
        "Charts: recv_q.png, kernel_tcp_mem.png, rss.png, closes.png. Raw samples: "
        "samples.jsonl (one JSON object per cell and second). Exact settings: settings.json. "
        "Figures and verdicts: summary.json. Service logs: logs/.",
        "",
    ]
    return "\n".join(lines)


def html_report(run: dict[str, Any], entries: Sequence[dict[str, Any]], charts: list[Path]) -> str:
    """index.html: the same table and the charts inlined, so it opens without a network."""
    rows = table_rows(entries)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c.replace('**', ''))}</td>" for c in row) + "</tr>"
        for row in rows[1:]
    )
    images = "".join(
        f'<figure><img alt="{path.stem}" src="data:image/png;base64,'
        f'{base64.b64encode(path.read_bytes()).decode()}"></figure>'
        for path in charts
    )
    interrupted = (
        f"<p><strong>{html.escape(INTERRUPTED.replace('**', ''))}</strong></p>\n"
        if run.get("interrupted")
        else ""
    )
    rules = html.escape(RULES.replace("**", ""))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>WebSocket leak lab report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; font-size: 14px; }}
td, th {{ border: 1px solid #ccc; padding: 4px 8px; text-align: left; }}
th {{ background: #f4f4f4; }}
figure {{ display: inline-block; margin: 1em 1em 0 0; }}
img {{ max-width: 800px; }}
</style></head><body>
<h1>WebSocket read-handler leak: lab report</h1>
<p>Run at {html.escape(run["started_at"])}: {run["clients"]} clients per cell,
{run["size_bytes"]}-byte pings every {run["interval_s"]} s, {run["duration_s"]} s per cell,
events from the {html.escape(run["source"])} source.</p>
{interrupted}<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>
<p>Verdicts come from the samples by fixed rules: {rules}.</p>
{images}
</body></html>
"""


def write_report(
    out_dir: Path,
    run: dict[str, Any],
    cells: Sequence[tuple[dict[str, Any], Sequence[dict[str, Any]]]],
) -> list[Path]:
    """Write every file of the report; ``cells`` pairs each summary entry with its samples."""
    from ping_client.lab.charts import draw_charts  # matplotlib: the optional "lab" extra

    out_dir.mkdir(parents=True, exist_ok=True)
    entries = [entry for entry, _ in cells]
    with (out_dir / "samples.jsonl").open("w") as samples_file:
        for entry, samples in cells:
            for sample in samples:
                samples_file.write(json.dumps({"cell": entry["name"], **sample}) + "\n")
    settings = {
        "run": run,
        "cells": {
            e["name"]: {"settings": e["settings"], "service_env": e["env"], "swarm": e["swarm"]}
            for e in entries
        },
    }
    (out_dir / "settings.json").write_text(json.dumps(settings, indent=2) + "\n")
    summary = {"run": run, "cells": entries}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    charts = draw_charts([(e["label"], samples) for e, samples in cells], out_dir)
    (out_dir / "report.md").write_text(markdown_report(run, entries))
    (out_dir / "index.html").write_text(html_report(run, entries, charts))
    names = ["report.md", "index.html", "summary.json", "samples.jsonl", "settings.json"]
    return [out_dir / name for name in names] + charts
