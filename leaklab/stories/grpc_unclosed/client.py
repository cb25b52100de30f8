"""A controller that calls the soda service once per loop, the three ways the story compares.

``python -m leaklab.stories.grpc_unclosed.client --target HOST:PORT --client MODE --pool POOL
--stats PATH``

- ``leak-per-call-held``: per loop, a new channel and one call; the channel object is kept in
  a list and never closed (the leak: grpc closes a channel when its last reference goes, so
  a leak needs held references, as in a controller that stores its clients).
- ``close-each``: the same, with the channel in a ``with`` block (closed after the call).
- ``reuse-one``: one channel for every call.

``--pool shared`` is grpc's default: channels with the same target and args share one
subchannel, so held channels share one TCP connection. ``--pool local`` sets
``grpc.use_local_subchannel_pool=1``: each channel owns its subchannel and its connection.

Once a second the client appends one JSON line of its counts to ``--stats`` (see
:class:`Counts`); the lab reads that file, nothing else.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc

from leaklab.stories.grpc_unclosed.protocol import CLIENT_MODES, PATH, POOLS

__all__ = ["Counts", "channel_options", "main"]


def channel_options(pool: str, connect_timeout_ms: int) -> list[tuple[str, int]]:
    """Channel args: the local subchannel pool when asked; a shorter connect timeout when > 0.

    ``grpc.min_reconnect_backoff_ms`` is grpc core's minimum connect timeout (20 s by
    default): how long a connection may wait for the server's SETTINGS frame.
    """
    options: list[tuple[str, int]] = []
    if pool == "local":
        options.append(("grpc.use_local_subchannel_pool", 1))
    if connect_timeout_ms > 0:
        options.append(("grpc.min_reconnect_backoff_ms", connect_timeout_ms))
    return options


class Counts:
    """What the client did so far; :meth:`snapshot` is one line of ``--stats``."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.lock = threading.Lock()
        self.loops = 0
        self.calls_ok = 0
        self.errors: dict[str, int] = {}
        self.first_error: dict[str, Any] | None = None
        self.error_details: dict[str, str] = {}  # the last details of each status code
        self.held_channels = 0
        self.open_channels = 0
        self.capped = False

    def add_ok(self) -> None:
        """One call answered."""
        with self.lock:
            self.loops += 1
            self.calls_ok += 1

    def add_error(self, error: grpc.RpcError) -> None:
        """One call failed with ``error``'s status code."""
        code = error.code().name if isinstance(error, grpc.Call) else "UNKNOWN"
        details = (error.details() if isinstance(error, grpc.Call) else str(error)) or ""
        with self.lock:
            self.loops += 1
            self.errors[code] = self.errors.get(code, 0) + 1
            self.error_details[code] = details
            if self.first_error is None:  # wall time: the lab puts it on the cell's clock
                self.first_error = {"code": code, "details": details, "at_unix": time.time()}

    def snapshot(self) -> dict[str, Any]:
        """The counts as one JSON-ready object."""
        with self.lock:
            return {
                "t_s": round(time.monotonic() - self.started, 2),
                "wall_time": time.time(),
                "loops": self.loops,
                "calls_ok": self.calls_ok,
                "errors": dict(self.errors),
                "first_error": self.first_error,
                "error_details": dict(self.error_details),
                "held_channels": self.held_channels,
                "open_channels": self.open_channels,
                "capped": self.capped,
            }


def _call(channel: grpc.Channel, deadline_s: float, counts: Counts) -> None:
    call = channel.unary_unary(PATH)  # no serializers: bytes in, bytes out
    try:
        call(b"", timeout=deadline_s)
    except grpc.RpcError as error:
        counts.add_error(error)
    else:
        counts.add_ok()


def _ticks(rate_per_s: float, stopping: threading.Event) -> Iterator[None]:
    """Yield at ``rate_per_s`` (as fast as possible when 0) until ``stopping`` is set."""
    next_at = time.monotonic()
    while not stopping.is_set():
        if rate_per_s > 0:
            delay_s = next_at - time.monotonic()
            if delay_s > 0 and stopping.wait(delay_s):
                return
            next_at = max(next_at + 1.0 / rate_per_s, time.monotonic() - 1.0)
        yield


def run(args: argparse.Namespace, counts: Counts, stopping: threading.Event) -> None:
    """The controller's loop, until ``stopping`` is set."""
    options = channel_options(args.pool, args.connect_timeout_ms)
    held: list[grpc.Channel] = []
    if args.client == "reuse-one":
        with grpc.insecure_channel(args.target, options=options) as channel:
            counts.open_channels = 1
            for _ in _ticks(args.rate, stopping):
                _call(channel, args.deadline_s, counts)
        counts.open_channels = 0
        return
    try:
        for _ in _ticks(args.rate, stopping):
            if args.client == "close-each":
                with grpc.insecure_channel(args.target, options=options) as channel:
                    _call(channel, args.deadline_s, counts)
                continue
            channel = grpc.insecure_channel(args.target, options=options)
            held.append(channel)  # the leak: kept, never closed
            counts.held_channels = counts.open_channels = len(held)
            _call(channel, args.deadline_s, counts)
            if len(held) >= args.max_held:
                counts.capped = True  # the lab's bound: stop here, keep what is held
                stopping.wait()
    finally:
        for channel in held:
            channel.close()


def _write_stats(path: str, counts: Counts, stopping: threading.Event) -> None:
    with open(path, "a", buffering=1) as stats:
        while not stopping.wait(1.0):
            stats.write(json.dumps(counts.snapshot()) + "\n")
        stats.write(json.dumps(counts.snapshot()) + "\n")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m leaklab.stories.grpc_unclosed.client")
    parser.add_argument("--target", required=True, help="HOST:PORT of the soda service")
    parser.add_argument("--client", choices=CLIENT_MODES, default=CLIENT_MODES[0])
    parser.add_argument("--pool", choices=POOLS, default=POOLS[0])
    parser.add_argument("--rate", type=float, default=100.0, help="loops per second (0: no pause)")
    parser.add_argument("--deadline-s", type=float, default=2.0, help="deadline of each call")
    parser.add_argument(
        "--connect-timeout-ms", type=int, default=0, help="wait for SETTINGS (0: grpc's 20 s)"
    )
    parser.add_argument("--max-held", type=int, default=1000, help="stop after holding this many")
    parser.add_argument("--stats", required=True, help="append a JSON line of counts per second")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the loop until SIGTERM or SIGINT; the last stats line is written on the way out."""
    args = _parser().parse_args(argv)
    counts, stopping = Counts(), threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    writer = threading.Thread(target=_write_stats, args=(args.stats, counts, stopping))
    writer.start()
    try:
        run(args, counts, stopping)
    finally:
        stopping.set()
        writer.join()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
