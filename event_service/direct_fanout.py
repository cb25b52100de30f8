"""The direct fan-out inside uvicorn: each connection offered to the hub as a frame sink.

With ``FANOUT=direct`` uvicorn runs :class:`DirectFanoutProtocol`: its websockets-sansio
protocol (with the guards of :mod:`event_service.uvicorn_guards`) that puts itself in the
ASGI scope as a :class:`~event_service.direct_subscriber.FrameSink`. The hub then writes
each event's frame, encoded once, straight to the connection's transport, without a task or
an ASGI message per delivery. Everything else (the handshake, reading, pings, close frames,
flow control) stays uvicorn's.

Why no frame can be interleaved with another: uvicorn writes each of its own frames (pongs,
keepalive pings, close frames) with one ``transport.write`` of whole frames, synchronously
in a callback, and so does the hub; writes to one transport keep their order and are never
split. Before each write the sink checks, as ``websockets.broadcast`` does, that the
connection may still carry data (open, no close frame sent or received, not lost), and
writes first anything websockets has queued, so no frame of ours overtakes one of its own or
follows its close frame. A connection that negotiated an extension (permessage-deflate) gets
its own frames, encoded by its websockets protocol in the order they are written.

What this relies on in uvicorn, verified for :data:`~event_service.uvicorn_guards.VERIFIED_UVICORN`
(pinned in pyproject.toml; tests/event_service/test_direct_fanout.py checks each point):

- ``WebSocketsSansIOProtocol.handle_connect`` sets ``self.scope`` (with an ``extensions``
  dict) and creates the ASGI task without running it, so the scope can still gain a key;
- its attributes ``conn`` (websockets' ``ServerProtocol``), ``transport``, ``close_sent``,
  ``disconnected`` and ``writable`` (an ``asyncio.Event``, set while the transport takes
  writes; ``pause_writing`` clears it, ``resume_writing`` and ``connection_lost`` set it);
- uvicorn sends every frame of its own as ``transport.write(b"".join(conn.data_to_send()))``
  in the same callback that made it, and never sends fragmented messages;
- ``request`` and ``response`` (the handshake's, with their headers: about 3.5 KiB) are read
  only until the app's ``websocket.accept`` is sent, so they are dropped then, and the
  request's headers emptied (websockets' ``ServerProtocol.parse`` generator still holds the
  request; the ASGI scope has its own copy of the headers);
- ``queue`` (an ``asyncio.Queue`` of ASGI receive events) is used only through
  ``put_nowait``, ``get`` and ``empty``, and ``writable`` only through ``set``, ``clear``,
  ``wait`` and ``is_set``, from the event loop: both are replaced by lean equivalents
  (:class:`ReceiveQueue`, :class:`Flag`). Their asyncio versions hold five deques between
  them (about 3.8 KiB a connection) for a queue that holds one message or two.

On another uvicorn release, or another ``WS_IMPL``, :func:`fanout_in_effect` falls back to
``asgi`` (the service logs a warning at start-up).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, Generic, Literal, TypeVar

from uvicorn._types import ASGIReceiveEvent, ASGISendEvent
from websockets.http11 import Request
from websockets.protocol import State

from event_service.direct_subscriber import FrameSink, Write
from event_service.events import Event
from event_service.uvicorn_guards import VERIFIED_UVICORN, GuardedWebSocketsSansIO
from event_service.uvicorn_guards import is_verified_uvicorn as _is_verified

__all__ = [
    "FRAME_SINK_KEY",
    "DirectFanoutProtocol",
    "Flag",
    "ReceiveQueue",
    "fanout_in_effect",
    "frame_sink_of",
]

FRAME_SINK_KEY = "event_service.frame_sink"

Fanout = Literal["asgi", "direct"]
T = TypeVar("T")
_OPEN = State.OPEN
_WRITTEN, _PAUSED, _CLOSED = Write.WRITTEN, Write.PAUSED, Write.CLOSED


def fanout_in_effect(
    requested: str, ws_impl: str, uvicorn_version: str
) -> tuple[Fanout, str | None]:
    """The fan-out the service will run, and why it is not the one requested (or None)."""
    if requested == "asgi":
        return "asgi", None
    if ws_impl != "websockets-sansio":
        return "asgi", f"FANOUT=direct needs WS_IMPL=websockets-sansio, not {ws_impl}"
    if not _is_verified(uvicorn_version):
        low, high = (".".join(map(str, v)) for v in VERIFIED_UVICORN)
        return "asgi", (
            f"FANOUT=direct relies on uvicorn internals verified with >={low}, <{high} only, "
            f"not uvicorn {uvicorn_version}"
        )
    return "direct", None


def frame_sink_of(scope: Any) -> FrameSink | None:
    """The connection's frame sink, if the server offers one (``FANOUT=direct``)."""
    extensions = scope.get("extensions") or {}
    sink: FrameSink | None = extensions.get(FRAME_SINK_KEY)
    return sink


class ReceiveQueue(Generic[T]):
    """What uvicorn uses of an ``asyncio.Queue``, unbounded as uvicorn's, without its deques.

    uvicorn stops reading the socket while a message waits for the app, so it holds one or
    two items; waiters are made only while the app waits for one.
    """

    __slots__ = ("_items", "_waiters")

    def __init__(self) -> None:
        self._items: list[T] = []
        self._waiters: list[asyncio.Future[None]] = []

    def empty(self) -> bool:
        """Whether no item waits."""
        return not self._items

    def put_nowait(self, item: T) -> None:
        """Add ``item`` and wake a waiting :meth:`get`."""
        self._items.append(item)
        self._wake_one()

    async def get(self) -> T:
        """The oldest item, waiting for one if needed."""
        while not self._items:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                self._waiters.remove(waiter)
                if self._items:  # woken but cancelled: another waiter takes the item
                    self._wake_one()
        return self._items.pop(0)

    def _wake_one(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
                return


class Flag:
    """What uvicorn uses of an ``asyncio.Event`` (``set``, ``clear``, ``wait``, ``is_set``)."""

    __slots__ = ("_value", "_waiters")

    def __init__(self) -> None:
        self._value = False
        self._waiters: list[asyncio.Future[None]] = []

    def is_set(self) -> bool:
        """Whether the flag is set."""
        return self._value

    def set(self) -> None:
        """Set the flag and wake every waiter."""
        self._value = True
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        """Unset the flag."""
        self._value = False

    async def wait(self) -> bool:
        """Return ``True`` once the flag is set."""
        if self._value:
            return True
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            self._waiters.remove(waiter)
        return True


class DirectFanoutProtocol(GuardedWebSocketsSansIO):
    """uvicorn's websockets-sansio protocol, offered to the hub as a :class:`FrameSink`."""

    _on_writable: Callable[[], object] | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = ReceiveQueue[ASGIReceiveEvent]()  # type: ignore[assignment]
        writable_now = self.writable.is_set()
        self.writable = Flag()  # type: ignore[assignment]
        if writable_now:
            self.writable.set()

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)  # set only when the handshake goes on (101)
        if scope is not None:
            scope["extensions"][FRAME_SINK_KEY] = self

    async def send(self, message: ASGISendEvent) -> None:
        await super().send(message)
        if message["type"] == "websocket.accept" and self.handshake_complete:
            # Nothing reads them again. websockets' parser generator keeps the request as a
            # local for the connection's life: emptying its headers frees them (about 2 KiB).
            request: Request | None = self.request
            if request is not None:
                request.headers.clear()
            self.request = self.response = None  # type: ignore[assignment]

    def write_frames(self, frames: bytes, events: Sequence[Event]) -> Write:
        """Write ``events`` in one write, now, unless the transport is paused or closed."""
        # Once per delivery: module constants, not enum attributes (slow on Python 3.11).
        conn = self.conn
        if self.close_sent or self.disconnected or conn.state is not _OPEN:
            return _CLOSED
        transport = self.transport
        if transport.is_closing():
            return _CLOSED
        if not self.writable.is_set():
            return _PAUSED
        if conn.extensions:  # its own frames, through its compression context, in order
            for event in events:
                conn.send_text(event.text.encode())
            transport.write(b"".join(conn.data_to_send()))
            return _WRITTEN
        if conn.writes:  # never seen: uvicorn writes what it queues at once
            transport.write(b"".join(conn.data_to_send()))
        transport.write(frames)
        return _WRITTEN

    def call_when_writable(self, callback: Callable[[], object]) -> None:
        """Call ``callback`` once, when the transport takes writes again or is lost."""
        self._on_writable = callback

    def resume_writing(self) -> None:
        super().resume_writing()
        self._writable_again()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._writable_again()

    def _writable_again(self) -> None:
        callback, self._on_writable = self._on_writable, None
        if callback is not None:
            callback()
