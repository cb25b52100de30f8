"""What the service adds below ASGI, inside uvicorn: the only module that uses its internals.

- :func:`guarded_http_protocol`: uvicorn's h11 or httptools protocol with a request deadline
  (``HANDSHAKE_TIMEOUT``: line, headers and body within that many seconds, or 408 and close)
  and the head limits of :mod:`event_service.request_head` (414/431 and close). uvicorn has
  neither: ``timeout_keep_alive`` only runs between requests, httptools has no header limit,
  and a head that websockets refuses is never answered (below).
- :func:`ws_protocol`: for ``websockets-sansio``, a subclass that writes the answer websockets
  queued when it refuses a handshake. websockets >= 17 answers an oversized line with 414/431
  (python-websockets/websockets#1732); uvicorn 0.54 writes what websockets queued only after a
  request event, so that answer never leaves and the connection stays open. The same subclass
  ends a keepalive timeout as websockets' own server does: the 1011 close frame, then a FIN,
  then it reads and drops what the client still sends until the client's EOF (or aborts after
  uvicorn's ``close_timeout``); the app is told at once. uvicorn 0.54 closes the socket at
  once, over the client messages a non-reading app left in its receive queue: Linux answers
  that with a RST, and a client that writes before it has read the close frame gets
  ECONNRESET and loses the frame.
- :class:`GuardedServer`: ``uvicorn.Server`` with the handles a bounded shutdown needs (stop
  accepting, every connection's transport) and a clean exit status after a signal.

What this relies on in uvicorn (verified for :data:`VERIFIED_UVICORN`, checked by
tests/event_service/test_uvicorn_guards.py): the protocol methods ``connection_made``,
``data_received``,
``connection_lost``, ``handle_websocket_upgrade``, ``on_response_complete``,
``_unset_keepalive_if_required`` and the attributes ``transport``, ``loop``, ``cycle`` of
``H11Protocol`` and ``HttpToolsProtocol``; ``conn`` (h11) and ``on_message_complete``
(httptools); ``conn``, ``handshake_initiated``, ``handshake_complete``, ``send``,
``keepalive_timeout`` (the pong timer's callback), ``pong_timer``, ``pending_ping_payload``,
``close_sent``, ``read_paused``, ``queue`` (``put_nowait``), ``close_timer`` (cancelled by
``connection_lost``; while it is set, the end of the ASGI task leaves the transport open) and
``close_timeout`` of ``WebSocketsSansIOProtocol``; and
``Server.servers``, ``Server.server_state.connections`` (protocols with a ``transport``),
``Server._captured_signals``.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import logging
from collections.abc import Iterator
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from event_service.request_head import HEAD_LIMITS, HeadLimits, HeadScanner, HeadTooLarge
from event_service.transport import abort

__all__ = [
    "VERIFIED_UVICORN",
    "GuardedServer",
    "GuardedWebSocketsSansIO",
    "guarded_http_protocol",
    "is_verified_uvicorn",
    "warn_if_unverified_uvicorn",
    "ws_protocol",
]

# The uvicorn releases this module was tested with: >= 0.54, < 0.55 (pyproject pins the same).
VERIFIED_UVICORN = ((0, 54), (0, 55))
# How long a refused connection keeps reading (and dropping) what the client still sends, so
# that closing it does not answer with a RST that could destroy the reply before it is read.
LINGER_S = 1.0
REQUEST_TIMEOUT = 408
KEEPALIVE_REASON = "keepalive ping timeout"  # uvicorn's, with close code 1011

logger = logging.getLogger("event_service.guards")


def is_verified_uvicorn(version: str) -> bool:
    """Whether uvicorn ``version`` (``"0.54.0"``) is in :data:`VERIFIED_UVICORN`."""
    parts = tuple(int(part) for part in version.split(".")[:2] if part.isdigit())
    low, high = VERIFIED_UVICORN
    return len(parts) == 2 and low <= parts < high


def warn_if_unverified_uvicorn() -> None:
    """Log a warning when the running uvicorn is outside :data:`VERIFIED_UVICORN`."""
    if not is_verified_uvicorn(uvicorn.__version__):
        low, high = (".".join(map(str, v)) for v in VERIFIED_UVICORN)
        logger.warning(
            "uvicorn %s is outside the range the guards were verified with (>=%s, <%s)",
            uvicorn.__version__,
            low,
            high,
        )


def plain_response(status: int, reason: str) -> bytes:
    """A complete ``text/plain`` HTTP/1.1 response that announces ``Connection: close``."""
    body = f"{reason}\n".encode()
    phrase = http.HTTPStatus(status).phrase
    return (
        f"HTTP/1.1 {status} {phrase}\r\ncontent-type: text/plain; charset=utf-8\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode() + body


class _RequestGuard:
    """Mixin for uvicorn's HTTP protocols: a deadline per request and limits on its head.

    The deadline starts when the connection is made, and again at the first byte of each
    later request on a keep-alive connection; it ends once the request is received (or the
    connection is upgraded to a WebSocket). Idle time between requests is uvicorn's
    ``timeout_keep_alive``.
    """

    # Set on the class by guarded_http_protocol().
    request_timeout_s: float = 10.0
    head_limits: HeadLimits = HEAD_LIMITS

    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop
    cycle: Any

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._scanner: HeadScanner | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._linger: asyncio.TimerHandle | None = None
        self._between_requests = False
        self._refused = False
        super().connection_made(transport)  # type: ignore[misc]
        self._start_request()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_deadline()
        if self._linger is not None:
            self._linger.cancel()
        super().connection_lost(exc)  # type: ignore[misc]

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # answered already: drop what the client still sends
        if self._between_requests:
            self._start_request()
        if self._scanner is not None:
            try:
                if self._scanner.feed(data):
                    self._scanner = None
            except HeadTooLarge as exc:
                self._refuse(exc.status, str(exc))
                return
        super().data_received(data)  # type: ignore[misc]
        if self._deadline is not None and self._scanner is None and self._request_received():
            self._stop_deadline()

    def handle_websocket_upgrade(self, *args: Any) -> None:
        self._stop_deadline()
        super().handle_websocket_upgrade(*args)  # type: ignore[misc]

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        # A pipelined request may have started from what the parser had buffered.
        self._between_requests = self.cycle is None or self.cycle.response_complete

    def _request_received(self) -> bool:
        raise NotImplementedError

    def _start_request(self) -> None:
        self._between_requests = False
        self._scanner = HeadScanner(self.head_limits)
        self._stop_deadline()
        self._deadline = self.loop.call_later(self.request_timeout_s, self._request_timed_out)

    def _stop_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _request_timed_out(self) -> None:
        self._deadline = None
        if self._scanner is not None:  # still in the head: nothing was answered yet
            self._refuse(
                REQUEST_TIMEOUT, f"request not received within {self.request_timeout_s:g} s"
            )
            return
        # The body is late and the app may be reading it: close, the app sees a disconnect.
        logger.info("request body timed out client=%s", _peer(self.transport))
        self.transport.close()

    def _refuse(self, status: int, reason: str) -> None:
        self._stop_deadline()
        self._scanner = None
        self._refused = True
        self._unset_keepalive_if_required()  # type: ignore[attr-defined]
        logger.info(
            "request refused status=%d reason=%r client=%s", status, reason, _peer(self.transport)
        )
        if self.transport.is_closing():
            return
        self.transport.write(plain_response(status, reason))
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self._linger = self.loop.call_later(LINGER_S, self.transport.close)


class _GuardedH11(_RequestGuard, H11Protocol):
    def _request_received(self) -> bool:
        return self.conn.their_state not in (h11.IDLE, h11.SEND_BODY)


class _GuardedHttpTools(_RequestGuard, HttpToolsProtocol):
    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._stop_deadline()

    def _request_received(self) -> bool:
        return False  # on_message_complete() ends the deadline


_HTTP_PROTOCOLS: dict[str, type[_RequestGuard]] = {
    "h11": _GuardedH11,
    "httptools": _GuardedHttpTools,
}


def guarded_http_protocol(
    impl: str, *, request_timeout_s: float, limits: HeadLimits = HEAD_LIMITS
) -> type[asyncio.Protocol]:
    """uvicorn's ``impl`` (``h11`` or ``httptools``) protocol with the deadline and limits."""
    base = _HTTP_PROTOCOLS[impl]
    attributes = {"request_timeout_s": request_timeout_s, "head_limits": limits}
    protocol: type[asyncio.Protocol] = type(f"Guarded{base.__name__}", (base,), attributes)
    return protocol


class GuardedWebSocketsSansIO(WebSocketsSansIOProtocol):
    """uvicorn's websockets-sansio protocol that answers a handshake websockets refused, and
    ends a keepalive timeout with a FIN after its close frame rather than a RST."""

    # Set once the keepalive timed out: the connection is being failed, the app has lost it.
    keepalive_failed = False

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        refused = self.conn.handshake_exc is not None and not self.handshake_initiated
        if refused and not self.transport.is_closing():
            # websockets queued its 414/431 (or, for a request it cannot parse, only EOF).
            reply = b"".join(self.conn.data_to_send())
            self.transport.write(reply or plain_response(400, "invalid WebSocket handshake"))
            self.transport.close()

    def keepalive_timeout(self) -> None:
        """No pong in time: close with 1011, half-close, drain until the client's EOF.

        What websockets' own server does after failing a connection (its sans-I/O protocol
        queues EOF after the close frame, then discards what it reads until the peer's EOF).
        The app is told at once, as uvicorn tells it after its own close, so the session
        ends now; of what the client still sends, websockets passes nothing on to it.
        """
        self.pong_timer = None
        self.pending_ping_payload = None
        if self.close_sent or self.transport.is_closing():
            return
        self.keepalive_failed = True
        self.close_sent = True
        self.queue.put_nowait(
            {"type": "websocket.disconnect", "code": 1011, "reason": KEEPALIVE_REASON}
        )
        self.conn.fail(1011, KEEPALIVE_REASON)
        for data in self.conn.data_to_send():
            if data:
                self.transport.write(data)
            elif self.transport.can_write_eof():
                self.transport.write_eof()  # the FIN goes after the frame
            else:  # TLS cannot half-close: as uvicorn does
                self.transport.close()
                return
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()
        # uvicorn's connection_lost cancels it; the client's EOF ends the drain first.
        self.close_timer = self.loop.call_later(self.close_timeout, self._drain_timed_out)

    def _drain_timed_out(self) -> None:
        self.close_timer = None
        abort(self.transport)

    async def send(self, message: Any) -> None:
        if self.keepalive_failed:
            # The close frame is out and the drain may still run: the app sees the client
            # gone, as after connection_lost (uvicorn raises RuntimeError until then).
            raise ClientDisconnected()
        await super().send(message)
        if message["type"] == "websocket.http.response.body" and not message.get("more_body"):
            # A denial (the session cap's 503, a 401 or 403) answers the handshake; uvicorn 0.54
            # still logs "ASGI callable returned without completing handshake." at ERROR for
            # each one (Kludex/uvicorn#3138), a flood at the cap.
            self.handshake_complete = True


def ws_protocol(ws_impl: str) -> str | type[asyncio.Protocol]:
    """What to pass as uvicorn's ``ws`` setting for ``WS_IMPL``."""
    return GuardedWebSocketsSansIO if ws_impl == "websockets-sansio" else ws_impl


class GuardedServer(uvicorn.Server):
    """``uvicorn.Server`` with the handles of a bounded shutdown and a clean exit status."""

    def stop_accepting(self) -> None:
        """Close the listening sockets (uvicorn's shutdown does it again, harmlessly)."""
        for server in getattr(self, "servers", []):
            server.close()

    def connection_transports(self) -> list[asyncio.Transport]:
        """The transport of every open connection: HTTP, upgrading, and WebSocket."""
        # Not isinstance(t, asyncio.Transport): uvloop's transports do not derive from it.
        transports = (getattr(c, "transport", None) for c in list(self.server_state.connections))
        return [t for t in transports if t is not None]

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """As uvicorn's, without re-raising the signal once stopped: exit status 0, not -15.

        uvicorn re-raises a caught SIGTERM or SIGINT after its shutdown, so that the process
        dies by it (SIGINT becomes a KeyboardInterrupt traceback). A stop we completed on
        purpose is not a crash.
        """
        with super().capture_signals():
            try:
                yield
            finally:
                self._captured_signals.clear()


def _peer(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "-"
