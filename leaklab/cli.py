"""``python -m leaklab`` (or ``leaklab``): list the stories, run some, or run the demo.

- ``leaklab list``: the stories and what each shows.
- ``leaklab run STORY [STORY...] [--quick | --full] [--only AXIS=V1,V2] [--out DIR]``: run
  the stories' matrices and write one report folder.
- ``leaklab demo``: every story's quick matrix, side by side, in one report.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import platform
import signal
import sys
import time
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from leaklab.errors import UnknownStory
from leaklab.report import write_report
from leaklab.runner import run_story
from leaklab.story import (
    STORIES,
    CellSummary,
    LabOptions,
    RunInfo,
    Sample,
    Scope,
    Story,
    load_story,
)

__all__ = ["main"]

QUICK_DURATION_S = 10.0
DEFAULT_DURATION_S = 60.0
DEMO_DURATION_S = 10.0
MAX_CLIENTS = 2000


def parser() -> argparse.ArgumentParser:
    """The command line: ``list``, ``run`` and ``demo``."""
    top = argparse.ArgumentParser(
        prog="leaklab", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("list", help="the stories and what each shows")
    run = commands.add_parser("run", help="run stories' matrices and write a report")
    run.add_argument("stories", nargs="+", metavar="STORY", help=f"one of {', '.join(STORIES)}")
    scope = run.add_mutually_exclusive_group()
    scope.add_argument(
        "--quick",
        action="store_true",
        help=f"the demo's matrix in short cells ({QUICK_DURATION_S:g} s)",
    )
    scope.add_argument("--full", action="store_true", help="every axis of each story")
    run.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="AXIS=V1,V2",
        help="narrow an axis of the stories to these values (repeatable)",
    )
    demo = commands.add_parser("demo", help="every story's quick matrix, side by side")
    for sub in (run, demo):
        sub.add_argument(
            "--out", type=Path, help="report folder (default: lab-reports/<kind>-<date>-<time>)"
        )
        sub.add_argument("--duration", type=float, help="seconds per cell")
        sub.add_argument(
            "--clients",
            type=int,
            default=LabOptions.clients,
            help="clients per cell (default: %(default)s)",
        )
        sub.add_argument(
            "--amqp-url",
            default=os.environ.get("AMQP_URL") or None,
            help="use RabbitMQ as the event source and publish through it "
            "(default: $AMQP_URL; unset = embedded source)",
        )
    return top  # fmt: skip


def parse_only(values: list[str], stories: list[Story]) -> dict[str, tuple[str, ...]]:
    """``--only AXIS=V1,V2`` options as axis -> values; ValueError names what is wrong."""
    axes: dict[str, tuple[str, ...]] = {}
    for story in stories:
        axes.update(story.axes)
    only: dict[str, tuple[str, ...]] = {}
    for value in values:
        name, sep, listed = value.partition("=")
        if not sep or name not in axes:
            known = ", ".join(axes) or "none"
            raise ValueError(f"--only takes AXIS=V1,V2 with an axis of these stories ({known})")
        chosen = tuple(dict.fromkeys(v.strip() for v in listed.split(",") if v.strip()))
        unknown = [v for v in chosen if v not in axes[name]]
        if not chosen or unknown:
            raise ValueError(f"--only {name}= takes values among {', '.join(axes[name])}")
        only[name] = chosen
    return only


def main(argv: list[str] | None = None) -> int:
    """Run the command line; the exit status is 0, 1 (nothing ran), 2 (usage) or 130."""
    top = parser()
    args = top.parse_args(sys.argv[1:] if argv is None else argv)
    if args.command == "list":
        for name in STORIES:
            story = load_story(name)
            print(f"{name:20} {story.title}: {story.summary}")
        return 0
    if importlib.util.find_spec("matplotlib") is None:
        top.error("the lab draws its charts with matplotlib: pip install 'ws-leak-lab[lab]'")
    try:
        names = list(STORIES) if args.command == "demo" else list(dict.fromkeys(args.stories))
        stories = [load_story(name) for name in names]
        only = parse_only(args.only, stories) if args.command == "run" else {}
    except (UnknownStory, ValueError) as exc:
        top.error(str(exc))
    demo = args.command == "demo"
    scope: Scope = "quick" if demo or args.quick else "full" if args.full else "default"
    default_s = (
        DEMO_DURATION_S if demo else QUICK_DURATION_S if scope == "quick" else (DEFAULT_DURATION_S)
    )
    duration_s = args.duration if args.duration is not None else default_s
    if not 2 <= duration_s <= 3600:
        top.error("--duration must be from 2 to 3600 seconds")
    if not 1 <= args.clients <= MAX_CLIENTS:
        top.error(f"--clients must be from 1 to {MAX_CLIENTS}")
    options = LabOptions(duration_s=duration_s, clients=args.clients, amqp_url=args.amqp_url)
    kind = "demo" if demo else scope
    out: Path = args.out or Path("lab-reports") / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}"
    if out.exists() and any(out.iterdir()):
        top.error(f"--out {out} is not empty; choose a new folder")
    plan = [(story, story.matrix(scope, only)) for story in stories]
    if not any(cells for _, cells in plan):
        top.error(
            f"no cell to run: the {scope} matrix has none with --only {' '.join(args.only)} "
            "(some cells are in --full only)"
        )
    return run_plan(plan, options, out, argv_text(argv), demo=demo)


def argv_text(argv: list[str] | None) -> str:
    """The command as typed, for the report."""
    return " ".join(["python -m leaklab", *(sys.argv[1:] if argv is None else argv)])


def run_plan(
    plan: list[tuple[Story, Any]], options: LabOptions, out: Path, command: str, *, demo: bool
) -> int:
    """Run every story's cells, write the report, print the results."""
    console = Console(stderr=True)
    if not console.is_terminal:
        console = Console(stderr=True, width=200)  # logs and CI: room for the tables
    run = run_info(command, options, started_at=time.strftime("%Y-%m-%d %H:%M:%S %z"))
    results: list[tuple[Story, list[tuple[CellSummary, Sequence[Sample]]]]] = []
    interrupted = False
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        asyncio.run(_run_all(plan, options, out, results, console))
    except KeyboardInterrupt:
        interrupted = True
        console.print("[yellow]interrupted: every process and connection was stopped[/]")
    finally:
        signal.signal(signal.SIGTERM, previous)
    results = [(story, cells) for story, cells in results if cells]
    if not results:
        return 130 if interrupted else 1
    write_report(out, {**run, "interrupted": interrupted}, results)
    for story, cells in results:
        console.print(results_table(story, [entry for entry, _ in cells], side_by_side=demo))
    console.print(f"report: {out / 'report.md'}  (open {out / 'index.html'} in a browser)")
    return 130 if interrupted else 0


async def _run_all(
    plan: list[tuple[Story, Any]],
    options: LabOptions,
    out: Path,
    results: list[tuple[Story, list[tuple[CellSummary, Sequence[Sample]]]]],
    console: Console,
) -> None:
    for story, cells in plan:
        finished: list[tuple[CellSummary, Sequence[Sample]]] = []
        results.append((story, finished))
        await run_story(story, cells, options, out, finished, console)


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM stops the lab the way Ctrl-C does: processes stopped, finished cells reported."""
    raise KeyboardInterrupt


def run_info(command: str, options: LabOptions, started_at: str) -> RunInfo:
    """What ran, for the report and for repeating the run."""
    return {
        "command": command,
        "started_at": started_at,
        "duration_s": options.duration_s,
        "clients": options.clients,
        "interval_s": options.interval_s,
        "size_bytes": options.size_bytes,
        "event_rate": options.event_rate,
        "source": "rabbitmq" if options.amqp_url else "embedded",
        "host": platform.node(),
        "python": sys.version.split()[0],
        "versions": {name: version(name) for name in ("uvicorn", "websockets", "wsproto")},
        "cpus": os.cpu_count(),
    }


def results_table(story: Story, entries: list[CellSummary], *, side_by_side: bool) -> Table:
    """A story's results: a row per cell, or (the demo) a column per cell."""
    if not side_by_side:
        table = Table(title=f"{story.name}: {story.title}")
        for header in ("cell", *(c.header for c in story.columns), "verdict", "expected"):
            table.add_column(header)
        for entry in entries:
            style = "bold red" if entry["surprise"] else None
            texts = [c.text(entry["figures"]) if entry["figures"] else "-" for c in story.columns]
            table.add_row(entry["label"], *texts, entry["verdict"], entry["expected"], style=style)
        return table
    table = Table(title=f"{story.name}: {story.title}")
    table.add_column("")
    for entry in entries:
        table.add_column(entry["label"].replace(", ", "\n"), justify="right")
    for column in story.columns:
        table.add_row(
            column.header,
            *(column.text(e["figures"]) if e["figures"] else "-" for e in entries),
        )
    table.add_row("verdict", *(entry["verdict"] for entry in entries))
    table.add_row("expected", *(entry["expected"] for entry in entries))
    return table
