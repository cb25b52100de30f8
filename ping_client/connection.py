"""One swarm client: websockets' sans-I/O client protocol on a bare asyncio transport.

No task per client: the transport calls us when data arrives, and the swarm's single
ticker calls :meth:`PingConnection.send_ping`. A ping is skipped (and counted as blocked)
while the transport's write buffer is above its high-water mark, so our own buffer stays
bounded; the rest waits in the kernel's send buffer, which shows as the client's Send-Q.
"""

from __future__ import annotations

import asyncio
import json
import os
import time

from websockets.client import ClientProtocol
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import CLOSED, OPEN
from websockets.uri import WebSocketURI

from ping_client.stats import SwarmStats

__all__ = [
    "CLOSE_TIMEOUT_S",
    "MAX_EVENT_BYTES",
    "NO_CLOSE_FRAME",
    "WRITE_HIGH_WATER_BYTES",
    "PingConnection",
]

CLOSE_TIMEOUT_S = 2.0
WRITE_HIGH_WATER_BYTES = 64 * 1024
MAX_EVENT_BYTES = 1 << 20
NO_CLOSE_FRAME = 1006


class PingConnection(asyncio.Protocol):
    """A WebSocket client that sends pings on request and reads the events pushed to it."""

    def __init__(
        self, uri: WebSocketURI, stats: SwarmStats, *, compression: bool, started_at: float
    ) -> None:
        extensions = [ClientPerMessageDeflateFactory()] if compression else None
        self._protocol = ClientProtocol(uri, extensions=extensions, max_size=MAX_EVENT_BYTES)
        self._stats = stats
        self._started_at = started_at
        self._transport: asyncio.Transport | None = None
        self._fragments: list[bytes] = []
        self.paused_at: float | None = None
        self._close_timer: asyncio.TimerHandle | None = None
        self._was_open = False
        self._closed_by_us = False
        # The code we failed the connection with (keepalive timeout): the close is ours,
        # but it is not a normal one and the summary counts it, as websockets' client does.
        self._failed_with: int | None = None
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()
        # A client dropped before anyone awaited its handshake (the swarm stopping while it
        # connects) must not log "exception was never retrieved".
        self.opened.add_done_callback(_retrieve_exception)
        self.closed: asyncio.Future[None] = loop.create_future()
        self.keepalive_sent_at: float | None = None
        self.keepalive_due_from = time.monotonic()
        # The inode of the socket while this process holds its fd: how the swarm finds its
        # own sockets in the kernel's table without an fstat per fd at every sample.
        self.inode: int | None = None

    @property
    def is_open(self) -> bool:
        """Whether the handshake succeeded and no close has started."""
        return self._protocol.state is OPEN

    @property
    def peer(self) -> tuple[str, int] | None:
        """The server's address and port as the kernel connected us, once connected."""
        peername = None if self._transport is None else self._transport.get_extra_info("peername")
        return (peername[0], peername[1]) if peername else None

    @property
    def close_answered(self) -> bool:
        """Whether the server's close frame arrived (the closing handshake got through)."""
        return self._protocol.close_rcvd is not None

    @property
    def is_blocked(self) -> bool:
        """Whether our write buffer is above its high-water mark (send would block)."""
        return self.paused_at is not None

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            self.inode = os.fstat(sock.fileno()).st_ino
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER_BYTES)
        self._protocol.send_request(self._protocol.connect())
        self._flush()

    def data_received(self, data: bytes) -> None:
        self._protocol.receive_data(data)
        self._handle_events()
        self._flush()

    def eof_received(self) -> bool:
        self._protocol.receive_eof()
        self._handle_events()
        self._flush()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.inode = None  # the transport has closed the fd
        if self._close_timer is not None:
            self._close_timer.cancel()
        self.resume_writing()
        if self._protocol.state is not CLOSED:
            self._protocol.receive_eof()
        if not self.opened.done():
            self.opened.set_exception(
                self._protocol.handshake_exc or ConnectionError("connection lost in handshake")
            )
        if self._was_open:
            self._stats.connected -= 1
        if self._was_open and not self._closed_by_us:
            code = self._failed_with or self._protocol.close_code
            code = NO_CLOSE_FRAME if code is None else int(code)
            self._stats.record_close(code, time.monotonic() - self._started_at)
        if not self.closed.done():
            self.closed.set_result(None)

    def pause_writing(self) -> None:
        if self.paused_at is None:
            self.paused_at = time.monotonic()

    def resume_writing(self) -> None:
        if self.paused_at is not None:
            self._stats.blocked_s += time.monotonic() - self.paused_at
            self.paused_at = None

    # Called by the swarm

    def send_ping(self, payload: bytes, *, as_text: bool, control: bool) -> bool:
        """Send one upstream ping; return False (and send nothing) while blocked or closed."""
        if not self.is_open:
            return False
        if self.paused_at is not None:
            self._stats.pings_blocked += 1
            return False
        if control:
            self._protocol.send_ping(payload[:125])
        elif as_text:
            self._protocol.send_text(payload)
        else:
            self._protocol.send_binary(payload)
        self._stats.pings_sent += 1
        self._stats.bytes_sent += len(payload)
        self._flush()
        return True

    def send_frame(self, frame: bytes, payload_bytes: int) -> bool:
        """Send one data ping framed beforehand (:mod:`ping_client.frames`): as
        :meth:`send_ping`, without websockets' per-frame work. Uncompressed connections only."""
        transport = self._transport
        if transport is None or self._protocol.state is not OPEN:
            return False
        if self.paused_at is not None:
            self._stats.pings_blocked += 1
            return False
        transport.write(frame)
        self._stats.pings_sent += 1
        self._stats.bytes_sent += payload_bytes
        return True

    def send_keepalive(self, now: float) -> None:
        """Send a keepalive Ping frame, as websockets' own client does every 20 s."""
        if self.is_open:
            self._protocol.send_ping(b"keepalive")
            self.keepalive_sent_at = now
            self._flush()

    def fail(self, code: int, reason: str) -> None:
        """Close with ``code`` at once (keepalive timeout), as websockets' client does."""
        if self.is_open:
            self._failed_with = code
            self._protocol.fail(code, reason)
            self._flush()

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake; the transport is aborted if it does not finish."""
        if self._transport is None or self._transport.is_closing():
            return
        self._closed_by_us = True
        if self.is_open:
            self._protocol.send_close(code, reason)
            self._flush()
        else:
            self._transport.abort()

    def abort(self) -> None:
        """Drop the TCP connection now."""
        self._closed_by_us = True
        if self._transport is not None:
            self._transport.abort()

    # Internals

    def _handle_events(self) -> None:
        for event in self._protocol.events_received():
            if isinstance(event, Response):
                self._on_handshake()
            elif isinstance(event, Frame):
                self._on_frame(event)

    def _on_handshake(self) -> None:
        if self._protocol.handshake_exc is not None:
            if not self.opened.done():
                self.opened.set_exception(self._protocol.handshake_exc)
            return
        self._was_open = True
        self.keepalive_due_from = time.monotonic()
        self._stats.connected += 1
        self._stats.connected_peak = max(self._stats.connected_peak, self._stats.connected)
        if not self.opened.done():
            self.opened.set_result(None)

    def _on_frame(self, frame: Frame) -> None:
        if frame.opcode is Opcode.PONG:
            self.keepalive_sent_at = None
            self.keepalive_due_from = time.monotonic()
            return
        if frame.opcode not in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
            return
        self._fragments.append(bytes(frame.data))
        if not frame.fin:
            return
        message = b"".join(self._fragments)
        self._fragments.clear()
        try:
            published_s = float(json.loads(message)["ts"])
        except (ValueError, KeyError, TypeError):
            self._stats.events_invalid += 1
            return
        self._stats.record_latency(max(0.0, time.time() - published_s))

    def _flush(self) -> None:
        transport = self._transport
        if transport is None:
            return
        for data in self._protocol.data_to_send():
            if data:
                transport.write(data)
            elif transport.can_write_eof():
                transport.write_eof()
        if self._protocol.close_expected() and self._close_timer is None:
            loop = asyncio.get_running_loop()
            self._close_timer = loop.call_later(CLOSE_TIMEOUT_S, transport.abort)


def _retrieve_exception(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()
