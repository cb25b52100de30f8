"""A reconcile loop that opens a WebSocket per request: the client of the ``ws-unclosed`` story.

``python -m leaklab.stories.ws_unclosed.client URL --client unclosed|closed|reused --rate N``

Like the controller of the original incident, each "reconcile" request is one short exchange
with the service: open a connection, send one message. What happens to the connection then is
the whole story:

- ``unclosed`` (the bug): the connection object is kept and never closed. Each request holds
  one more socket on both sides, until the server runs out of file descriptors.
- ``closed`` (a fix): the connection is closed as soon as the request is sent.
- ``reused`` (the other fix): one connection, opened once, carries every request.

Requests start on a fixed schedule of ``--rate`` per second, one after the other; a request
that takes longer (a handshake timing out at the server's fd limit) delays the next ones, as
a controller's loop would. Once a second the client writes one JSON line of its counts
(``--stats-out``, default stdout): requests, connections opened and held, those the server
closed, and failures by kind (``http_503``, ``timeout``, ``reset``, ``dropped``...). It stops
after ``--duration`` seconds; whatever it holds is then closed by the kernel as it exits,
as when the controller restarts.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import errno
import json
import sys
import time
import urllib.parse
from collections.abc import Sequence
from typing import IO, Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import (
    ConnectionClosed,
    InvalidMessage,
    InvalidStatus,
    WebSocketException,
)
from websockets.protocol import State

from leaklab.stories.ws_unclosed.matrix import CLIENTS
from ping_client.errors import UnsafeTarget
from ping_client.safety import check_target
from sockscope.schedule import every

__all__ = ["CLIENTS", "ClientCounts", "failure_kind", "main"]

OPEN_TIMEOUT_S = 1.0
CLOSE_TIMEOUT_S = 1.0
MAX_RATE_PER_S = 1000.0
MAX_DURATION_S = 3600.0
# Loopback only, no proxy; no keepalive or compression: nothing but the connections themselves.
CONNECT_OPTIONS: dict[str, Any] = {
    "proxy": None,
    "compression": None,
    "ping_interval": None,
    "open_timeout": OPEN_TIMEOUT_S,
    "close_timeout": CLOSE_TIMEOUT_S,
}


def failure_kind(exc: BaseException) -> str:
    """A short name for why a request failed: ``http_503``, ``timeout``, ``reset``..."""
    if isinstance(exc, InvalidStatus):
        return f"http_{exc.response.status_code}"
    if isinstance(exc, InvalidMessage):
        # The server closed or reset the connection without an HTTP answer.
        return "reset" if isinstance(exc.__cause__, ConnectionResetError) else "dropped"
    if isinstance(exc, ConnectionClosed):
        return "closed"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ConnectionResetError):
        return "reset"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, OSError):
        return f"os_{errno.errorcode.get(exc.errno or 0, 'error')}"
    if isinstance(exc, WebSocketException):
        return "protocol"
    return type(exc).__name__


@dataclasses.dataclass
class ClientCounts:
    """What the client did so far."""

    client: str
    started: float = dataclasses.field(default_factory=time.monotonic)
    requests: int = 0
    opened: int = 0
    closed: int = 0  # by us, after a request (the ``closed`` client)
    failed: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    first_failure_s: float | None = None

    def fail(self, exc: BaseException) -> None:
        """Count a failed request by its kind."""
        self.failed[failure_kind(exc)] += 1
        if self.first_failure_s is None:
            self.first_failure_s = round(time.monotonic() - self.started, 3)

    def line(self, held: Sequence[ClientConnection]) -> dict[str, Any]:
        """One JSON-ready line: the counts, and the held connections still open."""
        still_open = sum(ws.state is State.OPEN for ws in held)
        return {
            "t_s": round(time.monotonic() - self.started, 3),
            "client": self.client,
            "requests": self.requests,
            "opened": self.opened,
            "held": still_open,
            "closed": self.closed,
            "closed_by_server": len(held) - still_open,
            "failed": dict(sorted(self.failed.items())),
            "first_failure_s": self.first_failure_s,
        }


class Reconciler:
    """The reconcile loop: one request per tick, the connection handled as ``client`` says."""

    def __init__(self, url: str, client: str) -> None:
        self.url = url
        self.counts = ClientCounts(client)
        self.held: list[ClientConnection] = []  # the ``unclosed`` client's leak, on purpose
        self._reused: ClientConnection | None = None

    async def request(self) -> None:
        """One reconcile request: a message over a connection, opened as the client does."""
        self.counts.requests += 1
        message = json.dumps({"reconcile": self.counts.requests})
        try:
            if self.counts.client == "reused":
                await self._send_reused(message)
                return
            ws = await connect(self.url, **CONNECT_OPTIONS)
            self.counts.opened += 1
            if self.counts.client == "unclosed":
                self.held.append(ws)  # kept, never closed: the bug
                await ws.send(message)
            else:
                try:
                    await ws.send(message)
                finally:
                    await ws.close()
                    self.counts.closed += 1
        except (OSError, WebSocketException) as exc:  # TimeoutError is an OSError
            self.counts.fail(exc)

    async def _send_reused(self, message: str) -> None:
        if self._reused is None or self._reused.state is not State.OPEN:
            self._reused = await connect(self.url, **CONNECT_OPTIONS)
            self.counts.opened += 1
            self.held = [self._reused]
        await self._reused.send(message)


async def run(
    url: str, client: str, rate_per_s: float, duration_s: float, out: IO[str]
) -> Reconciler:
    """Run the loop for ``duration_s``, writing a line of counts to ``out`` every second.

    Returns the loop with what it holds: the process exits with them, a caller that goes on
    (a test) closes them.
    """
    reconciler = Reconciler(url, client)

    def report() -> None:
        out.write(json.dumps(reconciler.counts.line(reconciler.held)) + "\n")
        out.flush()

    async def requests() -> None:
        async for _ in every(1.0 / rate_per_s, first_at_once=True):
            await reconciler.request()

    async def reports() -> None:
        async for _ in every(1.0):
            report()

    async with asyncio.TaskGroup() as tasks:
        loop_task = tasks.create_task(requests(), name="reconcile-loop")
        report_task = tasks.create_task(reports(), name="client-report")
        await asyncio.sleep(duration_s)
        loop_task.cancel()
        report_task.cancel()
    report()
    return reconciler


def parser() -> argparse.ArgumentParser:
    """The command line."""
    cli = argparse.ArgumentParser(
        prog="python -m leaklab.stories.ws_unclosed.client",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cli.add_argument("url", help="the service's WebSocket URL, ws://127.0.0.1:PORT/ws")
    cli.add_argument("--client", choices=CLIENTS, default="unclosed")
    cli.add_argument("--rate", type=float, default=50.0, help="requests per second (%(default)s)")
    cli.add_argument("--duration", type=float, default=60.0, help="seconds (%(default)s)")
    cli.add_argument("--stats-out", default="-", help="file for the JSON lines (default: stdout)")
    return cli


def main(argv: list[str] | None = None) -> int:
    """Check the arguments, run the loop; exit status 0, or 2 for a usage error."""
    cli = parser()
    args = cli.parse_args(argv)
    host = urllib.parse.urlsplit(args.url).hostname or ""
    try:
        check_target(host, allow_remote=False)
    except UnsafeTarget as exc:
        cli.error(str(exc))
    if not 0 < args.rate <= MAX_RATE_PER_S:
        cli.error(f"--rate must be above 0 and at most {MAX_RATE_PER_S:g}")
    if not 0 < args.duration <= MAX_DURATION_S:
        cli.error(f"--duration must be above 0 and at most {MAX_DURATION_S:g}")
    if args.stats_out == "-":
        asyncio.run(run(args.url, args.client, args.rate, args.duration, sys.stdout))
    else:
        with open(args.stats_out, "a") as out:
            asyncio.run(run(args.url, args.client, args.rate, args.duration, out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
