"""The hub: fans each event out to the subscribers of its type, through bounded queues.

Each subscriber has a queue of at most ``queue_size`` events. When it is full the event is
dropped for that subscriber and counted; nothing of ours grows without bound. The only
unbounded buffers left are the kernel's, which is what the lab is about.
"""

from __future__ import annotations

import asyncio

from event_service.counters import Counters
from event_service.events import Event


class Subscriber:
    """One WebSocket session's subscription: the types it wants and its bounded queue."""

    __slots__ = ("queue", "types")

    def __init__(self, types: frozenset[str] | None, queue_size: int) -> None:
        self.types = types
        # None in the queue means "stop": the hub is shutting down.
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue(maxsize=queue_size)

    def wants(self, event_type: str) -> bool:
        """Whether this subscriber asked for events of ``event_type``."""
        return self.types is None or event_type in self.types

    def stop(self) -> None:
        """Ask the session to close; makes room for the stop mark if the queue is full."""
        if self.queue.full():
            self.queue.get_nowait()
        self.queue.put_nowait(None)


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
        """Queue ``event`` for every subscriber of its type; return how many got it."""
        self._counters.events_received += 1
        queued = dropped = 0
        for subscriber in self._subscribers:
            if not subscriber.wants(event.type):
                continue
            try:
                subscriber.queue.put_nowait(event)
            except asyncio.QueueFull:
                dropped += 1
            else:
                queued += 1
        self._counters.events_dropped += dropped
        return queued

    def stop_all(self) -> None:
        """Ask every session to close (server shutdown)."""
        self._stopping = True
        for subscriber in self._subscribers:
            subscriber.stop()
