"""A swarm past one process: worker processes under one parent, one live view, one summary.

The parent starts one ``python -m ping_client.worker`` per :class:`~ping_client.plan.WorkerPlan`
(each a :class:`~ping_client.swarm.Swarm` with its share of the clients, bound to its own
loopback source addresses) and owns them: each is stopped (SIGTERM: a clean close and a
summary), killed after a grace period if it does not end, and reaped, whether the run ends
by its duration, by :meth:`Fleet.stop` (SIGINT, SIGTERM), by an error, or because a worker
died. A worker that ends before the parent asked, or without a summary, fails the whole run
with :class:`~ping_client.errors.WorkerFailed`, which says which worker and how it ended.

Workers write one line of JSON a second on a pipe (a bounded channel: the kernel's pipe
buffer, and lines of at most :data:`LINE_LIMIT_BYTES`); the parent keeps each worker's
latest sample only. Once a second the parent merges them (:mod:`ping_client.merge`),
checks the host's TCP memory (a tripped guard stops every worker's pings), and reads the
kernel itself, for all workers at once and off its event loop: one sock_diag dump of the
sockets connected to the server's exact address and port (filtered in the kernel), counted
by their exact source address (the plan gives each worker addresses of its own, so these
are the swarm's sockets), and one dump of the server's sockets. Workers read no kernel
figures at all.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import json
import signal
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

from ping_client.connection import CLOSE_TIMEOUT_S
from ping_client.errors import WorkerFailed
from ping_client.merge import merge_samples, merge_summaries
from ping_client.plan import SwarmPlan, WorkerPlan
from ping_client.safety import MemoryGuard, is_loopback
from ping_client.server_stats import ServerStats, stats_url
from ping_client.stats import ReadCost, timed_read
from ping_client.swarm import SwarmConfig
from ping_client.worker import STOP_SENDING, WorkerSpec, spec_to_json
from sockscope.diag import Endpoint, SocketTable, ipv4_key
from sockscope.kernel import read_sockstat
from sockscope.netlink import FAMILIES, read_both_ends, read_sockets
from sockscope.schedule import every
from sockscope.tcp import TCP_STATES

__all__ = ["LINE_LIMIT_BYTES", "STOP_GRACE_S", "WORKER_BACKSTOP_S", "Fleet", "worker_config"]

LINE_LIMIT_BYTES = 1 << 20
STDERR_TAIL_LINES = 20
# A stopped worker closes its connections (each gets CLOSE_TIMEOUT_S) and writes its summary.
STOP_GRACE_S = CLOSE_TIMEOUT_S + 13.0
# Workers stop by themselves this long after the parent's duration, should it never ask.
WORKER_BACKSTOP_S = 30.0
_STATE_CODES = {name: code for code, name in TCP_STATES.items()}


def worker_config(config: SwarmConfig, worker: WorkerPlan) -> SwarmConfig:
    """One worker's swarm: its share of the clients, the ramp and the churn batches."""
    share = worker.clients / config.clients
    batch = round(config.churn_batch * share)
    return dataclasses.replace(
        config,
        clients=worker.clients,
        ramp_per_s=config.ramp_per_s * share,
        churn_batch=max(1, batch),
        churn_every_s=config.churn_every_s if batch >= 1 else None,
        duration_s=config.duration_s + WORKER_BACKSTOP_S,
        processes=1,
    )


@dataclasses.dataclass
class _Worker:
    plan: WorkerPlan
    process: asyncio.subprocess.Process
    started_at: float
    sample: dict[str, Any] | None = None
    summary: dict[str, Any] | None = None
    ended_after_s: float | None = None
    unreadable: str | None = None
    stderr_tail: collections.deque[str] = dataclasses.field(
        default_factory=lambda: collections.deque(maxlen=STDERR_TAIL_LINES)
    )

    def describe_end(self) -> str:
        """``worker 1 (pid 123) was killed by SIGKILL after 3.2 s: <last lines>``."""
        code = self.process.returncode
        if code is None:
            how = "did not end"
        elif code < 0:
            how = f"was killed by {signal.Signals(-code).name}"
        else:
            how = f"exited with code {code}"
        if code == 0 and self.summary is None:
            how += " without a summary"
        after = "" if self.ended_after_s is None else f" after {self.ended_after_s:.1f} s"
        words = f"worker {self.plan.index} (pid {self.process.pid}) {how}{after}"
        if self.unreadable:
            words += f"; {self.unreadable}"
        tail = " | ".join(line for line in self.stderr_tail if line)
        return f"{words}: {tail}" if tail else words


class Fleet:
    """Runs one swarm over the worker processes of ``plan``; see the module docstring."""

    def __init__(self, config: SwarmConfig, plan: SwarmPlan) -> None:
        self.config = config
        self._uri = config.validate()
        self.plan = plan
        self._guard = MemoryGuard(config.tcp_mem_guard)
        self._stop = asyncio.Event()
        self._workers: list[_Worker] = []
        self._failed: list[_Worker] = []
        self._stopping = False
        self._started = time.monotonic()
        self._is_local = is_loopback(self._uri.host)
        self._server_end: Endpoint = (self._uri.host, self._uri.port)
        # Bound clients are IPv4 sockets; an unbound client may be either family.
        self._families = (socket.AF_INET,) if plan.source_addresses else FAMILIES
        self._server_stats: ServerStats | None = None
        self._server_figures: dict[str, int] = {}
        self._kernel_read = ReadCost()
        self._connected_peak = 0
        self._peaks: dict[str, int | None] = {
            "server_recv_q_bytes": None,
            "client_send_q_bytes": None,
        }

    @property
    def worker_pids(self) -> list[int]:
        """The process ids of the workers started so far."""
        return [worker.process.pid for worker in self._workers]

    def stop(self) -> None:
        """End the run early; the workers close their connections and report."""
        self._stop.set()

    async def run(
        self, on_sample: Callable[[dict[str, Any]], None] | None = None
    ) -> dict[str, Any]:
        """Run until ``duration_s``, :meth:`stop` or a worker's failure; return the summary."""
        self._started = time.monotonic()
        self._guard.check()
        self._server_end = await self._resolve_server()
        if not self._is_local:
            self._server_stats = ServerStats(stats_url(self._uri))
        try:
            await self._start_workers()
            if self._guard.tripped:
                self._tell_workers(STOP_SENDING)
            async with asyncio.TaskGroup() as tasks:
                for worker in self._workers:
                    tasks.create_task(self._read_reports(worker), name="fleet-reports")
                    tasks.create_task(self._read_stderr(worker), name="fleet-stderr")
                watcher = tasks.create_task(self._watch(on_sample), name="fleet-watch")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.config.duration_s)
                watcher.cancel()
                await self._stop_workers()
        finally:
            await self._reap()
            if self._server_stats is not None:
                await self._server_stats.aclose()
        if self._failed:
            raise WorkerFailed("; ".join(worker.describe_end() for worker in self._failed))
        return self.summary()

    def summary(self) -> dict[str, Any]:
        """The merged summary: a one-process summary's fields, and the workers'."""
        summaries = [w.summary for w in self._workers if w.summary is not None]
        merged = merge_summaries(summaries)
        merged["clients"] = self.config.clients
        merged["connected_peak"] = min(merged["connected_peak"], self._peak_or_sum(summaries))
        return {
            "elapsed_s": round(time.monotonic() - self._started, 3),
            **merged,
            "config": dataclasses.asdict(self.config),
            "tcp_mem_guard_tripped": self._guard.message,
            "tcp_mem_guard_threshold_from": self._guard.threshold_from,
            "server_figures_from": "kernel" if self._is_local else self._server_stats_url(),
            **{f"{name}_peak": value for name, value in self._peaks.items()},
            "kernel_read_ms": self._kernel_read.summary(),
            "processes": self.plan.processes,
            "source_addresses": list(self.plan.source_addresses),
            "plan_note": self.plan.note,
            "workers": [self._worker_figures(worker) for worker in self._workers],
        }  # fmt: skip

    # Workers

    async def _start_workers(self) -> None:
        for plan in self.plan.workers:
            spec = WorkerSpec(plan.index, worker_config(self.config, plan), plan.source_addresses)
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "ping_client.worker", spec_to_json(spec),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, limit=LINE_LIMIT_BYTES,
            )  # fmt: skip
            self._workers.append(_Worker(plan, process, time.monotonic()))

    async def _read_reports(self, worker: _Worker) -> None:
        """Keep the worker's latest sample and its summary; note it if it ends unasked."""
        stdout = worker.process.stdout
        assert stdout is not None
        try:
            while line := await stdout.readline():
                self._take_report(worker, line)
        except (ValueError, KeyError) as exc:  # a line past the limit, or not ours
            worker.unreadable = f"unreadable report: {exc}"
            worker.process.kill()
        await worker.process.wait()
        worker.ended_after_s = round(time.monotonic() - worker.started_at, 1)
        if worker.unreadable or not self._stopping or worker.summary is None:
            self._failed.append(worker)
            self._stop.set()
        elif worker.process.returncode != 0:
            self._failed.append(worker)

    def _take_report(self, worker: _Worker, line: bytes) -> None:
        report = json.loads(line)
        kind = report.pop("kind")
        if kind == "sample":
            worker.sample = report
        elif kind == "summary":
            worker.summary = report
        else:
            raise KeyError(f"report kind {kind!r}")

    async def _read_stderr(self, worker: _Worker) -> None:
        stderr = worker.process.stderr
        assert stderr is not None
        with contextlib.suppress(ValueError):  # an overlong line ends the tail, not the run
            while line := await stderr.readline():
                worker.stderr_tail.append(line.decode(errors="replace").rstrip())

    async def _stop_workers(self) -> None:
        """SIGTERM every worker still running; kill those that do not end in time."""
        self._stopping = True
        running = [w for w in self._workers if w.process.returncode is None]
        for worker in running:
            with contextlib.suppress(ProcessLookupError):
                worker.process.terminate()
        if running:
            await asyncio.wait(
                [asyncio.ensure_future(w.process.wait()) for w in running], timeout=STOP_GRACE_S
            )
        for worker in running:
            if worker.process.returncode is None:
                worker.unreadable = f"no summary within {STOP_GRACE_S:.0f} s of SIGTERM"
                with contextlib.suppress(ProcessLookupError):
                    worker.process.kill()

    async def _reap(self) -> None:
        """Kill and wait for every worker that is still there (also on cancellation)."""
        self._stopping = True
        for worker in self._workers:
            if worker.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    worker.process.kill()
            if worker.process.stdin is not None:
                worker.process.stdin.close()
        for worker in self._workers:
            await worker.process.wait()

    def _tell_workers(self, command: bytes) -> None:
        for worker in self._workers:
            stdin = worker.process.stdin
            if stdin is not None and not stdin.is_closing() and worker.process.returncode is None:
                stdin.write(command + b"\n")

    # Samples

    async def _watch(self, on_sample: Callable[[dict[str, Any]], None] | None) -> None:
        async for _ in every(1.0):
            if self._guard.check():
                self._tell_workers(STOP_SENDING)
            sample = await self._sample()
            self._connected_peak = max(self._connected_peak, sample["connected"])
            if on_sample is not None:
                on_sample(sample)

    async def _sample(self) -> dict[str, Any]:
        samples = [w.sample for w in self._workers if w.sample is not None]
        merged = merge_samples(samples)
        merged["t_s"] = round(time.monotonic() - self._started, 3)
        merged["sending"] = merged["sending"] and not self._guard.tripped
        figures, read_s, cpu_s = await asyncio.to_thread(timed_read, self._read_kernel)
        self._kernel_read.add(read_s, cpu_s)
        merged.update(figures)
        merged["kernel_read_ms"] = round(read_s * 1000, 3)
        merged["kernel_read_cpu_ms"] = round(cpu_s * 1000, 3)
        if self._server_stats is not None:
            self._server_figures = await self._server_stats.read() or {}
            merged.update(self._server_figures)
        merged["kernel_tcp_mem_bytes"] = read_sockstat()["mem_bytes"]
        merged["processes"] = self.plan.processes
        merged["workers_running"] = sum(w.process.returncode is None for w in self._workers)
        for name, peak in self._peaks.items():
            if name in merged:
                self._peaks[name] = max(peak or 0, merged[name])
        return merged

    def _read_kernel(self) -> dict[str, Any]:
        """The swarm's client sockets by exact source address, and the server's (blocking).

        The sockets connected to the server's exact address and port, counted by their exact
        source address (the workers' own, from the plan); with a server in this namespace, its
        sockets (local end that address) come in the same dump.
        """
        sources = self.plan.source_addresses
        server_end = self._server_end
        server: SocketTable | None = None
        if self._is_local and server_end[0] is not None and server_end[1] is not None:
            server, clients = read_both_ends((server_end[0], server_end[1]))
        else:
            clients = read_sockets(remote=server_end, skmem=False, families=self._families)
        established = _STATE_CODES["ESTABLISHED"]
        if sources:
            wanted = {ipv4_key(source): source for source in sources}
            by_source = dict.fromkeys(sources, 0)
            send_q = 0
            for key, state, queued in zip(clients.column("local_ipv4"), clients.column("state"),
                                          clients.column("send_q"), strict=True):  # fmt: skip
                source = wanted.get(key)
                if source is not None:
                    by_source[source] += state == established
                    send_q += queued
        else:  # one source address: every socket of this host connected to the server
            by_source = {"*": clients.column("state").count(established)}
            send_q = sum(clients.column("send_q"))
        figures: dict[str, Any] = {
            "client_send_q_bytes": send_q,
            "client_established": sum(by_source.values()),
            "client_established_by_source": by_source,
        }
        if server is not None:
            server_recv_q = server.column("recv_q")
            figures["server_recv_q_bytes"] = sum(server_recv_q)
            figures["server_recv_q_max_bytes"] = max(server_recv_q, default=0)
        return figures

    # Helpers

    async def _resolve_server(self) -> Endpoint:
        """The server's address as the workers reach it (IPv4 for a loopback name)."""
        family = socket.AF_INET if self.plan.source_addresses else socket.AF_UNSPEC
        infos = await asyncio.get_running_loop().getaddrinfo(
            self._uri.host, self._uri.port, family=family, type=socket.SOCK_STREAM
        )
        address = str(infos[0][4][0])
        return (address, self._uri.port)

    def _peak_or_sum(self, summaries: list[dict[str, Any]]) -> int:
        # The sampled peak of the sum, when there were samples; the workers' sum otherwise.
        if self._connected_peak:
            return max(self._connected_peak, max((s["connected_peak"] for s in summaries),
                                                 default=0))  # fmt: skip
        return sum(s["connected_peak"] for s in summaries)

    def _server_stats_url(self) -> str | None:
        return None if self._server_stats is None else self._server_stats.url

    @staticmethod
    def _worker_figures(worker: _Worker) -> dict[str, Any]:
        summary = worker.summary or {}
        return {
            "index": worker.plan.index,
            "pid": worker.process.pid,
            "clients": worker.plan.clients,
            "source_addresses": list(worker.plan.source_addresses),
            "exit_code": worker.process.returncode,
            "connected_peak": summary.get("connected_peak"),
            "opened": summary.get("opened"),
        }
