"""Running one cell of the grpc-unclosed story: a soda server, a client, a sample a second.

The server runs under a low fd limit (:data:`SERVER_FD_LIMIT`) so a leak reaches it in
seconds; it binds port 0 and reports the port on a pipe made for that purpose. After the
client's load, a leaking client is stopped and the server is watched a little longer, to show
that its connections and fds come back (restarting either side "fixed" the original). Both
processes are stopped in ``finally`` blocks, so an error or Ctrl-C leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from leaklab.children import ChildProcess
from leaklab.errors import LaunchError
from leaklab.stories.grpc_unclosed.matrix import LEAK, Cell
from leaklab.story import CellRun, LabOptions, MutableSample, Sample
from sockscope.schedule import every

__all__ = ["CellSampler", "SodaServer", "StatsReader", "run_cell"]

SAMPLE_EVERY_S = 1.0
HOST = "127.0.0.1"
SERVER_FD_LIMIT = 256
CLIENT_FD_LIMIT = 4096  # above the server's: the server's limit is the one the story reaches
SERVER_WORKERS = 8
RATE_PER_S = 100.0  # the controller's loops per second, at most
DEADLINE_S = 2.0
MAX_HELD = 1000  # the lab's bound on the channels a leaking client holds
RECOVERY_S = 2.0  # seconds the server is watched after a leaking client exits
READY_TIMEOUT_S = 30.0
SERVER_MODULE = "leaklab.stories.grpc_unclosed.server"
CLIENT_MODULE = "leaklab.stories.grpc_unclosed.client"


class SodaServer(ChildProcess):
    """``python -m leaklab.stories.grpc_unclosed.server`` on a free port it reports on a pipe."""

    def __init__(
        self,
        log_path: Path,
        *,
        max_connection_idle_ms: int = 0,
        fd_limit: int | None = SERVER_FD_LIMIT,
        host: str = HOST,
    ) -> None:
        super().__init__([sys.executable, "-m", SERVER_MODULE], {}, log_path, fd_limit=fd_limit)
        self.max_connection_idle_ms = max_connection_idle_ms
        self.host = host
        self.port: int | None = None

    def start(self, timeout_s: float = READY_TIMEOUT_S) -> SodaServer:
        """Start the server and wait for its ``{"port": N}`` line (or its exit)."""
        read_fd, write_fd = os.pipe()
        self.argv = [
            sys.executable, "-m", SERVER_MODULE,
            "--host", self.host, "--workers", str(SERVER_WORKERS),
            "--max-connection-idle-ms", str(self.max_connection_idle_ms),
            "--ready-fd", str(write_fd),
        ]  # fmt: skip
        self._pass_fds = (write_fd,)
        try:
            super().start()
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)  # the child has it; EOF on our end means the child is gone
        try:
            with os.fdopen(read_fd, "rb") as ready:
                self.port = int(json.loads(_read_line(ready, timeout_s))["port"])
        except (ValueError, KeyError, TypeError) as exc:
            self.stop()
            raise LaunchError(f"soda server did not report its port:\n{self.log_tail()}") from exc
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def target(self) -> str:
        """``HOST:PORT`` for a client."""
        return f"{self.host}:{self.port}"


def _read_line(stream: Any, timeout_s: float) -> bytes:
    """One line from a pipe, or ``b""`` on EOF; :class:`LaunchError` after ``timeout_s``."""
    readable, _, _ = select.select([stream], [], [], timeout_s)
    if not readable:
        raise LaunchError(f"no readiness line within {timeout_s:g} s")
    line: bytes = stream.readline()
    return line


class StatsReader:
    """The last complete JSON line of the client's ``--stats`` file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._last: dict[str, Any] | None = None

    def read(self) -> dict[str, Any] | None:
        """The newest counts the client wrote (None before its first line)."""
        try:
            with self.path.open("rb") as stats:
                stats.seek(self._offset)
                data = stats.read()
        except FileNotFoundError:
            return self._last
        end = data.rfind(b"\n")
        if end >= 0:
            self._offset += end + 1
            lines = data[:end].splitlines()
            if lines:
                self._last = json.loads(lines[-1])
        return self._last


def client_argv(cell: Cell, target: str, stats: Path) -> list[str]:
    """The client's command line for one cell."""
    return [
        sys.executable, "-m", CLIENT_MODULE,
        "--target", target, "--client", cell.client, "--pool", cell.pool,
        "--rate", str(RATE_PER_S), "--deadline-s", str(DEADLINE_S),
        "--connect-timeout-ms", str(cell.connect_timeout_ms), "--max-held", str(MAX_HELD),
        "--stats", str(stats),
    ]  # fmt: skip


def _process_figures(
    process: psutil.Process, *, server_address: tuple[str, int], own: bool
) -> dict[str, int] | None:
    """fds, threads, RSS and ESTABLISHED connections of one process (its own sockets only).

    ``own``: count sockets whose local address is ``server_address`` (the server's side);
    otherwise those whose remote address is (the client's side).
    """
    try:
        with process.oneshot():
            connections = process.net_connections("tcp")
            figures = {
                "fds": process.num_fds(),
                "threads": process.num_threads(),
                "rss_bytes": process.memory_info().rss,
            }
    except psutil.Error:
        return None
    figures["established"] = sum(
        1
        for c in connections
        if c.status == psutil.CONN_ESTABLISHED
        and ipv4_address(c.laddr if own else c.raddr) == server_address
    )
    return figures


def ipv4_address(address: Any) -> tuple[str, int] | None:
    """``(ip, port)`` of a psutil address, an IPv4-mapped IPv6 one as plain IPv4.

    grpc listens on an AF_INET6 socket even for 127.0.0.1, so the kernel names its
    connections ``::ffff:127.0.0.1``: the same address.
    """
    if not address:
        return None
    ip, port = address[0], address[1]
    return (ip.removeprefix("::ffff:"), int(port))


def take_sample(
    server: psutil.Process,
    client: psutil.Process | None,
    server_address: tuple[str, int],
    stats: StatsReader,
    t_s: float,
    start_wall: float,
) -> MutableSample:
    """One second's figures of both processes and the client's counts."""
    counts = stats.read()
    first_error = None
    if counts and counts.get("first_error"):
        error = counts["first_error"]
        first_error = {
            "code": error["code"],
            "details": error["details"],
            "at_s": round(error["at_unix"] - start_wall, 2),
        }
    calls = None
    if counts:
        calls = {
            key: counts[key]
            for key in ("loops", "calls_ok", "errors", "held_channels", "open_channels", "capped")
        }
    return {
        "t_s": round(t_s, 2),
        "wall_time": time.time(),
        "server": _process_figures(server, server_address=server_address, own=True),
        "client": (
            _process_figures(client, server_address=server_address, own=False) if client else None
        ),
        "calls": calls,
        "first_error": first_error,
    }


async def run_cell(
    cell: Cell, options: LabOptions, logs: Path, on_sample: Callable[[Sample], None]
) -> CellRun:
    """Run one cell to its end; return its samples (one per second) and what it started."""
    # A quick cell runs its own few seconds, or the run's duration if that is shorter.
    load_s = min(cell.load_s or options.duration_s, options.duration_s)
    recovery_s = RECOVERY_S if cell.client == LEAK else 0.0
    server = SodaServer(
        logs / f"{cell.name}.server.log",
        max_connection_idle_ms=cell.max_connection_idle_ms,
        fd_limit=SERVER_FD_LIMIT,
    )
    stats_path = logs / f"{cell.name}.client-stats.jsonl"
    stats_path.unlink(missing_ok=True)
    await asyncio.to_thread(server.start)
    client: ChildProcess | None = None
    try:
        assert server.port is not None
        client = ChildProcess(
            client_argv(cell, server.target, stats_path),
            {},
            logs / f"{cell.name}.client.log",
            fd_limit=CLIENT_FD_LIMIT,
        )
        await asyncio.to_thread(client.start)
        sampler = CellSampler(server, client, StatsReader(stats_path), on_sample)
        samples = await sampler.run(load_s, recovery_s)
        return {
            "samples": samples,
            "processes": {
                "server_argv": server.argv[1:],
                "server_pid": sampler.server_pid,
                "server_fd_limit": sampler.fd_limit,
                "client_argv": client.argv[1:],
                "client_pid": sampler.client_pid,
                "client_fd_limit": CLIENT_FD_LIMIT,
                "load_s": load_s,
                "recovery_s": recovery_s,
            },
        }
    finally:
        if client is not None:
            await asyncio.to_thread(client.stop)
        await asyncio.to_thread(server.stop)


class CellSampler:
    """Samples a cell's server and client once a second: the load, then the recovery."""

    def __init__(
        self,
        server: SodaServer,
        client: ChildProcess,
        stats: StatsReader,
        on_sample: Callable[[Sample], None],
    ) -> None:
        assert server.pid is not None and server.port is not None and client.pid is not None
        self.server_pid, self.client_pid = server.pid, client.pid
        try:
            self._server = psutil.Process(server.pid)
            self._client: psutil.Process | None = psutil.Process(client.pid)
            self.fd_limit: int = self._server.rlimit(psutil.RLIMIT_NOFILE)[
                0
            ]  # as the kernel has it
        except psutil.Error as exc:
            raise LaunchError(f"a child exited at once: {exc}") from exc
        self._client_process = client
        self._address = (server.host, server.port)
        self._stats = stats
        self._on_sample = on_sample
        self.samples: list[MutableSample] = []
        self._start = self._start_wall = 0.0  # set when the load starts

    async def run(self, load_s: float, recovery_s: float) -> list[MutableSample]:
        """Sample for ``load_s``; stop the client; sample ``recovery_s`` more (if > 0)."""
        loop = asyncio.get_running_loop()
        self._start, self._start_wall = loop.time(), time.time()
        async for _ in every(SAMPLE_EVERY_S):
            await self._sample("load")
            if self._now() >= load_s - 0.1:
                break
        await asyncio.to_thread(self._client_process.stop)  # does the server recover?
        exited_at, self._client = self._now(), None
        if recovery_s > 0:
            await self._sample("recovery", exited_at)
            async for _ in every(SAMPLE_EVERY_S):
                if self._now() >= load_s + recovery_s - 0.1:
                    break
                await self._sample("recovery", exited_at)
        return self.samples

    def _now(self) -> float:
        return asyncio.get_running_loop().time() - self._start

    async def _sample(self, phase: str, exited_at: float | None = None) -> None:
        t_s = self._now()
        sample = await asyncio.to_thread(
            take_sample,
            self._server, self._client, self._address, self._stats, t_s, self._start_wall,
        )  # fmt: skip
        sample["fd_limit"] = self.fd_limit
        sample["phase"] = phase
        if exited_at is not None:
            sample["since_client_exit_s"] = round(max(0.0, t_s - exited_at), 2)
        self.samples.append(sample)
        self._on_sample(sample)
