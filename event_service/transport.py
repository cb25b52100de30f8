"""A session's own TCP transport, found below ASGI, and what the kernel holds for it.

ASGI gives an app no handle on its connection, but the slow-consumer budget has to count the
bytes waiting in uvicorn's transport buffer and in the kernel's send queue, and a session that
cannot be closed politely has to be aborted. :class:`TransportTap` is a pure ASGI middleware
that finds the transport and puts it in the connection's scope (:func:`tap_transport`, which
the direct fan-out's sessions, served before FastAPI's stack, call themselves).

What it relies on (checked by the tests for every ``WS_IMPL``): uvicorn calls the app with
``send`` bound to its protocol object, and that object has the asyncio ``transport``
attribute. With another server, or a middleware in front that wraps ``send``, no transport is
found: the budget then counts our own queue only, and nothing is aborted.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import fcntl
import socket
import struct
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = [
    "TransportTap",
    "abort",
    "cap_send_buffer",
    "tap_transport",
    "transport_of",
    "unacked_bytes",
    "unsent_bytes",
]

SCOPE_KEY = "event_service.transport"
# linux/sockios.h: SIOCOUTQ counts the send queue's bytes not yet acknowledged by the peer
# (sent or not), SIOCOUTQNSD those not sent yet.
SIOCOUTQ = 0x5411
SIOCOUTQNSD = 0x894B


class TransportTap:
    """ASGI middleware: for WebSocket connections, stores uvicorn's transport in the scope."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            tap_transport(scope, send)
        await self.app(scope, receive, send)


def tap_transport(scope: Scope, send: Send) -> None:
    """Store the transport of the server protocol ``send`` is bound to in ``scope``, if any."""
    protocol = getattr(send, "__self__", None)
    transport = getattr(protocol, "transport", None)
    # uvloop's transports do not derive from asyncio.Transport: look at what it does.
    if hasattr(transport, "get_write_buffer_size") and hasattr(transport, "abort"):
        scope.setdefault("extensions", {})[SCOPE_KEY] = transport


def transport_of(scope: Any) -> asyncio.Transport | None:
    """The transport :class:`TransportTap` found for this connection, if any."""
    extensions = scope.get("extensions") or {}
    transport: asyncio.Transport | None = extensions.get(SCOPE_KEY)
    return transport


def _kernel_queue_bytes(transport: asyncio.Transport, request: int) -> int:
    sock = transport.get_extra_info("socket")
    if sock is None or sock.fileno() < 0:
        return 0
    buf = array.array("i", [0])
    try:
        fcntl.ioctl(sock.fileno(), request, buf)
    except OSError:
        return 0
    return buf[0]


def unsent_bytes(transport: asyncio.Transport) -> int:
    """Bytes written but not sent yet: the transport's buffer plus the kernel's unsent queue."""
    return transport.get_write_buffer_size() + _kernel_queue_bytes(transport, SIOCOUTQNSD)


def unacked_bytes(transport: asyncio.Transport) -> int:
    """Bytes in the kernel's send queue that the peer has not acknowledged (sent or not)."""
    return _kernel_queue_bytes(transport, SIOCOUTQ)


def cap_send_buffer(transport: asyncio.Transport, size_bytes: int) -> None:
    """Set the socket's ``SO_SNDBUF`` (Linux doubles it, and stops autotuning it).

    Left alone, Linux grows the send buffer of a socket whose peer stopped reading to
    ``tcp_wmem``'s maximum (4 MiB by default): kernel memory no budget of ours would see.
    """
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.fileno() >= 0:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size_bytes)


def abort(transport: asyncio.Transport) -> None:
    """Drop the connection at once with a RST, so that no kernel buffer outlives it.

    A plain close of a socket whose peer stopped reading leaves an orphan in FIN_WAIT1
    holding its whole send queue for minutes; ``SO_LINGER`` 0 makes close() free it now.
    """
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.fileno() >= 0:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
