"""The hub: fans each event out to the subscribers of its type, through bounded buffers.

Two ways to hand an event to a session, chosen per session by what the server offers
(``FANOUT``, see :mod:`event_service.direct_fanout`):

- :class:`Subscriber` (``asgi``): the event goes into the subscriber's buffer and its
  session's writer task sends it through ASGI, one ``send`` per event.
- :class:`DirectSubscriber` (``direct``): the hub encodes each event's frame once, and at the
  end of the loop iteration writes every subscriber's due frames to its connection in one
  write: no task wakes up, no ASGI message per event. A batch is written at least
  ``FANOUT_WINDOW`` after the previous one: events that come faster than that, or pile up
  while a batch is written, go out together.

Each subscriber has a buffer of at most ``queue_size`` events (for a direct one: batches
waiting while its transport is paused) and a budget of unsent bytes (``slow_consumer_bytes``:
its buffered events plus what its transport and the kernel have not sent yet). A subscriber
that would go past either is marked slow, its session is closed (``SLOW_CODE``) and the
events it missed are counted as dropped: nothing of ours grows without bound, and no
subscriber misses events silently while it stays connected. The only unbounded buffers left
are the kernel's receive queues, which is what the lab is about.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence

from event_service.counters import Counters
from event_service.direct_subscriber import DirectSubscriber, FrameSink, text_frame
from event_service.events import Event

__all__ = ["SLOW_CODE", "SLOW_REASON", "Hub", "Subscriber", "Subscription"]

# An application close code, as Centrifugo's 3008 "slow": the client may reconnect.
SLOW_CODE = 4008
SLOW_REASON = "slow consumer"


def _nothing_unsent() -> int:
    return 0


class Subscriber:
    """One WebSocket session's subscription: the types it wants and its bounded buffer.

    One writer reads it with :meth:`next`. A plain deque plus a single waiter future is
    enough for one reader, and cheaper than an ``asyncio.Queue`` on the fan-out path: the
    writer creates a future only when the buffer is empty, and :meth:`offer` resolves it.

    The budget is checked only while the writer is busy (not parked in :meth:`next`): a
    subscriber that keeps up costs no kernel call on the fan-out path.
    """

    __slots__ = (
        "_budget_bytes",
        "_events",
        "_on_slow",
        "_queued_chars",
        "_waiter",
        "is_slow",
        "types",
        "unsent",
    )

    def __init__(
        self,
        types: frozenset[str] | None,
        queue_size: int,
        budget_bytes: int = 1 << 20,
    ) -> None:
        self.types = types
        # None in the buffer means "stop": the hub is shutting down. maxlen is the bound;
        # offer() refuses when full, while stop() appends and so evicts the oldest event.
        self._events: deque[Event | None] = deque(maxlen=queue_size)
        self._waiter: asyncio.Future[None] | None = None
        self._budget_bytes = budget_bytes
        # Event texts are JSON, ASCII when we encoded them: characters stand for bytes.
        self._queued_chars = 0
        #: Bytes the session wrote that are not sent yet (set by the session; 0 if unknown).
        self.unsent: Callable[[], int] = _nothing_unsent
        self._on_slow: Callable[[], object] | None = None
        #: Whether the subscriber fell behind its budget; it gets no more events.
        self.is_slow = False

    def __len__(self) -> int:
        return len(self._events)

    @property
    def budget_bytes(self) -> int:
        """Unsent bytes past which the subscriber counts as slow."""
        return self._budget_bytes

    @property
    def is_waiting(self) -> bool:
        """Whether a reader is parked in :meth:`next` on an empty buffer."""
        return self._waiter is not None

    def on_slow(self, callback: Callable[[], object]) -> None:
        """Call ``callback`` once, when the subscriber is marked slow."""
        self._on_slow = callback

    def wants(self, event_type: str) -> bool:
        """Whether this subscriber asked for events of ``event_type``."""
        return self.types is None or event_type in self.types

    def offer(self, event: Event) -> bool:
        """Buffer ``event`` and wake the reader; ``False`` (dropped) if it is or becomes slow."""
        if self.is_slow:
            return False
        events = self._events
        if self._waiter is None and self._is_over_budget(len(event.text)):
            self._mark_slow()
            return False
        events.append(event)
        self._queued_chars += len(event.text)
        if self._waiter is not None:
            self._wake()
        return True

    def stop(self) -> None:
        """Ask the session to close; the stop mark evicts the oldest event if the buffer is full."""
        if len(self._events) == self._events.maxlen:
            evicted = self._events[0]
            if evicted is not None:
                self._queued_chars -= len(evicted.text)
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
        event = events.popleft()
        if event is not None:
            self._queued_chars -= len(event.text)
        return event

    def _is_over_budget(self, incoming_chars: int) -> bool:
        if len(self._events) == self._events.maxlen:
            return True
        return self._queued_chars + incoming_chars + self.unsent() > self._budget_bytes

    def _mark_slow(self) -> None:
        self.is_slow = True
        self._events.clear()
        self._queued_chars = 0
        callback, self._on_slow = self._on_slow, None
        if callback is not None:
            callback()

    def _wake(self) -> None:
        waiter = self._waiter
        self._waiter = None
        # Done already if the reader was cancelled and has not run its clean-up yet.
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


#: Either kind of subscription, as sessions see it.
Subscription = Subscriber | DirectSubscriber


class Hub:
    """The registry of subscribers and the fan-out of events to them."""

    def __init__(
        self,
        counters: Counters,
        queue_size: int,
        budget_bytes: int = 1 << 20,
        window_s: float = 0.0,
    ) -> None:
        self._counters = counters
        self._queue_size = queue_size
        self._budget_bytes = budget_bytes
        self._window_s = window_s
        self._queued: set[Subscriber] = set()
        self._direct: set[DirectSubscriber] = set()
        # Events published for the direct subscribers and not written yet: at most
        # queue_size, then they are written at once.
        self._pending: list[Event] = []
        self._flush: asyncio.Handle | None = None
        # When the last batch was written (monotonic seconds): the next one waits until
        # window_s after it, so that events published meanwhile share its writes.
        self._flushed_at_s = float("-inf")
        self._stopping = False
        self._empty = asyncio.Event()
        self._empty.set()

    def __len__(self) -> int:
        return len(self._queued) + len(self._direct)

    @property
    def is_stopping(self) -> bool:
        """Whether :meth:`stop_all` was called; new subscribers are stopped at once."""
        return self._stopping

    def subscribe(
        self, types: frozenset[str] | None, sink: FrameSink | None = None
    ) -> Subscription:
        """Register a subscriber for ``types`` (``None``: every type).

        With a ``sink`` (the connection offers one) the hub writes its events itself: a
        :class:`DirectSubscriber`; without, its session sends them: a :class:`Subscriber`.
        """
        subscriber: Subscription
        if sink is None:
            subscriber = Subscriber(types, self._queue_size, self._budget_bytes)
            self._queued.add(subscriber)
        else:
            subscriber = DirectSubscriber(
                types, sink, self._counters, self._queue_size, self._budget_bytes
            )
            self._direct.add(subscriber)
        self._empty.clear()
        self._counters.connections_opened += 1
        if self._stopping:
            subscriber.stop()
        return subscriber

    def unsubscribe(self, subscriber: Subscription) -> None:
        """Remove a subscriber; safe to call twice."""
        if isinstance(subscriber, Subscriber):
            was_registered = subscriber in self._queued
            self._queued.discard(subscriber)
        else:
            was_registered = subscriber in self._direct
            self._direct.discard(subscriber)
            subscriber.detach()
        if was_registered:
            self._counters.connections_closed += 1
            if not len(self):
                self._empty.set()

    async def wait_empty(self) -> None:
        """Return once no subscriber is registered."""
        await self._empty.wait()

    def publish(self, event: Event) -> int:
        """Hand ``event`` to every subscriber of its type.

        Returns how many :class:`Subscriber` buffered it; direct subscribers get it when the
        batch is written (``events_delivered`` counts them then).
        """
        self._counters.events_received += 1
        queued = dropped = 0
        for subscriber in self._queued:
            if not subscriber.wants(event.type):
                continue
            was_slow = subscriber.is_slow
            if subscriber.offer(event):
                queued += 1
            else:
                dropped += 1
                if not was_slow:
                    self._counters.slow_consumers += 1
        self._counters.events_dropped += dropped
        if self._direct:
            self._pend(event)
        return queued

    def stop_all(self) -> None:
        """Ask every session to close (server shutdown), after what was published before."""
        self._stopping = True
        self.flush()
        for subscriber in self._queued:
            subscriber.stop()
        for direct in self._direct:
            direct.stop()

    def flush(self) -> None:
        """Write the pending events to the direct subscribers now: each event's frame is
        encoded once, and each subscriber gets every frame due for it in one write."""
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        batch, self._pending = self._pending, []
        if not batch:
            return
        self._counters.fanout_batches += 1
        frames = [text_frame(event.text) for event in batch]
        everything = b"".join(frames)
        # The frames of each subscription other than "every type", joined once.
        selections: dict[frozenset[str], tuple[bytes, Sequence[Event]]] = {}
        dropped = slow = 0
        events: Sequence[Event]
        # Once per delivery: locals, no lookups the common case does not need.
        for subscriber in self._direct:
            types = subscriber.types
            if types is None:
                data, events = everything, batch
            else:
                selection = selections.get(types)
                if selection is None:
                    selection = selections[types] = _select(subscriber, batch, frames)
                data, events = selection
                if not events:
                    continue
            if not subscriber.is_slow:
                subscriber.deliver(data, events)
                if not subscriber.is_slow:
                    continue
                slow += 1
            dropped += len(events)
        self._counters.events_dropped += dropped
        self._counters.slow_consumers += slow
        self._flushed_at_s = time.monotonic()

    def _pend(self, event: Event) -> None:
        self._pending.append(event)
        if len(self._pending) >= self._queue_size:
            self.flush()
        elif self._flush is None:
            # At the end of this loop iteration, or window_s after the last batch: events
            # far apart go out at once, events close together (or piling up behind a slow
            # write) go out together.
            loop = asyncio.get_running_loop()
            wait_s = self._flushed_at_s + self._window_s - time.monotonic()
            if wait_s > 0:
                self._flush = loop.call_later(wait_s, self.flush)
            else:
                self._flush = loop.call_soon(self.flush)


def _select(
    subscriber: DirectSubscriber, batch: list[Event], frames: list[bytes]
) -> tuple[bytes, Sequence[Event]]:
    """The events of ``batch`` that ``subscriber`` wants, and their frames joined."""
    wanted = [index for index, event in enumerate(batch) if subscriber.wants(event.type)]
    return b"".join(frames[i] for i in wanted), [batch[i] for i in wanted]
