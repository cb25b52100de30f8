"""Running a story's cells one after the other, with a progress line per cell.

A cell that fails (its processes would not start, a story bug) is reported with the verdict
``unknown`` and the error as its reason; the run goes on with the next cell. Between cells
the runner waits for the kernel to free the last cell's socket memory, so that no cell
starts on top of another's leftovers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from leaklab.errors import LabError
from leaklab.story import CellRun, CellSummary, LabOptions, Sample, Story
from sockscope.kernel import read_sockstat

__all__ = ["run_one", "run_story", "summarize", "wait_for_kernel_to_settle"]

SETTLE_TIMEOUT_S = 3.0
SETTLE_MARGIN_BYTES = 1 << 20

logger = logging.getLogger("leaklab")


async def run_story(
    story: Story,
    cells: Sequence[Any],
    options: LabOptions,
    out: Path,
    results: list[tuple[CellSummary, Sequence[Sample]]],
    console: Console,
) -> None:
    """Run ``cells`` of ``story``, appending each finished cell and its samples to ``results``."""
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(bar_width=24),
        TimeElapsedColumn(),
        TextColumn("{task.fields[figures]}"),
        console=console,
        transient=False,
    )
    tasks = {
        cell.name: progress.add_task(
            f"{story.name}: {cell.label}", total=options.duration_s, figures="waiting", start=False
        )
        for cell in cells
    }
    baseline_bytes = read_sockstat()["mem_bytes"]
    with progress:
        for cell in cells:
            task = tasks[cell.name]
            progress.start_task(task)

            def on_sample(sample: Sample, task: TaskID = task, label: str = cell.label) -> None:
                line = story.live(sample)
                progress.update(task, completed=sample["t_s"], figures=line)
                if not console.is_terminal and int(sample["t_s"]) % 5 == 0:
                    console.print(f"{label}: t={sample['t_s']:.0f}s {line}", soft_wrap=True)

            entry, samples = await run_one(story, cell, options, out / "logs", on_sample)
            results.append((entry, samples))
            progress.update(task, completed=options.duration_s, figures=entry["verdict"])
            await wait_for_kernel_to_settle(baseline_bytes)


async def run_one(
    story: Story, cell: Any, options: LabOptions, logs: Path, on_sample: Any
) -> tuple[CellSummary, Sequence[Sample]]:
    """One cell, run and judged; a cell that cannot run is ``unknown`` with the reason."""
    expected = story.expected(cell)
    try:
        run = await story.run_cell(cell, options, logs, on_sample)
    except (LabError, OSError) as exc:
        logger.warning("cell failed story=%s cell=%s error=%s", story.name, cell.name, exc)
        reason = f"unknown: the cell could not run ({str(exc).splitlines()[0]})"
        entry: CellSummary = {
            "story": story.name, "name": cell.name, "label": cell.label,
            "settings": cell.settings(), "processes": {}, "figures": {},
            "verdict": "unknown", "reason": reason, "expected": expected,
            "surprise": expected != "unknown",
        }  # fmt: skip
        return entry, []
    return summarize(story, cell, run), run["samples"]


def summarize(story: Story, cell: Any, run: CellRun) -> CellSummary:
    """The summary.json entry of a cell that ran: its settings, figures and verdicts."""
    expected = story.expected(cell)
    result = story.judge(cell, run["samples"])
    return {
        "story": story.name,
        "name": cell.name,
        "label": cell.label,
        "settings": cell.settings(),
        "processes": run["processes"],
        "figures": result["figures"],
        "verdict": result["verdict"],
        "reason": result["reason"],
        "expected": expected,
        "surprise": result["verdict"] != expected,
    }


async def wait_for_kernel_to_settle(baseline_bytes: int) -> int:
    """Wait (at most ``SETTLE_TIMEOUT_S``) until host TCP memory is back near ``baseline_bytes``.

    A cell's sockets can hold kernel memory for a moment after its processes are gone; the
    next cell should not start on top of it. Returns the memory when it stopped waiting.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SETTLE_TIMEOUT_S
    while True:
        used = read_sockstat()["mem_bytes"]
        if used <= baseline_bytes + SETTLE_MARGIN_BYTES or loop.time() >= deadline:
            return used
        await asyncio.sleep(0.25)
