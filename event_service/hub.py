"""The hub: fans each event out to the subscribers of its type, through bounded buffers.

Each subscriber has a buffer of at most ``queue_size`` events. When it is full the event is
dropped for that subscriber and counted; nothing of ours grows without bound. The only
unbounded buffers left are the kernel's, which is what the lab is about.
"""

from __future__ import annotations

import asyncio
from collections import deque

from event_service.counters import Counters
from event_service.events import Event


class Subscriber:
    """One WebSocket session's subscription: the types it wants and its bounded buffer.

    One writer reads it with :meth:`next`. A plain deque plus a single waiter future is
    enough for one reader, and cheaper than an ``asyncio.Queue`` on the fan-out path: the
    writer creates a future only when the buffer is empty, and :meth:`offer` resolves it.
    """

    __slots__ = ("_events", "_waiter", "types")

    def __init__(self, types: frozenset[str] | None, queue_size: int) -> None:
        self.types = types
        # None in the buffer means "stop": the hub is shutting down. maxlen is the bound;
        # offer() refuses when full, while stop() appends and so evicts the oldest event.
        self._events: deque[Event | None] = deque(maxlen=queue_size)
        self._waiter: asyncio.Future[None] | None = None

    def __len__(self) -> int:
        return len(self._events)

    @property
    def is_waiting(self) -> bool:
        """Whether a reader is parked in :meth:`next` on an empty buffer."""
        return self._waiter is not None

    def wants(self, event_type: str) -> bool:
        """Whether this subscriber asked for events of ``event_type``."""
        return self.types is None or event_type in self.types

    def offer(self, event: Event) -> bool:
        """Buffer ``event`` and wake the reader; ``False`` (dropped) if the buffer is full."""
        events = self._events
        if len(events) == events.maxlen:
            return False
        events.append(event)
        if self._waiter is not None:
            self._wake()
        return True

    def stop(self) -> None:
        """Ask the session to close; the stop mark evicts the oldest event if the buffer is full."""
        self._events.append(None)
        if self._waiter is not None:
            self._wake()

    async def next(self) -> Event | None:
        """The oldest buffered event, waiting for one if needed; ``None`` means stop."""
        events = self._events
        while not events:
            if self._waiter is not None:
                raise RuntimeError("Subscriber.next() already has a reader")
            waiter = asyncio.get_running_loop().create_future()
            self._waiter = waiter
            try:
                await waiter
            finally:
                # Woken, or cancelled while parked: either way no future is left behind.
                self._waiter = None
        return events.popleft()

    def _wake(self) -> None:
        waiter = self._waiter
        self._waiter = None
        # Done already if the reader was cancelled and has not run its clean-up yet.
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class Hub:
    """The registry of subscribers and the fan-out of events to them."""

    def __init__(self, counters: Counters, queue_size: int) -> None:
        self._counters = counters
        self._queue_size = queue_size
        self._subscribers: set[Subscriber] = set()
        self._stopping = False
        self._empty = asyncio.Event()
        self._empty.set()

    def __len__(self) -> int:
        return len(self._subscribers)

    @property
    def is_stopping(self) -> bool:
        """Whether :meth:`stop_all` was called; new subscribers are stopped at once."""
        return self._stopping

    def subscribe(self, types: frozenset[str] | None) -> Subscriber:
        """Register a subscriber for ``types`` (``None``: every type)."""
        subscriber = Subscriber(types, self._queue_size)
        self._subscribers.add(subscriber)
        self._empty.clear()
        self._counters.connections_opened += 1
        if self._stopping:
            subscriber.stop()
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        """Remove a subscriber; safe to call twice."""
        if subscriber in self._subscribers:
            self._subscribers.remove(subscriber)
            self._counters.connections_closed += 1
            if not self._subscribers:
                self._empty.set()

    async def wait_empty(self) -> None:
        """Return once no subscriber is registered."""
        await self._empty.wait()

    def publish(self, event: Event) -> int:
        """Buffer ``event`` for every subscriber of its type; return how many got it."""
        self._counters.events_received += 1
        queued = dropped = 0
        for subscriber in self._subscribers:
            if not subscriber.wants(event.type):
                continue
            if subscriber.offer(event):
                queued += 1
            else:
                dropped += 1
        self._counters.events_dropped += dropped
        return queued

    def stop_all(self) -> None:
        """Ask every session to close (server shutdown)."""
        self._stopping = True
        for subscriber in self._subscribers:
            subscriber.stop()
