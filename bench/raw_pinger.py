"""The floor under the swarm's pings: bare ``send()`` calls of one ready frame, for benchmarks.

``python -m bench.raw_pinger --url ws://127.0.0.1:PORT/ws --clients N --interval 1 --size 64
--duration S --json-out PATH``. It opens ``--clients`` WebSocket connections (a blocking
handshake each, paced at ``--ramp`` a second), then once per ``--interval`` sends every
connection one masked binary frame of ``--size`` bytes, spread over 50 ms slots as the swarm
spreads its pings: one ``socket.send`` of a frame built once, no event loop, no framing, no
entropy, no statistics, no kernel reads. What it costs is what one write per ping costs the
kernel on this machine plus the thinnest Python loop around it: the baseline a swarm's cost
per ping is compared with (``bench/swarm_sink.py``).

A frame the kernel cannot take at once (``BlockingIOError``, or a partial write) is counted as
blocked and the connection is left out from then on, so no frame is ever cut. SIGTERM or
SIGINT (or the end of ``--duration``) closes every socket and writes the counters as JSON.
Bounds: ``--clients`` up to the fd limit, which it raises to the hard one.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import socket
import time
import urllib.parse
from pathlib import Path
from types import FrameType

from websockets.frames import Opcode

from ping_client.frames import MASK_BYTES, frame_header

__all__ = ["SLOT_S", "handshake_request", "main", "ping_frame"]

SLOT_S = 0.05
HANDSHAKE_TIMEOUT_S = 10.0
MAX_HEAD_BYTES = 8 * 1024


def handshake_request(host: str, port: int, path: str) -> bytes:
    """A minimal RFC 6455 opening handshake (a fixed key: the sink checks none)."""
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def ping_frame(size_bytes: int) -> bytes:
    """One masked binary frame of ``size_bytes`` random bytes, built once."""
    return frame_header(Opcode.BINARY, size_bytes) + os.urandom(MASK_BYTES + size_bytes)


def _connect(host: str, port: int, request: bytes) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=HANDSHAKE_TIMEOUT_S)
    try:
        sock.sendall(request)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk or len(head) > MAX_HEAD_BYTES:
                raise ConnectionError("no complete handshake answer")
            head += chunk
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(f"handshake refused: {head.splitlines()[0]!r}")
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def main(argv: list[str] | None = None) -> int:
    """Run the floor pinger; see the module docstring."""
    parser = argparse.ArgumentParser(prog="python -m bench.raw_pinger", description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--clients", type=int, required=True)
    parser.add_argument("--ramp", type=float, default=500.0)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--json-out", type=Path, required=True)
    args = parser.parse_args(argv)
    url = urllib.parse.urlsplit(args.url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    if not 1 <= args.clients <= 100_000 or args.interval < SLOT_S or args.ramp <= 0:
        parser.error("--clients 1..100000, --interval >= 0.05, --ramp > 0")
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    frame = ping_frame(args.size)
    request = handshake_request(host, port, url.path or "/")
    socks: list[socket.socket] = []
    counters = {"connected": 0, "connect_failures": 0, "sent": 0, "blocked": 0}
    started = time.monotonic()
    deadline = started + args.duration
    try:
        for index in range(args.clients):
            if stopping or time.monotonic() > deadline:
                break
            try:
                socks.append(_connect(host, port, request))
            except OSError:
                counters["connect_failures"] += 1
            delay_s = started + (index + 1) / args.ramp - time.monotonic()
            if delay_s > 0:
                time.sleep(delay_s)
        counters["connected"] = len(socks)
        slots = max(1, round(args.interval / SLOT_S))
        live = [True] * len(socks)
        tick, slot = time.monotonic(), 0
        while not stopping and time.monotonic() < deadline:
            for index in range(slot, len(socks), slots):
                if not live[index]:
                    continue
                try:
                    sent = socks[index].send(frame)
                except BlockingIOError:
                    sent = 0
                if sent == len(frame):
                    counters["sent"] += 1
                else:  # never a cut frame: this connection sends no more
                    counters["blocked"] += 1
                    live[index] = False
            slot = (slot + 1) % slots
            tick += args.interval / slots
            delay_s = tick - time.monotonic()
            if delay_s > 0:
                time.sleep(delay_s)
    finally:
        for sock in socks:
            sock.close()
        args.json_out.write_text(json.dumps(counters))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
