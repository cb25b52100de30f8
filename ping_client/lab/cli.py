"""``python -m ping_client lab`` and ``python -m ping_client demo``.

``lab`` runs the experiment matrix and writes a report folder; ``demo`` runs the default
matrix in short cells (READ_HANDLER off and on, keepalive off and 2s/2s), prints the cells side
by side and writes the same report.
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
from importlib.metadata import version
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from event_service.observer import read_sockstat
from ping_client.lab.matrix import (
    PING_KINDS,
    WS_IMPLS,
    Cell,
    build_matrix,
    demo_matrix,
    expected_verdict,
    parse_axis,
)
from ping_client.lab.report import write_report
from ping_client.lab.runner import (
    LabOptions,
    Sample,
    run_cell,
    service_env,
    swarm_settings,
    wait_for_kernel_to_settle,
    without_password,
)
from ping_client.lab.verdict import summarize_cell
from ping_client.view import format_bytes

QUICK_DURATION_S = 12.0
DEFAULT_DURATION_S = 60.0
DEMO_DURATION_S = 15.0
MAX_CLIENTS = 2000


def lab_parser(prog: str, demo: bool) -> argparse.ArgumentParser:
    """Options of ``lab`` (and of ``demo``, which has no matrix options)."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    if not demo:
        scope = parser.add_mutually_exclusive_group()
        scope.add_argument(
            "--quick",
            action="store_true",
            help=f"short cells ({QUICK_DURATION_S:g} s) and keepalive 2s/2s: "
            "the default matrix in about a minute",
        )
        scope.add_argument(
            "--full",
            action="store_true",
            help="every axis: also wsproto and legacy websockets, control pings",
        )
        parser.add_argument(
            "--ws-impl",
            metavar="LIST",
            help=f"uvicorn WebSocket implementations to run, comma-separated "
            f"({', '.join(WS_IMPLS)}; default: {WS_IMPLS[0]}, every one with --full)",
        )
        parser.add_argument(
            "--ping-kind",
            metavar="LIST",
            help=f"client ping kinds to run, comma-separated ({', '.join(PING_KINDS)}; "
            f"default: {PING_KINDS[0]}, both with --full)",
        )
    parser.add_argument(
        "--out", type=Path, help="report folder (default: lab-reports/<kind>-<date>-<time>)"
    )
    parser.add_argument("--duration", type=float, help="seconds per cell")
    parser.add_argument(
        "--clients",
        type=int,
        default=LabOptions.clients,
        help="clients per cell (default: %(default)s)",
    )
    parser.add_argument(
        "--amqp-url",
        default=os.environ.get("AMQP_URL") or None,
        help="use RabbitMQ as the event source and publish through it "
        "(default: $AMQP_URL; unset = embedded source)",
    )
    return parser  # fmt: skip


def options_from_args(
    args: argparse.Namespace, parser: argparse.ArgumentParser, *, default_duration_s: float
) -> LabOptions:
    """Lab options from parsed arguments; exits with a usage error on bad values."""
    duration_s = args.duration if args.duration is not None else default_duration_s
    if not 2 <= duration_s <= 3600:
        parser.error("--duration must be from 2 to 3600 seconds")
    if not 1 <= args.clients <= MAX_CLIENTS:
        parser.error(f"--clients must be from 1 to {MAX_CLIENTS}")
    return LabOptions(duration_s=duration_s, clients=args.clients, amqp_url=args.amqp_url)


def matrix_from_args(
    args: argparse.Namespace, parser: argparse.ArgumentParser, *, quick: bool
) -> list[Cell]:
    """The lab's cells from its options; exits with a usage error on an unknown axis value."""
    try:
        ws_impls = parse_axis(args.ws_impl, WS_IMPLS, "--ws-impl") if args.ws_impl else None
        ping_kinds = (
            parse_axis(args.ping_kind, PING_KINDS, "--ping-kind") if args.ping_kind else None
        )
    except ValueError as exc:
        parser.error(str(exc))
    return build_matrix(quick=quick, full=args.full, ws_impls=ws_impls, ping_kinds=ping_kinds)


def run_lab(argv: list[str], *, demo: bool = False) -> int:
    """Run the matrix (or the demo's short one), write the report, print the results."""
    prog = "python -m ping_client " + ("demo" if demo else "lab")
    parser = lab_parser(prog, demo)
    args = parser.parse_args(argv)
    if importlib.util.find_spec("matplotlib") is None:
        parser.error("the lab draws its charts with matplotlib: pip install 'ws-leak-lab[lab]'")
    quick = not demo and args.quick
    default_duration_s = (
        DEMO_DURATION_S if demo else QUICK_DURATION_S if quick else DEFAULT_DURATION_S
    )
    options = options_from_args(args, parser, default_duration_s=default_duration_s)
    cells = demo_matrix() if demo else matrix_from_args(args, parser, quick=quick)
    kind = "demo" if demo else "quick" if quick else "full" if args.full else "lab"
    out = args.out or Path("lab-reports") / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}"
    if out.exists() and any(out.iterdir()):
        parser.error(f"--out {out} is not empty; choose a new folder")
    console = Console(stderr=True)
    if not console.is_terminal:
        console = Console(stderr=True, width=160)  # logs and CI: room for the tables
    run = run_info(prog, argv, options, started_at=time.strftime("%Y-%m-%d %H:%M:%S %z"))
    results: list[tuple[dict[str, Any], list[Sample]]] = []
    interrupted = False
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        asyncio.run(run_cells(cells, options, out, results, console))
    except KeyboardInterrupt:
        interrupted = True
        console.print("[yellow]interrupted: every service and connection was stopped[/]")
    if not results:
        return 130 if interrupted else 1
    write_report(out, {**run, "interrupted": interrupted}, results)
    entries = [entry for entry, _ in results]
    console.print(side_by_side(entries) if demo else results_table(entries))
    console.print(f"report: {out / 'report.md'}  (open {out / 'index.html'} in a browser)")
    return 130 if interrupted else 0


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM stops the lab the way Ctrl-C does: services stopped, finished cells reported."""
    raise KeyboardInterrupt


def run_info(prog: str, argv: list[str], options: LabOptions, started_at: str) -> dict[str, Any]:
    """What ran, for the report and for repeating the run."""
    return {
        "command": " ".join([prog, *argv]),
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


async def run_cells(
    cells: list[Cell],
    options: LabOptions,
    out: Path,
    results: list[tuple[dict[str, Any], list[Sample]]],
    console: Console,
) -> None:
    """Run the cells one after the other, appending each finished cell to ``results``."""
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(bar_width=24),
        TimeElapsedColumn(),
        TextColumn("{task.fields[figures]}"),
        console=console,
        transient=False,
    )
    tasks = {
        cell: progress.add_task(
            cell.label, total=options.duration_s, figures="waiting", start=False
        )
        for cell in cells
    }
    baseline_bytes = read_sockstat()["mem_bytes"]
    with progress:
        for cell in cells:
            task = tasks[cell]
            progress.start_task(task)

            def on_sample(sample: Sample, task: TaskID = task, cell: Cell = cell) -> None:
                line = live_figures(sample)
                progress.update(task, completed=sample["t_s"], figures=line)
                if not console.is_terminal and int(sample["t_s"]) % 5 == 0:
                    console.print(f"{cell.label}: t={sample['t_s']:.0f}s {line}", soft_wrap=True)

            samples = await run_cell(cell, options, out / "logs" / f"{cell.name}.log", on_sample)
            entry = {
                "name": cell.name,
                "label": cell.label,
                "env": without_password(service_env(cell, options)),
                "swarm": swarm_settings(cell, options),
                **summarize_cell(cell.settings(), expected_verdict(cell), samples),
            }
            results.append((entry, samples))
            progress.update(task, completed=options.duration_s, figures=entry["verdict"])
            await wait_for_kernel_to_settle(baseline_bytes)


def live_figures(sample: Sample) -> str:
    """The key figures of one sample, on one line."""
    closes = ",".join(f"{code}:{n}" for code, n in sample["closes"].items()) or "-"
    return (
        f"connected={sample['connected']} "
        f"recv_q={format_bytes(sample.get('server_recv_q_bytes') or 0)} "
        f"tcp_mem={format_bytes(sample.get('kernel_tcp_mem_bytes') or 0)} "
        f"rss={format_bytes(sample.get('rss_bytes') or 0)} closes={closes}"
    )


def results_table(entries: list[dict[str, Any]]) -> Table:
    """One row per cell: the figures and the verdict against the expectation."""
    table = Table(title="lab results")
    for column in (
        "cell",
        "held growth MB/min",
        "peak Recv-Q",
        "RSS change",
        "first close",
        "lost",
        "verdict",
        "expected",
    ):
        table.add_column(column)  # fmt: skip
    for entry in entries:
        figures = entry["figures"]
        first = figures["first_close"]
        style = "bold red" if entry["surprise"] else None
        table.add_row(
            entry["label"],
            f"{figures['held_growth_mb_per_min']:+.2f}",
            format_bytes(figures["recv_q_peak_bytes"]),
            format_bytes(figures["rss_change_bytes"]),
            _first_close(first),
            str(figures["events_lost"]),
            entry["verdict"],
            entry["expected"],
            style=style,
        )
    return table


def _first_close(first: dict[str, Any] | None) -> str:
    return f"{first['code']} at {first['after_s']:.0f}s" if first else "-"


def side_by_side(entries: list[dict[str, Any]]) -> Table:
    """The demo's table: one column per cell, one row per figure."""
    table = Table(title="missing vs fixed read handler, keepalive off and on")
    table.add_column("")
    for entry in entries:
        table.add_column(entry["label"].replace(", ", "\n"), justify="right")
    rows = [
        ("peak Recv-Q per socket", lambda f: format_bytes(f["recv_q_peak_bytes"])),
        ("peak Recv-Q, all sockets", lambda f: format_bytes(f["recv_q_sum_peak_bytes"])),
        (
            "server receive memory (skmem r), peak",
            lambda f: format_bytes(f.get("skmem_r_peak_bytes", 0)),
        ),
        ("kernel held for service, peak", lambda f: format_bytes(f["held_peak_bytes"])),
        ("kernel TCP memory growth", lambda f: f"{f['kernel_mem_growth_mb_per_min']:+.1f} MB/min"),
        ("server RSS change", lambda f: format_bytes(f["rss_change_bytes"])),
        ("closes", lambda f: ", ".join(f"{c}: {n}" for c, n in f["closes"].items()) or "none"),
        ("first close", lambda f: _first_close(f["first_close"])),
        ("events lost", lambda f: str(f["events_lost"])),
    ]
    for name, value_of in rows:
        table.add_row(name, *(value_of(entry["figures"]) for entry in entries))
    table.add_row("verdict", *(entry["verdict"] for entry in entries))
    return table
