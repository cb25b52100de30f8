"""The swarm: many WebSocket clients that send upstream pings and read pushed events.

Three owned tasks do all the work, whatever the number of clients: a connector that ramps
connections up at ``ramp_per_s``, a ticker that sends each client's ping once per
``interval_s`` (clients are spread over 50 ms slots), and a watcher that once a second
checks the host's TCP memory, runs client keepalive, and reports a sample. The run stops by
itself after ``duration_s``, and every connection is closed before :meth:`Swarm.run` returns.

With churn (``churn_every_s``) the connector goes on opening a batch of new clients at every
period, and with ``client_lifetime_s`` the ticker closes each client normally once its
lifetime is over (see :mod:`ping_client.churn`): clients come and go, as in production.

A sample's socket queues come from netlink sock_diag (:mod:`sockscope.netlink`), filtered in
the kernel: the swarm's own client sockets (by their inodes, which each connection notes when
it connects: no ``fstat`` per fd at every sample; whatever their source address) and the
server's sockets (by the exact address and port the clients are connected
to), never by port number alone. Every sample reads them fresh, in a thread (the netlink
``recv`` releases the GIL), and the read's own cost is part of the sample
(``kernel_read_ms`` and ``kernel_read_cpu_ms``, the reading thread's CPU time) and of the
summary. Host TCP memory (``/proc/net/sockstat``, a few
lines) is read fresh for every sample too.

As a worker of a multi-process swarm (:mod:`ping_client.fleet`) a swarm binds its clients to
the source addresses it is given and reads no kernel figures and guards no memory: the
parent does both, once for all workers.

The server's sockets are visible there only when the server runs in the swarm's network
namespace, which a loopback target implies. For any other target (another container, another
host) the server's queue figures come from its own ``/stats`` instead, once a sample.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import random
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

from websockets.exceptions import InvalidHandshake, InvalidURI
from websockets.uri import WebSocketURI, parse_uri

from ping_client.churn import EVENT_TYPE_RE, Departures, arrival_offsets, subscription_uri
from ping_client.connection import CLOSE_TIMEOUT_S, PingConnection
from ping_client.errors import InvalidConfig
from ping_client.frames import PingFramer
from ping_client.safety import MemoryGuard, check_target, is_loopback
from ping_client.server_stats import ServerStats, stats_url
from ping_client.stats import ReadCost, SwarmStats, summarize, timed_read
from sockscope.diag import socket_totals
from sockscope.kernel import read_sockstat
from sockscope.netlink import read_both_ends, read_sockets
from sockscope.schedule import every

__all__ = [
    "IP_BIND_ADDRESS_NO_PORT",
    "LATENCY_EXPORT",
    "MAX_CONNECTING",
    "MAX_DURATION_S",
    "PAYLOADS",
    "PING_KINDS",
    "SUMMARY_LATENCY_EXPORT",
    "TICK_S",
    "Swarm",
    "SwarmConfig",
]

TICK_S = 0.05
MAX_CONNECTING = 200
MAX_DURATION_S = 24 * 3600
PAYLOADS = ("random", "text")
PING_KINDS = ("message", "control")
# Bind to an address but leave the port to connect(), which picks one unique for the whole
# (source, destination) pair rather than for the source address alone (linux/in.h).
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
MIN_CHURN_EVERY_S = 0.1
# Latencies a worker passes on to its parent: per sample, and in its summary.
LATENCY_EXPORT = 500
SUMMARY_LATENCY_EXPORT = 5000
MAX_CHURN_BATCH = 10_000

logger = logging.getLogger("ping_client")


@dataclasses.dataclass(frozen=True)
class SwarmConfig:
    """What a swarm does; validated by :meth:`validate`."""

    url: str = "ws://127.0.0.1:8000/ws"
    clients: int = 10
    ramp_per_s: float = 100.0
    interval_s: float = 1.0
    size_bytes: int = 1024
    payload: str = "random"
    ping_kind: str = "message"
    compression: bool = False
    client_keepalive_s: float | None = None
    duration_s: float = 30.0
    tcp_mem_guard: float = 0.8
    connect_timeout_s: float = 10.0
    allow_remote: bool = False
    # Churn (off by default: ``clients`` connect once and stay): ``churn_batch`` new clients
    # every ``churn_every_s``; each client leaves with a normal close after
    # ``client_lifetime_s`` (None: stays to the end).
    churn_every_s: float | None = None
    churn_batch: int = 20
    client_lifetime_s: float | None = None
    # Event types to subscribe to (``?events=a,b``); empty: every type.
    subscribe: tuple[str, ...] = ()
    # Worker processes (None: as few as the fd limit allows; 1: this process, no worker).
    # Read by the command line and :mod:`ping_client.fleet`; a Swarm is always one process.
    processes: int | None = None

    def validate(self) -> WebSocketURI:
        """Check every field; return the parsed URL. Raises ValueError with a clear message."""
        try:
            uri = parse_uri(self.url)
        except InvalidURI as exc:
            raise InvalidConfig(f"--url: {exc}") from None
        if uri.secure:
            raise InvalidConfig("--url: wss:// is not supported; the lab runs on plain loopback")
        check_target(uri.host, allow_remote=self.allow_remote)
        _check(self.clients >= 1, "--clients must be at least 1")
        _check(self.ramp_per_s > 0, "--ramp must be > 0 connections per second")
        _check(self.interval_s >= TICK_S, f"--interval must be at least {TICK_S} s")
        _check(1 <= self.size_bytes <= 1 << 20, "--size must be from 1 to 1048576 bytes")
        _check(self.payload in PAYLOADS, f"--payload must be one of {', '.join(PAYLOADS)}")
        _check(self.ping_kind in PING_KINDS, f"--ping-kind must be one of {', '.join(PING_KINDS)}")
        _check(
            0 < self.duration_s <= MAX_DURATION_S, f"--duration must be in (0, {MAX_DURATION_S}]"
        )
        _check(0 < self.tcp_mem_guard <= 1, "--tcp-mem-guard must be in (0, 1]")
        _check(self.connect_timeout_s > 0, "connect timeout must be > 0 seconds")
        _check(
            self.client_keepalive_s is None or self.client_keepalive_s > 0,
            "--client-keepalive must be > 0 seconds or off",
        )
        self._validate_churn(uri)
        return subscription_uri(uri, self.subscribe)

    def _validate_churn(self, uri: WebSocketURI) -> None:
        _check(
            self.churn_every_s is None or MIN_CHURN_EVERY_S <= self.churn_every_s <= MAX_DURATION_S,
            f"--churn-every must be from {MIN_CHURN_EVERY_S} to {MAX_DURATION_S} seconds, or off",
        )
        _check(
            1 <= self.churn_batch <= MAX_CHURN_BATCH,
            f"--churn-batch must be from 1 to {MAX_CHURN_BATCH} clients",
        )
        _check(
            self.client_lifetime_s is None or self.client_lifetime_s > 0,
            "--lifetime must be > 0 seconds or off",
        )
        for event_type in self.subscribe:
            _check(
                EVENT_TYPE_RE.match(event_type) is not None,
                f"--subscribe: invalid event type {event_type[:64]!r} "
                "(1-64 letters, digits, _ . : -)",
            )
        _check(
            not (self.subscribe and "events=" in (uri.query or "")),
            "--subscribe: the --url already names events=; give the types in one place",
        )


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise InvalidConfig(message)


class Swarm:
    """Runs one swarm against one service; see the module docstring."""

    def __init__(
        self,
        config: SwarmConfig,
        *,
        source_addresses: Sequence[str] = (),
        is_worker: bool = False,
    ) -> None:
        self.config = config
        self._uri = config.validate()
        self.stats = SwarmStats(clients=config.clients)
        self._guard = MemoryGuard(config.tcp_mem_guard)
        self._sources = tuple(source_addresses)
        self._source_turn = 0
        # A worker leaves the kernel figures and the memory guard to its parent.
        self._is_worker = is_worker
        self._kernel_read = ReadCost()
        self._connections: list[PingConnection] = []
        self._departures: Departures[PingConnection] | None = (
            None if config.client_lifetime_s is None else Departures(config.client_lifetime_s)
        )
        self._sending = True
        self.is_closing = False  # the run is over and its connections are being closed
        self._stop = asyncio.Event()
        self._started = time.monotonic()
        self._connected_at_end = 0
        self._is_local = is_loopback(self._uri.host)
        self._server_stats: ServerStats | None = None
        self._server_figures: dict[str, int] = {}
        self._server_stats_failed = False
        self._peaks: dict[str, int | None] = {
            "server_recv_q_bytes": None,
            "client_send_q_bytes": None,
        }
        self._queue_figures: dict[str, int] = {}
        self._read_ms: float | None = None
        self._read_cpu_ms: float | None = None
        text_pad = b"ping " * (config.size_bytes // 5 + 1)
        self._text_payload = text_pad[: config.size_bytes]

    @property
    def guard_message(self) -> str | None:
        """Why the memory guard stopped the pings, once it has."""
        return self._guard.message

    @property
    def guard_threshold_from(self) -> str | None:
        """Where the memory guard's threshold comes from."""
        return self._guard.threshold_from

    def stop(self) -> None:
        """End the run early (the connections are still closed properly)."""
        self._stop.set()

    def stop_sending(self) -> None:
        """Send no more pings (the parent's memory guard tripped); connections stay open."""
        self._sending = False

    async def run(
        self, on_sample: Callable[[dict[str, Any]], None] | None = None
    ) -> dict[str, Any]:
        """Run until ``duration_s`` or :meth:`stop`; return the summary."""
        self._started = time.monotonic()
        self._guard_memory()
        if not self._is_local and not self._is_worker:  # a worker's parent asks
            self._server_stats = ServerStats(stats_url(self._uri))
        try:
            async with asyncio.TaskGroup() as tasks:
                workers = [
                    tasks.create_task(self._connect_all(), name="swarm-connect"),
                    tasks.create_task(self._send_pings(), name="swarm-ping"),
                    tasks.create_task(self._watch(on_sample), name="swarm-watch"),
                ]
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.config.duration_s)
                for worker in workers:
                    worker.cancel()
        finally:
            self._connected_at_end = self.stats.connected
            await self._close_all()
            if self._server_stats is not None:
                await self._server_stats.aclose()
        return self.summary()

    def summary(self) -> dict[str, Any]:
        """The run's summary as JSON-ready data."""
        return summarize(
            self.stats,
            elapsed_s=time.monotonic() - self._started,
            extra={
                "config": dataclasses.asdict(self.config),
                "connected_at_end": self._connected_at_end,
                "tcp_mem_guard_tripped": self.guard_message,
                "tcp_mem_guard_threshold_from": self.guard_threshold_from,
                "server_figures_from": self._server_figures_from(),
                **{f"{name}_peak": value for name, value in self._peaks.items()},
                "kernel_read_ms": self._kernel_read.summary(),
                "processes": 1,
                **(
                    {"latency_export": self.stats.latency.export(SUMMARY_LATENCY_EXPORT)}
                    if self._is_worker
                    else {}
                ),
            },
        )

    async def read_sample(self) -> dict[str, Any]:
        """:meth:`sample` with the socket queues read from the kernel now (in a thread)."""
        await self._read_kernel()
        return self.sample()

    def sample(self) -> dict[str, Any]:
        """Live figures now: counters, interval latency, socket queues and TCP memory."""
        stats = self.stats
        interval = stats.take_interval()
        figures: dict[str, Any] = {
            "t_s": round(time.monotonic() - self._started, 3),
            "connected": stats.connected,
            "connecting": stats.connecting,
            "connect_failures": sum(stats.connect_failures.values()),
            "pings_sent": stats.pings_sent,
            "pings_blocked": stats.pings_blocked,
            "bytes_sent": stats.bytes_sent,
            "blocked_in_send_s": round(stats.blocked_s + self._blocked_now(), 3),
            "events_received": stats.events_received,
            "opened": stats.opened,
            "left": stats.left,
            "leaving": stats.leaving,
            "active": stats.connected - stats.leaving,
            "latency": interval.percentiles_ms(),
            "closes": {str(code): n for code, n in sorted(stats.closes.items())},
            "sending": self._sending,
        }
        if self._is_worker:  # the parent merges the latencies of every worker
            figures["latency_export"] = interval.export(LATENCY_EXPORT)
        else:
            figures.update(self._queue_figures)
            figures["kernel_tcp_mem_bytes"] = read_sockstat()["mem_bytes"]
            figures["kernel_read_ms"] = self._read_ms
            figures["kernel_read_cpu_ms"] = self._read_cpu_ms
        figures.update(self._server_figures)
        return figures

    # Tasks

    async def _connect_all(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        slots = asyncio.Semaphore(MAX_CONNECTING)
        config = self.config
        offsets = arrival_offsets(
            config.clients, config.ramp_per_s, config.churn_every_s, config.churn_batch
        )
        async with asyncio.TaskGroup() as tasks:
            for offset_s in offsets:
                delay_s = start + offset_s - loop.time()
                if delay_s > 0:
                    await asyncio.sleep(delay_s)
                await slots.acquire()
                tasks.create_task(self._connect_one(slots))

    async def _connect_one(self, slots: asyncio.Semaphore) -> None:
        loop = asyncio.get_running_loop()
        self.stats.connecting += 1
        connection: PingConnection | None = None
        try:
            async with asyncio.timeout(self.config.connect_timeout_s):
                if self._sources:
                    _, connection = await loop.create_connection(
                        self._new_connection, sock=await self._connect_from(self._next_source())
                    )
                else:
                    _, connection = await loop.create_connection(
                        self._new_connection, self._uri.host, self._uri.port
                    )
                await connection.opened
            self._connections.append(connection)
            self.stats.opened += 1
            if self._departures is not None:
                self._departures.add(connection, time.monotonic())
            connection = None
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            self.stats.connect_failures[_failure_kind(exc)] += 1
        finally:
            # Not kept (failed or cancelled mid-handshake): drop it now.
            if connection is not None:
                connection.abort()
            self.stats.connecting -= 1
            slots.release()

    def _next_source(self) -> str:
        source = self._sources[self._source_turn % len(self._sources)]
        self._source_turn += 1
        return source

    async def _connect_from(self, source: str) -> socket.socket:
        """A TCP socket bound to ``source`` (the port left to connect) and connected."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            sock.bind((source, 0))
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, (self._uri.host, self._uri.port))
        except BaseException:
            sock.close()
            raise
        return sock

    def _new_connection(self) -> PingConnection:
        return PingConnection(
            self._uri, self.stats, compression=self.config.compression, started_at=self._started
        )

    async def _send_pings(self) -> None:
        # Missed slots are caught up: a skipped one would leave its clients without a ping
        # that round.
        slots = max(1, round(self.config.interval_s / TICK_S))
        control = self.config.ping_kind == "control"
        as_text = self.config.payload == "text"
        framer = self._framer()
        slot = 0
        async for _ in every(self.config.interval_s / slots, missed="catch-up"):
            self._leave_due()
            if not self._sending:
                continue
            due = self._connections[slot::slots]
            if framer is not None:
                size = framer.size_bytes
                for connection, frame in zip(due, framer.frames(len(due)), strict=True):
                    connection.send_frame(frame, size)
            else:
                for connection in due:
                    connection.send_ping(self._payload(), as_text=as_text, control=control)
            slot = (slot + 1) % slots

    def _framer(self) -> PingFramer | None:
        """Data pings framed in batches, unless they are control pings or compressed."""
        if self.config.ping_kind == "control" or self.config.compression:
            return None
        text = self._text_payload if self.config.payload == "text" else None
        return PingFramer(self.config.size_bytes, text=text)

    def _payload(self) -> bytes:
        if self.config.payload == "random":
            # Fresh bytes for every ping: a repeated payload compresses well under deflate.
            return random.randbytes(self.config.size_bytes)
        return self._text_payload

    async def _watch(self, on_sample: Callable[[dict[str, Any]], None] | None) -> None:
        async for _ in every(1.0):
            self._guard_memory()
            self._run_keepalive()
            self._connections = [c for c in self._connections if not c.closed.done()]
            await self._read_server_stats()
            if on_sample is not None:
                on_sample(await self.read_sample())

    # Helpers

    def _leave_due(self) -> None:
        """Close, normally, every client whose lifetime is over."""
        if self._departures is None:
            return
        for connection in self._departures.due(time.monotonic()):
            if not connection.is_open:
                continue
            self.stats.leaving += 1
            self.stats.left += 1
            connection.closed.add_done_callback(functools.partial(self._on_left, connection))
            connection.close()

    def _on_left(self, connection: PingConnection, _: asyncio.Future[None]) -> None:
        self.stats.leaving -= 1
        if not connection.close_answered:
            # The server never answered our close frame: the connection was aborted.
            self.stats.left_unanswered += 1

    def _guard_memory(self) -> None:
        if self._sending and not self._is_worker and self._guard.check():
            self._sending = False

    def _run_keepalive(self) -> None:
        period_s = self.config.client_keepalive_s
        if period_s is None:
            return
        now = time.monotonic()
        for connection in self._connections:
            sent_at = connection.keepalive_sent_at
            if sent_at is None:
                if now - connection.keepalive_due_from >= period_s:
                    connection.send_keepalive(now)
            elif now - sent_at >= period_s:
                connection.fail(1011, "keepalive ping timeout")

    async def _read_kernel(self) -> None:
        if self._is_worker:
            return
        server_end = next((c.peer for c in self._connections if c.peer is not None), None)
        if not self._is_local:
            server_end = None  # not in this network namespace
        inodes = {c.inode for c in self._connections if c.inode is not None}
        figures, read_s, cpu_s = await asyncio.to_thread(
            timed_read, functools.partial(self._read_queue_figures, server_end, inodes)
        )
        self._kernel_read.add(read_s, cpu_s)
        self._read_ms = round(read_s * 1000, 3)
        self._read_cpu_ms = round(cpu_s * 1000, 3)
        self._queue_figures = figures
        self._raise_peaks(figures)

    def _read_queue_figures(
        self, server_end: tuple[str, int] | None, inodes: set[int]
    ) -> dict[str, int]:
        """Ours by the inodes of our connections' sockets (taken as each one connected); the
        server's by the exact address our connections reached. Both in one dump: every
        socket with that address at either end."""
        if server_end is None:
            ours = read_sockets(remote=(None, self._uri.port), skmem=False).with_inodes(inodes)
            return {"client_send_q_bytes": socket_totals(ours).send_q_bytes}
        server, others = read_both_ends(server_end)
        server_recv_q = server.column("recv_q")
        return {
            "client_send_q_bytes": sum(others.with_inodes(inodes).column("send_q")),
            "server_recv_q_bytes": sum(server_recv_q),
            "server_recv_q_max_bytes": max(server_recv_q, default=0),
        }

    async def _read_server_stats(self) -> None:
        if self._server_stats is None:
            return
        figures = await self._server_stats.read()
        if figures is None and not self._server_stats_failed:
            self._server_stats_failed = True
            logger.warning("server figures unknown: no answer from %s", self._server_stats.url)
        self._server_figures = figures or {}
        self._raise_peaks(self._server_figures)

    def _raise_peaks(self, figures: dict[str, int]) -> None:
        for name, peak in self._peaks.items():
            if name in figures:
                self._peaks[name] = max(peak or 0, figures[name])

    def _server_figures_from(self) -> str | None:
        if self._is_local:
            return "kernel"
        if self._peaks["server_recv_q_bytes"] is None or self._server_stats is None:
            return None
        return self._server_stats.url

    def _blocked_now(self) -> float:
        now = time.monotonic()
        return sum(now - c.paused_at for c in self._connections if c.paused_at is not None)

    async def _close_all(self) -> None:
        self._sending = False
        self.is_closing = True
        if self._departures is not None:
            self._departures.clear()
        connections = [c for c in self._connections if not c.closed.done()]
        for connection in connections:
            connection.close()
        if connections:
            await asyncio.wait([c.closed for c in connections], timeout=CLOSE_TIMEOUT_S + 1.0)
        left = [c for c in connections if not c.closed.done()]
        for connection in left:
            connection.abort()
        if left:
            # abort() closes the socket on the loop's next iteration: wait for it, so that
            # no socket of the swarm outlives run() (a caller may close the loop next).
            await asyncio.wait([c.closed for c in left], timeout=1.0)
        self._connections.clear()


def _failure_kind(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, InvalidHandshake):
        return "handshake"
    return type(exc).__name__
