"""The swarm's own Python per data ping, without the kernel: ``python -m bench.ping_path``.

At 40,000 pings a second the kernel's ``send()`` is most of a ping's cost and a shared
machine's noise swamps the rest (``bench/swarm_sink.py`` measures the whole, against the
floor of one ``send()`` per ping). This measures the rest alone, on one core and in CPU time:
``--connections`` real :class:`~ping_client.connection.PingConnection` objects, each through
a real websockets handshake, on a transport whose ``write`` only counts bytes, so a round of
pings costs exactly the swarm's Python for them (framing, masks, checks, counters).

Two paths, in alternating repetitions, medians quoted:

- ``websockets``: :meth:`PingConnection.send_ping` with a fresh ``random.randbytes`` payload,
  framed by websockets' protocol (a ``Frame``, a ``secrets.token_bytes`` mask, the mask
  applied), as the swarm sent every data ping before batch framing; it is still the path of
  control pings and of compressed connections;
- ``batch``: :class:`~ping_client.frames.PingFramer` frames for the round, then
  :meth:`PingConnection.send_frame`, as the swarm's ticker sends uncompressed data pings now.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from typing import Any

from websockets.uri import parse_uri

from bench.report import print_table, say, write_result
from bench.sink_server import accept_key, parse_head
from ping_client.connection import PingConnection
from ping_client.frames import PingFramer
from ping_client.stats import SwarmStats

__all__ = ["CountingTransport", "main", "measure", "open_connections"]


class CountingTransport(asyncio.Transport):
    """A transport whose writes are counted and dropped: no system call at all."""

    def __init__(self) -> None:
        super().__init__()
        self.written_bytes = 0
        self.last: bytes = b""

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written_bytes += len(data)
        self.last = bytes(data)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def can_write_eof(self) -> bool:
        return False

    def abort(self) -> None:
        pass

    def close(self) -> None:
        pass


def _handshake_answer(request: bytes) -> bytes:
    """The server's 101 for the client's request (its key's RFC 6455 accept value)."""
    _, _, headers = parse_head(request)
    accept = accept_key(headers["sec-websocket-key"])
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept.encode("ascii") + b"\r\n\r\n"
    )


def open_connections(count: int, stats: SwarmStats) -> list[PingConnection]:
    """``count`` connections through a real handshake, each on its own counting transport."""
    uri = parse_uri("ws://127.0.0.1:8000/ws")
    connections = []
    for _ in range(count):
        connection = PingConnection(uri, stats, compression=False, started_at=time.monotonic())
        transport = CountingTransport()
        connection.connection_made(transport)
        connection.data_received(_handshake_answer(transport.last))
        if not connection.is_open:
            raise RuntimeError("the handshake did not open the connection")
        connections.append(connection)
    return connections


def _round_websockets(connections: list[PingConnection], size_bytes: int) -> None:
    for connection in connections:
        connection.send_ping(random.randbytes(size_bytes), as_text=False, control=False)


def _round_batch(connections: list[PingConnection], framer: PingFramer) -> None:
    size = framer.size_bytes
    for connection, frame in zip(connections, framer.frames(len(connections)), strict=True):
        connection.send_frame(frame, size)


def measure(connections: int, size_bytes: int, repetitions: int) -> dict[str, list[float]]:
    """CPU microseconds per ping of each path, one figure per repetition."""

    async def run() -> dict[str, list[float]]:
        stats = SwarmStats(clients=connections)
        opened = open_connections(connections, stats)
        framer = PingFramer(size_bytes)
        paths = {
            "websockets": lambda: _round_websockets(opened, size_bytes),
            "batch": lambda: _round_batch(opened, framer),
        }
        results: dict[str, list[float]] = {name: [] for name in paths}
        for repetition in range(repetitions):
            order = list(paths) if repetition % 2 == 0 else list(reversed(paths))
            for name in order:
                sent_before = stats.pings_sent
                started = time.process_time()
                paths[name]()
                elapsed = time.process_time() - started
                if stats.pings_sent - sent_before != connections:
                    raise RuntimeError(f"{name}: not every connection sent its ping")
                results[name].append(elapsed / connections * 1e6)
        return results

    return asyncio.run(run())


def main() -> None:
    """Measure both paths, print a table, save the result."""
    parser = argparse.ArgumentParser(prog="python -m bench.ping_path", description=__doc__)
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repetitions", type=int, default=11)
    parser.add_argument("--quick", action="store_true", help="1,000 connections, 3 repetitions")
    args = parser.parse_args()
    connections, repetitions = (1_000, 3) if args.quick else (args.connections, args.repetitions)
    say(f"ping path: {connections} connections, {args.size} B, {repetitions} repetitions")
    results = measure(connections, args.size, repetitions)
    medians = {name: statistics.median(values) for name, values in results.items()}
    print_table(
        f"the swarm's Python per data ping ({args.size} B), CPU us, median of {repetitions}",
        ["path", "us per ping", "min", "max", "vs websockets"],
        [
            [name, medians[name], min(values), max(values), medians[name] / medians["websockets"]]
            for name, values in results.items()
        ],
    )
    write_result(
        "ping-path",
        args.quick,
        {"connections": connections, "size_bytes": args.size, "runs": results,
         "median_us": medians},
    )  # fmt: skip


if __name__ == "__main__":
    main()
