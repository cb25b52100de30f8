"""The direct fan-out's subscriber: its events are written to its connection by the hub.

With ``FANOUT=direct`` the server offers each connection as a :class:`FrameSink` (see
:mod:`event_service.direct_fanout`, the only code that knows how uvicorn does it). The hub
encodes each event's frame once (:func:`text_frame`) and hands every subscriber its due
frames in one batch; :class:`DirectSubscriber` writes the batch at once, or keeps it in a
bounded backlog while the transport is paused. No task wakes up per event.
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from collections.abc import Callable, Sequence
from typing import Literal, Protocol

from websockets.frames import Frame, Opcode

from event_service.counters import Counters
from event_service.events import Event

__all__ = ["DirectSubscriber", "End", "FrameSink", "Write", "text_frame"]


class Write(enum.Enum):
    """What became of a write a :class:`FrameSink` was asked for."""

    WRITTEN = "written"
    PAUSED = "paused"  # the transport's buffer is past its high-water mark: nothing written
    CLOSED = "closed"  # the connection is closing or gone: nothing will be written again


class FrameSink(Protocol):
    """One connection, as the direct fan-out writes to it (:mod:`event_service.direct_fanout`)."""

    def write_frames(self, frames: bytes, events: Sequence[Event]) -> Write:
        """Write ``events`` in one write, now, unless the transport is paused or closed.

        ``frames`` are their frames as encoded once for every connection; a connection that
        negotiated an extension (compression) encodes ``events`` itself instead.
        """

    def call_when_writable(self, callback: Callable[[], object]) -> None:
        """Call ``callback`` once, when the transport takes writes again or is lost."""


# Compared once per delivery: module constants, not enum attributes (slow on Python 3.11).
_WRITTEN, _CLOSED = Write.WRITTEN, Write.CLOSED


def text_frame(text: str) -> bytes:
    """A server's unmasked, unfragmented text frame of ``text``: what every subscriber gets."""
    return Frame(Opcode.TEXT, text.encode()).serialize(mask=False)


#: Why a direct subscriber's session ends: the hub stopped it, or its connection was lost.
End = Literal["stopped", "lost"]


class DirectSubscriber:
    """A subscription whose events the hub writes to the connection itself (``FANOUT=direct``).

    :meth:`deliver` writes a batch at once. While the transport is paused (the client reads
    slower than we write) batches wait in a backlog of at most ``queue_size`` batches, inside
    the same budget as a :class:`Subscriber`'s buffer, and go out in order when the transport
    takes writes again. The session's writer only waits for :meth:`ended`; nothing wakes it
    per event.

    A lost connection is noticed the way an ASGI writer notices it: at the next write, or at
    once while a backlog waits for the transport (a writer blocked in ``send``).
    """

    __slots__ = (
        "_backlog",
        "_backlog_bytes",
        "_budget_bytes",
        "_counters",
        "_end",
        "_on_slow",
        "_queue_size",
        "_sink",
        "_stopping",
        "_waiter",
        "is_slow",
        "types",
        "unsent",
    )

    def __init__(
        self,
        types: frozenset[str] | None,
        sink: FrameSink,
        counters: Counters,
        queue_size: int,
        budget_bytes: int = 1 << 20,
    ) -> None:
        self.types = types
        self._sink = sink
        self._counters = counters
        self._queue_size = queue_size
        self._budget_bytes = budget_bytes
        # Made when the transport first pauses, dropped once drained: an idle subscriber has
        # none. None in it is the stop mark.
        self._backlog: deque[tuple[bytes, Sequence[Event]] | None] | None = None
        self._backlog_bytes = 0
        self._stopping = False
        self._end: End | None = None
        self._waiter: asyncio.Future[None] | None = None
        #: Bytes written that are not sent yet (set by the session; 0 if unknown).
        self.unsent: Callable[[], int] = _nothing_unsent
        self._on_slow: Callable[[], object] | None = None
        #: Whether the subscriber fell behind its budget; it gets no more events.
        self.is_slow = False

    def __len__(self) -> int:
        return len(self._backlog) if self._backlog is not None else 0

    @property
    def budget_bytes(self) -> int:
        """Unsent bytes past which the subscriber counts as slow."""
        return self._budget_bytes

    def on_slow(self, callback: Callable[[], object]) -> None:
        """Call ``callback`` once, when the subscriber is marked slow."""
        self._on_slow = callback

    def wants(self, event_type: str) -> bool:
        """Whether this subscriber asked for events of ``event_type``."""
        return self.types is None or event_type in self.types

    def deliver(self, frames: bytes, events: Sequence[Event]) -> None:
        """Write ``events`` (``frames``) now, or keep them while the transport is paused.

        Past the budget the subscriber is marked slow instead (:attr:`is_slow`).
        """
        if self._stopping or self.is_slow:
            return
        if self._backlog is None:
            result = self._sink.write_frames(frames, events)
            if result is _WRITTEN:
                self._counters.events_delivered += len(events)
                return
            if result is _CLOSED:
                self._finish("lost")
                return
            self._backlog = deque(maxlen=self._queue_size)
            self._sink.call_when_writable(self._write_backlog)
        self._keep(frames, events)

    def stop(self) -> None:
        """Ask the session to close, after what its backlog still holds."""
        if self._stopping:
            return
        self._stopping = True
        backlog = self._backlog
        if not backlog:
            self._finish("stopped")
            return
        if len(backlog) == backlog.maxlen:  # the stop mark takes the oldest batch's place
            evicted = backlog.popleft()
            if evicted is not None:
                self._backlog_bytes -= len(evicted[0])
        backlog.append(None)

    def detach(self) -> None:
        """The session is over: keep nothing more for it, write nothing more."""
        self._stopping = True
        self._drop_backlog()

    async def ended(self) -> End:
        """Wait until the session should end: ``stopped`` (close it) or ``lost``."""
        while self._end is None:
            if self._waiter is not None:
                raise RuntimeError("DirectSubscriber.ended() already has a waiter")
            waiter = asyncio.get_running_loop().create_future()
            self._waiter = waiter
            try:
                await waiter
            finally:
                self._waiter = None
        return self._end

    def _keep(self, frames: bytes, events: Sequence[Event]) -> None:
        backlog = self._backlog
        assert backlog is not None
        queued_bytes = self._backlog_bytes + len(frames)
        if len(backlog) == backlog.maxlen or queued_bytes + self.unsent() > self._budget_bytes:
            self._mark_slow()
            return
        backlog.append((frames, events))
        self._backlog_bytes = queued_bytes

    def _write_backlog(self) -> None:
        """The transport takes writes again (or was lost): write the backlog, in order."""
        backlog = self._backlog
        while backlog:
            batch = backlog[0]
            if batch is None:  # the stop mark: everything before it is written
                self._drop_backlog()
                self._finish("stopped")
                return
            frames, events = batch
            result = self._sink.write_frames(frames, events)
            if result is Write.PAUSED:
                self._sink.call_when_writable(self._write_backlog)
                return
            if result is Write.CLOSED:
                self._drop_backlog()
                self._finish("lost")
                return
            backlog.popleft()
            self._backlog_bytes -= len(frames)
            self._counters.events_delivered += len(events)
        self._drop_backlog()

    def _drop_backlog(self) -> None:
        self._backlog = None
        self._backlog_bytes = 0

    def _mark_slow(self) -> None:
        self.is_slow = True
        self._drop_backlog()
        callback, self._on_slow = self._on_slow, None
        if callback is not None:
            callback()

    def _finish(self, end: End) -> None:
        self._stopping = True
        if self._end is None:
            self._end = end
        waiter = self._waiter
        self._waiter = None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


def _nothing_unsent() -> int:
    return 0
