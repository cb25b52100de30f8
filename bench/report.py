"""Output of a benchmark: the machine it ran on, a printed table, and a JSON file.

Each benchmark writes ``bench/results/<name>.json`` (``<name>-quick.json`` for ``--quick``),
replacing the previous run's file, with the machine, the command, every repetition and the
medians.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil
from rich.console import Console
from rich.table import Table

RESULTS_DIR = Path(__file__).resolve().parent / "results"
PACKAGES = ("uvicorn", "websockets", "uvloop", "fastapi", "starlette", "aio-pika", "psutil")

# Wide enough for the tables when the output is a file or a pipe.
console = Console(width=150)


def machine() -> dict[str, Any]:
    """Cores, memory, kernel, Python and the versions of the libraries that matter here."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "packages": versions,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def write_result(name: str, quick: bool, data: dict[str, Any]) -> Path:
    """Write the result JSON with the machine and the command; return its path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}{'-quick' if quick else ''}.json"
    document = {
        "benchmark": name,
        "quick": quick,
        "command": "python -m bench " + " ".join(sys.argv[1:]),
        "finished_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        **data,
    }
    path.write_text(json.dumps(_clean(document), indent=2, default=str, allow_nan=False) + "\n")
    console.print(f"[dim]result written to {path}[/dim]")
    return path


def log_dir(name: str) -> Path:
    """Where the children's logs of one benchmark go (replaced on every run)."""
    path = RESULTS_DIR / "logs" / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def print_table(
    title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], left: int = 1
) -> None:
    """Print one table (the first ``left`` columns text, the rest numbers); NaN shows as -."""
    table = Table(title=title)
    for index, column in enumerate(columns):
        table.add_column(column, justify="left" if index < left else "right")
    for row in rows:
        table.add_row(*(fmt(value) for value in row))
    console.print(table)


def fmt(value: Any) -> str:
    """A table cell."""
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return "-" if value is None else str(value)


def say(message: str) -> None:
    """One progress line."""
    console.print(f"[dim]{datetime.datetime.now():%H:%M:%S}[/dim] {message}")


def _clean(value: Any) -> Any:
    """JSON has no NaN: write null instead, at any depth."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _clean(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(item) for item in value]
    return value
