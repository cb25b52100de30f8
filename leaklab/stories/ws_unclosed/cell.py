"""Running one ws-unclosed cell: an event service under a low fd limit, the leaky client, probes.

The service runs with the fixed read handler (the bug of this story is the client's), no
events, and the cell's fd limit and ``MAX_SESSIONS``. The client is a child process
(:mod:`.client`) that writes a line of counts a second to a file of the cell's logs.

Once a second, and once before the client starts (t = 0), the cell takes a sample:

- from outside the service (psutil, by pid): its open fds, threads and CPU, and its
  ESTABLISHED sockets on the service's exact address;
- ``/stats`` (sessions, tasks, refusals) and ``/debug/tasks`` (the task dump), each on an HTTP
  connection of its own kept open from the start. A connection already open still works when
  the fds run out, every new one does not: the dump keeps answering through the freeze, and
  ``/stats`` fails there because it opens ``/proc/net/tcp`` for each answer;
- what a newcomer sees, on new connections: a WebSocket handshake (``probe``: ``101``,
  ``http_503``, ``dropped``...) and ``GET /healthz``, each given ``PROBE_TIMEOUT_S``;
- the client's latest counts, and how many lines (and errors) the service has logged.

The client is stopped half a second after the sample at :func:`client_run_s` and the cell
goes on for the recovery. Both children are stopped in ``finally`` blocks, so an interrupted
run leaves no process or socket behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import psutil
from websockets.asyncio.client import connect
from websockets.exceptions import WebSocketException

from event_service.settings import Settings
from event_service.snapshot import ServiceSnapshot
from leaklab.children import ChildProcess, ServiceProcess
from leaklab.logdigest import count_errors, log_digest
from leaklab.stories.ws_unclosed.client import failure_kind
from leaklab.stories.ws_unclosed.matrix import Cell
from leaklab.story import CellRun, LabOptions, MutableSample, Sample
from leaklab.taskdump import quote_dump
from sockscope.schedule import every

SAMPLE_EVERY_S = 1.0
PROBE_TIMEOUT_S = 0.8
# The client's own limit, far above what the service can hold: the service runs out first.
CLIENT_FD_LIMIT = 4096
MIN_RECOVERY_S = 2.0
PROBE_OPTIONS: dict[str, Any] = {
    "proxy": None, "compression": None, "ping_interval": None, "open_timeout": PROBE_TIMEOUT_S,
    "close_timeout": PROBE_TIMEOUT_S,
}  # fmt: skip


def cell_duration_s(cell: Cell, options: LabOptions) -> float:
    """The cell's length: the run's duration, or less for a quick cell."""
    return min(options.duration_s, cell.max_duration_s or math.inf)


def client_run_s(duration_s: float) -> float:
    """When the client is stopped: half a second after a sample, leaving the last sixth of the
    cell (2 s at least) for the recovery."""
    return max(1.0, math.floor(duration_s - max(MIN_RECOVERY_S, duration_s / 6))) + 0.5


def service_settings(cell: Cell) -> Settings:
    """The event service of one cell: the fixed read handler, no events, the cell's cap."""
    return Settings(read_handler="fixed", event_rate=0.0, max_sessions=cell.session_cap, port=0)


def client_argv(cell: Cell, url: str, run_s: float, stats_path: Path) -> list[str]:
    """The client's command line; it stops by itself a little after the lab would stop it."""
    return [
        sys.executable, "-m", "leaklab.stories.ws_unclosed.client", url,
        "--client", cell.client, "--rate", f"{cell.rate_per_s:g}",
        "--duration", f"{run_s + 5:g}", "--stats-out", str(stats_path),
    ]  # fmt: skip


def http_failure_kind(exc: httpx.HTTPError) -> str:
    """Why an HTTP request got no answer, in the client's words (``dropped``, ``timeout``...)."""
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "dropped"  # closed before an answer
    if isinstance(exc, httpx.HTTPStatusError):
        return f"http_{exc.response.status_code}"
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, OSError):
        return failure_kind(cause)
    return "dropped" if isinstance(exc, httpx.ReadError) else type(exc).__name__


class Sampler:
    """Everything a cell reads once a second, with the connections it keeps for that."""

    def __init__(self, service: ServiceProcess, stats_path: Path) -> None:
        assert service.pid is not None and service.port is not None
        self.service = service
        self.stats_path = stats_path
        self._process = psutil.Process(service.pid)
        self._address = (service.settings.host, service.port)
        self._stats_http = httpx.AsyncClient(base_url=service.base_url, timeout=PROBE_TIMEOUT_S)
        self._dump_http = httpx.AsyncClient(base_url=service.base_url, timeout=PROBE_TIMEOUT_S)
        # A new connection for each health check, as a kubelet or a load balancer makes.
        self._health_http = httpx.AsyncClient(
            base_url=service.base_url, timeout=PROBE_TIMEOUT_S, headers={"Connection": "close"}
        )

    async def __aenter__(self) -> Sampler:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stats_http.aclose()
        await self._dump_http.aclose()
        await self._health_http.aclose()

    async def sample(self, t_s: float) -> MutableSample:
        """One sample at ``t_s`` seconds since the client started."""
        process, stats, dump, probe, healthz = await asyncio.gather(
            asyncio.to_thread(self._read_process),
            self._stats(),
            self._dump(),
            self._probe(),
            self._healthz(),
        )
        log = self.service.log_path.read_text(errors="replace")
        return {
            "t_s": round(t_s, 3),
            "wall_time": time.time(),
            **process,
            **stats,
            **dump,
            "probe": probe,
            "healthz": healthz,
            "client": self._client_line(),
            "log_lines": log.count("\n"),
            "log_errors": count_errors(log),
        }

    def _read_process(self) -> dict[str, Any]:
        try:
            with self._process.oneshot():
                connections = self._process.net_connections("tcp")
                return {
                    "fds": self._process.num_fds(),
                    "threads": self._process.num_threads(),
                    "cpu_percent": self._process.cpu_percent(),
                    "established": sum(
                        c.status == psutil.CONN_ESTABLISHED and tuple(c.laddr) == self._address
                        for c in connections
                    ),
                }
        except psutil.Error:
            return {"fds": None, "threads": None, "cpu_percent": None, "established": None}

    async def _stats(self) -> dict[str, Any]:
        try:
            stats: ServiceSnapshot = (
                (await self._stats_http.get("/stats")).raise_for_status().json()
            )
        except httpx.HTTPError as exc:
            return {"stats": http_failure_kind(exc), "sessions": None, "stats_tasks": None,
                    "sessions_refused": None}  # fmt: skip
        return {
            "stats": "ok",
            "sessions": stats["connections"],
            "stats_tasks": stats["asyncio_tasks"],
            "sessions_refused": stats["sessions_refused"],
        }

    async def _dump(self) -> dict[str, Any]:
        try:
            text = (await self._dump_http.get("/debug/tasks")).raise_for_status().text
        except httpx.HTTPError:
            return {"tasks": None}
        groups = quote_dump(text)
        total = groups[0].removeprefix("tasks: total ") if groups else ""
        return {"tasks": int(total) if total.isdigit() else None, "task_groups": groups}

    async def _probe(self) -> str:
        try:
            ws = await connect(self.service.ws_url, **PROBE_OPTIONS)
        except (OSError, WebSocketException) as exc:
            return failure_kind(exc)
        with contextlib.suppress(OSError, WebSocketException):
            await ws.close()
        return "101"

    async def _healthz(self) -> str:
        try:
            response = await self._health_http.get("/healthz")
        except httpx.HTTPError as exc:
            return http_failure_kind(exc)
        return str(response.status_code)

    def _client_line(self) -> dict[str, Any] | None:
        try:
            lines = self.stats_path.read_text().splitlines()
        except FileNotFoundError:
            return None
        for line in reversed(lines):
            with contextlib.suppress(ValueError):
                parsed: dict[str, Any] = json.loads(line)
                return parsed
        return None


async def run_cell(
    cell: Cell, options: LabOptions, logs: Path, on_sample: Callable[[Sample], None]
) -> CellRun:
    """Run one cell to its end; return its samples (one per second) and what it started."""
    duration_s = cell_duration_s(cell, options)
    run_s = client_run_s(duration_s)
    prefix = f"ws-unclosed_{cell.name}"
    stats_path = logs / f"{prefix}.client.jsonl"
    service = ServiceProcess(
        service_settings(cell), logs / f"{prefix}.service.log", fd_limit=cell.fd_limit
    )
    await asyncio.to_thread(service.start)
    service_pid = service.pid
    client = ChildProcess(
        client_argv(cell, service.ws_url, run_s, stats_path),
        {},
        logs / f"{prefix}.client.log",
        fd_limit=CLIENT_FD_LIMIT,
    )
    try:
        stats_path.unlink(missing_ok=True)
        async with Sampler(service, stats_path) as sampler:
            baseline = {**await sampler.sample(0.0), "client_running": False}
            on_sample(baseline)
            await asyncio.to_thread(client.start)
            client_pid = client.pid
            samples = [baseline, *await _sample_cell(sampler, client, run_s, duration_s, on_sample)]
        samples[-1]["log_digest"] = log_digest(service.log_path.read_text(errors="replace"))
        return {
            "samples": samples,
            "processes": {
                "service_pid": service_pid,
                "client_pid": client_pid,
                "service_env": service.env,
                "service_fd_limit": cell.fd_limit,
                "client_argv": client.argv[1:],
                "client_fd_limit": CLIENT_FD_LIMIT,
                "client_stopped_at_s": run_s,
            },
        }
    finally:
        await asyncio.to_thread(client.stop)
        await asyncio.to_thread(service.stop)


async def _sample_cell(
    sampler: Sampler,
    client: ChildProcess,
    run_s: float,
    duration_s: float,
    on_sample: Callable[[Sample], None],
) -> list[MutableSample]:
    """A sample a second from the client's start to ``duration_s``; the client is stopped at
    ``run_s``."""
    samples: list[MutableSample] = []
    loop = asyncio.get_running_loop()
    started = loop.time()
    stopped_at: float | None = None
    async with asyncio.TaskGroup() as tasks:
        stopper = tasks.create_task(_stop_at(client, started + run_s), name="lab-client-stop")
        async for _ in every(SAMPLE_EVERY_S):
            t_s = loop.time() - started
            if stopper.done():
                stopped_at = run_s
            sample = await sampler.sample(t_s)
            sample["client_running"] = stopped_at is None
            sample["client_stopped_at_s"] = stopped_at
            samples.append(sample)
            on_sample(sample)
            if t_s >= duration_s - SAMPLE_EVERY_S / 2:
                break
    return samples


async def _stop_at(client: ChildProcess, deadline: float) -> None:
    """Stop the client at ``deadline`` (loop time): its sockets are closed as it exits."""
    await asyncio.sleep(max(0.0, deadline - asyncio.get_running_loop().time()))
    await asyncio.to_thread(client.stop)
