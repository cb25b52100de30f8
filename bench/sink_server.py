"""A WebSocket sink for benchmarks only: it accepts the handshake and discards the rest.

``python -m bench.sink_server --listen-fd N`` serves on a listening socket it inherits (the
launcher binds it with :func:`leaklab.children.bind_listener`, as for the service's
``LISTEN_FD``). Each connection is a bare asyncio ``Protocol``: it reads the HTTP request head,
answers a WebSocket Upgrade with ``101 Switching Protocols`` and the ``Sec-WebSocket-Accept``
of RFC 6455, and from then on only counts the bytes it receives; no frame is parsed, no close
frame answered (a client that closes waits for its own timeout and aborts). A plain
``GET /stats`` answers its counters as JSON and closes. So a swarm can be measured at rates
that a real server could not read on the same machine: the sink's cost per ping is one
``data_received`` call, or less when the kernel coalesces.

Bounds: a request head longer than :data:`MAX_HEAD_BYTES` is refused with 400; nothing else is
buffered (the received bytes are counted and dropped). SIGTERM or SIGINT aborts every
connection, prints the counters as one JSON line and exits.

:class:`SinkProcess` starts it as a child with its own fd limit and waits until it answers.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import signal
import socket
import sys
import time
from pathlib import Path
from typing import TypedDict, cast

import httpx
import uvloop

from leaklab.children import ChildProcess, LaunchError, bind_listener

__all__ = [
    "MAX_HEAD_BYTES",
    "SinkCounters",
    "SinkProcess",
    "accept_key",
    "client_frame_bytes",
    "parse_head",
]

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_HEAD_BYTES = 8 * 1024


class SinkCounters(TypedDict):
    """What the sink has seen since it started."""

    connections: int  # open WebSocket connections now
    upgrades: int  # handshakes answered with 101
    refused: int  # requests answered with 400 or 404
    bytes_received: int  # after the handshakes (frames, undecoded)
    reads: int  # data_received calls after the handshakes


def accept_key(key: str) -> str:
    """The ``Sec-WebSocket-Accept`` for a client's ``Sec-WebSocket-Key`` (RFC 6455, 4.2.2)."""
    digest = hashlib.sha1((key + WS_GUID).encode("ascii")).digest()  # the RFC says SHA-1
    return base64.b64encode(digest).decode("ascii")


def parse_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    """Method, path and headers (lowercase names) of an HTTP/1.1 request head.

    Raises ValueError on a head that is not one.
    """
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise ValueError(f"not an HTTP/1.x request line: {lines[0][:80]!r}")
    headers = {}
    for line in lines[1:]:
        if not line:
            continue
        name, colon, value = line.partition(":")
        if not colon:
            raise ValueError(f"not a header line: {line[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    return parts[0], parts[1], headers


def upgrade_response(headers: dict[str, str]) -> bytes | None:
    """The 101 answer to a WebSocket Upgrade request, or None if it is not one."""
    key = headers.get("sec-websocket-key")
    if headers.get("upgrade", "").lower() != "websocket" or not key:
        return None
    return (
        "HTTP/1.1 101 Switching Protocols\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept_key(key)}\r\n\r\n"
    ).encode("ascii")


def client_frame_bytes(payload_bytes: int) -> int:
    """Bytes on the wire of one masked client frame with ``payload_bytes`` of payload."""
    if payload_bytes < 126:
        length_bytes = 0
    elif payload_bytes < 1 << 16:
        length_bytes = 2
    else:
        length_bytes = 8
    return 2 + length_bytes + 4 + payload_bytes


def _plain_response(status: str, body: bytes, content_type: str = "text/plain") -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class Sink:
    """The counters and the open connections of one sink."""

    def __init__(self) -> None:
        self.counters = SinkCounters(connections=0, upgrades=0, refused=0, bytes_received=0,
                                     reads=0)  # fmt: skip
        self.transports: set[asyncio.Transport] = set()

    def protocol(self) -> SinkConnection:
        """A protocol for one accepted connection (the server's factory)."""
        return SinkConnection(self)

    def stats_body(self) -> bytes:
        """The counters as JSON, for ``GET /stats``."""
        return json.dumps(self.counters).encode()

    def abort_all(self) -> None:
        """Drop every connection now."""
        for transport in list(self.transports):
            transport.abort()


class SinkConnection(asyncio.Protocol):
    """One connection: the request head, then bytes counted and dropped."""

    def __init__(self, sink: Sink) -> None:
        self._sink = sink
        self._transport: asyncio.Transport | None = None
        self._head = b""
        self._upgraded = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self._transport = cast(asyncio.Transport, transport)
        self._sink.transports.add(self._transport)

    def data_received(self, data: bytes) -> None:
        if self._upgraded:
            counters = self._sink.counters
            counters["bytes_received"] += len(data)
            counters["reads"] += 1
            return
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            if len(self._head) > MAX_HEAD_BYTES:
                self._refuse("400 Bad Request")
            return
        head, rest = self._head[:end], self._head[end + 4 :]
        self._head = b""
        self._answer(head, rest)

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is not None:
            self._sink.transports.discard(self._transport)
        if self._upgraded:
            self._sink.counters["connections"] -= 1

    def _answer(self, head: bytes, rest: bytes) -> None:
        assert self._transport is not None
        try:
            method, path, headers = parse_head(head)
        except ValueError:
            self._refuse("400 Bad Request")
            return
        if method == "GET" and path == "/stats":
            body = self._sink.stats_body()
            self._transport.write(_plain_response("200 OK", body, "application/json"))
            self._transport.close()
            return
        response = upgrade_response(headers) if method == "GET" else None
        if response is None:
            self._refuse("404 Not Found" if method == "GET" else "400 Bad Request")
            return
        self._transport.write(response)
        self._upgraded = True
        counters = self._sink.counters
        counters["upgrades"] += 1
        counters["connections"] += 1
        if rest:
            self.data_received(rest)

    def _refuse(self, status: str) -> None:
        assert self._transport is not None
        self._sink.counters["refused"] += 1
        self._transport.write(_plain_response(status, status.encode()))
        self._transport.close()


async def serve_until_stopped(listen_fd: int) -> SinkCounters:
    """Serve on the inherited listening socket until SIGTERM or SIGINT; the counters."""
    sink = Sink()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    # asyncio listens again on an inherited socket, with this backlog
    server = await loop.create_server(sink.protocol, sock=socket.socket(fileno=listen_fd),
                                      backlog=4096)  # fmt: skip
    async with server:
        await stop.wait()
        server.close()
        sink.abort_all()
    return sink.counters


class SinkProcess(ChildProcess):
    """``python -m bench.sink_server`` on a socket bound here, with its own fd limit."""

    def __init__(self, log_path: Path, *, host: str = "127.0.0.1",
                 fd_limit: int | None = None) -> None:  # fmt: skip
        super().__init__([], {}, log_path, fd_limit=fd_limit)
        self.host = host
        self.port: int | None = None

    @property
    def ws_url(self) -> str:
        """``ws://HOST:PORT/`` (any path upgrades)."""
        return f"ws://{self.host}:{self.port}/"

    def start(self, timeout_s: float = 20.0) -> SinkProcess:
        """Bind the port, start the child on it, and wait until ``/stats`` answers."""
        with bind_listener(self.host) as listener:
            self.port = listener.getsockname()[1]
            fd = listener.fileno()
            self.argv = [sys.executable, "-m", "bench.sink_server", "--listen-fd", str(fd)]
            self._pass_fds = (fd,)
            super().start()
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                self.check_alive()
                try:
                    self.counters(timeout_s=2.0)
                    return self
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        raise LaunchError(f"sink did not answer:\n{self.log_tail()}") from None
                    time.sleep(0.05)
        except BaseException:
            self.stop()
            raise

    def counters(self, timeout_s: float = 5.0) -> SinkCounters:
        """The sink's counters now (``GET /stats``)."""
        url = f"http://{self.host}:{self.port}/stats"
        response = httpx.get(url, timeout=timeout_s, trust_env=False).raise_for_status()
        counters: SinkCounters = response.json()
        return counters

    def __enter__(self) -> SinkProcess:
        return self.start()


def main(argv: list[str] | None = None) -> int:
    """Parse options and serve."""
    parser = argparse.ArgumentParser(prog="python -m bench.sink_server", description=__doc__)
    parser.add_argument("--listen-fd", type=int, required=True,
                        help="serve on this inherited listening socket")  # fmt: skip
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    counters = uvloop.run(serve_until_stopped(args.listen_fd))
    print(json.dumps(counters), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
