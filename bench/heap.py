"""Where an idle subscriber's memory goes: a tracemalloc diff of the service, in-process.

``python -m bench.heap [--subscribers 3000]`` runs the event service (fixed read handler, no
events) in this process on uvloop, lets a few clients come and go, takes a tracemalloc
snapshot, connects the lean subscribers of :mod:`bench.subscribers`, takes a second
snapshot, and prints the allocations that grew, in bytes per subscriber, by source file
and by line. It complements ``python -m bench idle``, which measures RSS from outside;
tracemalloc sees the Python heap only and slows the service down, so it is not a benchmark.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import linecache
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvloop

from bench.children import SubscriberProcess
from bench.report import log_dir, print_table, say, write_result
from bench.subscribers import raise_fd_limit
from event_service.server import EventServer, build_config
from event_service.settings import settings_from_env

WARMUP_CLIENTS = 20
FRAMES = 25
_ROOT = Path(__file__).resolve().parent.parent


def _site(filename: str) -> str:
    """A short name: the path inside site-packages, ``stdlib/...``, or the project path."""
    if "site-packages/" in filename:
        return filename.split("site-packages/")[-1]
    if "/lib/python3" in filename:
        return "stdlib/" + filename.split("/lib/python3")[-1].split("/", 1)[-1]
    return filename.split(f"{_ROOT}/")[-1]


def _subscribers(port: int, clients: int, duration_s: float, name: str) -> SubscriberProcess:
    url = f"ws://127.0.0.1:{port}/ws"
    return SubscriberProcess(url, clients, duration_s, log_dir("heap") / f"{name}.log").start()


async def wait_until(ready: Callable[[], bool], timeout_s: float, every_s: float = 0.1) -> None:
    """Poll ``ready`` until it holds or ``timeout_s`` passes (it watches other processes)."""
    deadline = time.monotonic() + timeout_s
    while not ready() and time.monotonic() < deadline:  # noqa: ASYNC110 - nothing to await on
        await asyncio.sleep(every_s)


async def measure(
    subscribers: int, fanout: str = "direct", read_handler: str = "fixed"
) -> dict[str, Any]:
    """Serve, snapshot empty, connect ``subscribers``, snapshot again; the growth."""
    env = {
        "READ_HANDLER": read_handler,
        "EVENT_RATE": "0",
        "PORT": "0",
        "LOG_LEVEL": "warning",
        "FANOUT": fanout,
    }
    config = build_config(settings_from_env(env))
    server = EventServer(config)
    serving = asyncio.create_task(server.serve(), name="service")
    clients = None
    try:
        await wait_until(lambda: server.started, timeout_s=30)
        port = server.servers[0].sockets[0].getsockname()[1]
        app: Any = config.app  # the FastAPI app build_config made
        hub = app.state.hub
        warmup = _subscribers(port, WARMUP_CLIENTS, 2.0, "warmup")
        await wait_until(lambda: not warmup.is_running(), timeout_s=30)
        warmup.stop()
        await asyncio.sleep(0.5)
        gc.collect()
        tracemalloc.start(FRAMES)
        empty = tracemalloc.take_snapshot()
        clients = _subscribers(port, subscribers, 120.0, "subscribers")
        await wait_until(lambda: len(hub) >= subscribers, timeout_s=90)
        connected = len(hub)
        await asyncio.sleep(1.0)
        gc.collect()
        loaded = tracemalloc.take_snapshot()
        tracemalloc.stop()
        tasks = len(asyncio.all_tasks())
    finally:
        if clients is not None:
            clients.stop()
        server.should_exit = True
        await serving
    return {
        "fanout": fanout,
        "read_handler": read_handler,
        **_growth(empty, loaded, connected, tasks),
    }


def _growth(
    empty: tracemalloc.Snapshot, loaded: tracemalloc.Snapshot, connected: int, tasks: int
) -> dict[str, Any]:
    by_line = loaded.compare_to(empty, "lineno")
    by_file = loaded.compare_to(empty, "filename")
    return {
        "subscribers": connected,
        "asyncio_tasks": tasks,
        "bytes_per_subscriber": sum(s.size_diff for s in by_line) / connected,
        "by_file": [
            {"file": _site(s.traceback[0].filename), "bytes": s.size_diff / connected}
            for s in by_file[:15]
        ],
        "by_line": [
            {
                "line": f"{_site(s.traceback[0].filename)}:{s.traceback[0].lineno}",
                "code": linecache.getline(s.traceback[0].filename, s.traceback[0].lineno).strip(),
                "bytes": s.size_diff / connected,
                "blocks": s.count_diff / connected,
            }
            for s in by_line[:25]
        ],
    }


def main(argv: list[str] | None = None) -> int:
    """Run once, print, write ``bench/results/heap.json``."""
    parser = argparse.ArgumentParser(prog="python -m bench.heap", description=__doc__)
    parser.add_argument("--subscribers", type=int, default=3000)
    parser.add_argument("--fanout", choices=("asgi", "direct"), default="direct")
    parser.add_argument("--read-handler", choices=("fixed", "missing"), default="fixed")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    raise_fd_limit(args.subscribers + 1024)
    say(
        f"heap: service in-process under tracemalloc, FANOUT={args.fanout}, "
        f"READ_HANDLER={args.read_handler}, "
        f"{args.subscribers} idle subscribers"
    )
    result = uvloop.run(measure(args.subscribers, args.fanout, args.read_handler))
    print_table(
        f"heap growth per idle subscriber, FANOUT={args.fanout}: "
        f"{result['bytes_per_subscriber']:.0f} B "
        f"({result['subscribers']} subscribers, {result['asyncio_tasks']} tasks), by file",
        ["file", "B per subscriber"],
        [[row["file"], row["bytes"]] for row in result["by_file"]],
    )
    print_table(
        "by line",
        ["line", "code", "B per subscriber", "blocks"],
        [[r["line"], r["code"][:60], r["bytes"], r["blocks"]] for r in result["by_line"]],
        left=2,
    )
    suffix = "" if args.read_handler == "fixed" else f"-{args.read_handler}"
    write_result(f"heap-{args.fanout}{suffix}", False, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
