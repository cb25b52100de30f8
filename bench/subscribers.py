"""A lean subscriber swarm for the fan-out and memory benchmarks, run as a child process.

``python -m bench.subscribers --url ws://127.0.0.1:PORT/ws --clients 1000`` opens the
connections with websockets' sans-I/O :class:`~websockets.client.ClientProtocol` (handshake,
closing frame) on plain non-blocking sockets and one epoll, then stops parsing frames: an
open connection only counts the events in the bytes it receives, by the JSON prefix every
event starts with. It sends nothing upstream.

It must cost far less per event than the servers it measures, or it becomes the limit of
the saturation test on a 2-core machine. So, once every client is connected, it reads in
rounds: one ``recv`` for every readable socket, then a pause of ``--batch-ms``. Events wait
in the kernel's receive buffer in between (a few per socket, far below any limit), and one
``recv`` picks up several: fewer system calls and wake-ups per event. The servers do not
see the difference: on loopback their writes land in our receive queue whether we are
reading or not.

Every ``--every`` seconds it prints one JSON line: ``{"t_s", "connected", "failed",
"received"}`` (monotonic seconds; totals). It stops after ``--duration`` or on SIGTERM,
closing every connection with a close frame and dropping those that do not finish.

With ``--latency-every K`` every K-th connection also reads each event's ``ts`` (publish
time, Unix seconds) from the bytes it receives and keeps ``time.time() - ts``; the last line
then has ``latency`` (count, p50/p99/max in ms), of the events received from one second
after every connection was open. Use ``--batch-ms 0`` with it: the rounds would add their
pause to every latency.
"""

from __future__ import annotations

import argparse
import errno
import json
import re
import resource
import select
import signal
import socket
import sys
import time

from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import OPEN
from websockets.uri import WebSocketURI, parse_uri

EVENT_PREFIX = b'{"type":'
TAIL_BYTES = len(EVENT_PREFIX) - 1
# An event's publish time; the comma after it keeps a number cut by a read from matching.
TS_RE = re.compile(rb'"ts":([0-9.]+),')
TS_TAIL_BYTES = 40
RECV_BYTES = 1 << 16
MAX_CONNECTING = 200
CONNECT_TIMEOUT_S = 10.0
CLOSE_TIMEOUT_S = 2.0

CONNECTING, HANDSHAKE, OPEN_, CLOSING = range(4)


class Subscriber:
    """One connection: its socket, sans-I/O protocol, state and the tail of its last read."""

    __slots__ = ("protocol", "sampled", "sock", "started_s", "state", "tail")

    def __init__(self, sock: socket.socket, uri: WebSocketURI, sampled: bool = False) -> None:
        self.sock = sock
        self.protocol = ClientProtocol(uri)
        self.state = CONNECTING
        self.started_s = time.monotonic()
        self.tail = b""
        self.sampled = sampled

    def send_pending(self) -> None:
        """Write what the protocol has to send (small: a request or a close frame)."""
        for data in self.protocol.data_to_send():
            if data:
                self.sock.sendall(data)


class Swarm:
    """Every connection of the process and the counts shared by them."""

    def __init__(self, uri: WebSocketURI, clients: int, latency_every: int = 0) -> None:
        self.uri = uri
        self.to_open = clients
        self.latency_every = latency_every
        self.opened = 0
        self.latencies_s: list[float] = []
        self.recording = False
        self.by_fd: dict[int, Subscriber] = {}
        self.poller = select.epoll()
        self.in_handshake = 0
        self.connected = 0
        self.failed = 0
        self.received = 0

    def open_more(self) -> None:
        """Start connections, at most ``MAX_CONNECTING`` handshakes in flight."""
        while self.to_open and self.in_handshake < MAX_CONNECTING:
            self.to_open -= 1
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            code = sock.connect_ex((self.uri.host, self.uri.port))
            if code not in (0, errno.EINPROGRESS):
                sock.close()
                self.failed += 1
                continue
            sampled = bool(self.latency_every) and self.opened % self.latency_every == 0
            self.opened += 1
            self.by_fd[sock.fileno()] = Subscriber(sock, self.uri, sampled)
            self.poller.register(sock.fileno(), select.EPOLLOUT)
            self.in_handshake += 1

    def handle(self, fd: int, counting: bool) -> None:
        """One readiness event of one socket."""
        sub = self.by_fd[fd]
        if sub.state == CONNECTING:
            if sub.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                self.drop(sub, failed=True)
                return
            sub.protocol.send_request(sub.protocol.connect())
            sub.send_pending()
            sub.state = HANDSHAKE
            self.poller.modify(fd, select.EPOLLIN)
            return
        try:
            data = sub.sock.recv(RECV_BYTES)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.drop(sub, failed=sub.state == HANDSHAKE)
        elif sub.state == OPEN_:
            if counting:
                # Server frames are unmasked: each event's JSON is verbatim in the stream. The
                # tail keeps a prefix split across two reads from being missed.
                if sub.sampled:
                    self.sample_latency(sub, data)
                    return
                chunk = sub.tail + data
                self.received += chunk.count(EVENT_PREFIX)
                sub.tail = chunk[-TAIL_BYTES:]
        elif sub.state == HANDSHAKE:
            self.read_handshake(sub, data)

    def sample_latency(self, sub: Subscriber, data: bytes) -> None:
        """Count the events in ``data`` and keep the latency of each one."""
        now_s = time.time()
        chunk = sub.tail + data
        self.received += chunk.count(EVENT_PREFIX, max(0, len(sub.tail) - TAIL_BYTES))
        for match in TS_RE.finditer(chunk):
            if match.end() > len(sub.tail) and self.recording:  # not one of the last read
                self.latencies_s.append(now_s - float(match.group(1)))
        sub.tail = chunk[-TS_TAIL_BYTES:]

    def read_handshake(self, sub: Subscriber, data: bytes) -> None:
        """Feed the handshake response to the protocol; count events that came with it."""
        sub.protocol.receive_data(data)
        for event in sub.protocol.events_received():
            if isinstance(event, Response):
                if sub.protocol.state is not OPEN:
                    self.drop(sub, failed=True)
                    return
                sub.state = OPEN_
                self.in_handshake -= 1
                self.connected += 1
            elif isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                self.received += 1

    def expire_handshakes(self, now_s: float) -> None:
        """Give up on connections whose handshake took longer than ``CONNECT_TIMEOUT_S``."""
        for sub in list(self.by_fd.values()):
            if sub.state in (CONNECTING, HANDSHAKE) and now_s - sub.started_s > CONNECT_TIMEOUT_S:
                self.drop(sub, failed=True)

    def drop(self, sub: Subscriber, *, failed: bool) -> None:
        """Forget a connection and close its socket."""
        fd = sub.sock.fileno()
        if sub.state in (CONNECTING, HANDSHAKE):
            self.in_handshake -= 1
        elif sub.state == OPEN_:
            self.connected -= 1
        if failed:
            self.failed += 1
        self.poller.unregister(fd)
        del self.by_fd[fd]
        sub.sock.close()

    def poll(self, timeout_s: float, counting: bool) -> None:
        """Wait up to ``timeout_s`` and handle every ready socket once."""
        for fd, _ in self.poller.poll(timeout_s, len(self.by_fd) + 1):
            if fd in self.by_fd:
                self.handle(fd, counting)

    def close_all(self) -> None:
        """Send close frames, wait for the servers to close, drop whatever is left."""
        for sub in list(self.by_fd.values()):
            if sub.state == OPEN_:
                sub.protocol.send_close(1000)
                try:
                    sub.send_pending()
                except OSError:
                    self.drop(sub, failed=False)
                    continue
                sub.state = CLOSING
                self.connected -= 1
            else:
                self.drop(sub, failed=False)
        deadline = time.monotonic() + CLOSE_TIMEOUT_S
        while self.by_fd and time.monotonic() < deadline:
            self.poll(0.1, counting=False)
        for sub in list(self.by_fd.values()):
            self.drop(sub, failed=False)
        self.poller.close()

    def latency(self) -> dict[str, float]:
        """Count and percentiles of the latencies kept, in ms."""
        ordered = sorted(self.latencies_s)
        if not ordered:
            return {"count": 0}

        def at(fraction: float) -> float:
            return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000

        return {"count": len(ordered), "p50_ms": at(0.5), "p99_ms": at(0.99), "max_ms": at(1.0)}

    def line(self, **extra: object) -> str:
        """The JSON report line."""
        return json.dumps(
            {
                "t_s": time.monotonic(),
                "connected": self.connected,
                "failed": self.failed,
                "received": self.received,
                **extra,
            }
        )


def run(
    url: str,
    clients: int,
    duration_s: float,
    every_s: float,
    batch_s: float,
    latency_every: int = 0,
) -> None:
    """Connect, count and report until the duration ends or SIGTERM, then close everything."""
    stopping = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.append(True))
    swarm = Swarm(parse_uri(url), clients, latency_every)
    end_s = time.monotonic() + duration_s
    next_report_s = 0.0
    record_from_s = float("inf")
    while not stopping and time.monotonic() < end_s:
        swarm.open_more()
        settled = not swarm.to_open and not swarm.in_handshake
        if settled and record_from_s == float("inf"):
            record_from_s = time.monotonic() + 1.0
        swarm.recording = time.monotonic() >= record_from_s
        swarm.poll(0.0 if settled and batch_s else 0.05, counting=True)
        now_s = time.monotonic()
        if settled and batch_s:
            time.sleep(batch_s)
        else:
            swarm.expire_handshakes(now_s)
        if now_s >= next_report_s:
            print(swarm.line(), flush=True)
            next_report_s = now_s + every_s
    swarm.close_all()
    extra = {"latency": swarm.latency()} if latency_every else {}
    print(swarm.line(done=True, **extra), flush=True)


def raise_fd_limit(wanted: int) -> None:
    """Raise the soft limit on open files towards ``wanted`` (never above the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def main(argv: list[str] | None = None) -> int:
    """Parse options and run."""
    parser = argparse.ArgumentParser(prog="python -m bench.subscribers", description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=300.0, dest="duration_s")
    parser.add_argument("--every", type=float, default=0.5, dest="every_s")
    parser.add_argument("--batch-ms", type=float, default=20.0, help="pause between read rounds")
    parser.add_argument(
        "--latency-every", type=int, default=0, help="keep latencies of every K-th connection"
    )
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if not parse_uri(args.url).host.startswith("127."):
        parser.error("--url must point at 127.0.0.0/8")
    raise_fd_limit(args.clients + 256)
    run(
        args.url,
        args.clients,
        args.duration_s,
        args.every_s,
        args.batch_ms / 1000,
        args.latency_every,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
