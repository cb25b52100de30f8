"""One broker delivery, from body to hub, always settled: acked, or rejected into the dead
letters. Nothing a publisher sends can keep a prefetch slot: the settle runs in a ``finally``,
whatever parsing or routing raised, and is bounded in time.

After a reconnect the broker redelivers what it had sent but never saw acked; the ones
already handed to the hub are recognised by their event id (:class:`RecentIds`) and dropped,
so a subscriber connected all along sees each event once.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Protocol

from aiormq.exceptions import AMQPError, ChannelInvalidStateError

from event_service.counters import Counters
from event_service.errors import InvalidEvent
from event_service.events import parse_event
from event_service.hub import Hub

__all__ = ["SETTLE_TIMEOUT_S", "Delivery", "MessageHandler", "RecentIds"]

SETTLE_TIMEOUT_S = 5.0
_SETTLE_ERRORS = (AMQPError, ChannelInvalidStateError, ConnectionError, OSError, TimeoutError)

logger = logging.getLogger("event_service.rabbitmq")


class Delivery(Protocol):
    """The part of aio-pika's ``AbstractIncomingMessage`` a handler uses."""

    @property
    def body(self) -> bytes: ...

    @property
    def redelivered(self) -> bool | None: ...

    async def ack(self, multiple: bool = False) -> None: ...

    async def reject(self, requeue: bool = False) -> None: ...


class RecentIds:
    """The last ``max_ids`` event ids handed to the hub, in a bounded set."""

    def __init__(self, max_ids: int) -> None:
        self._order: deque[str] = deque()
        self._ids: set[str] = set()
        self._max_ids = max_ids

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, event_id: str) -> None:
        """Remember ``event_id``, forgetting the oldest one past the bound."""
        if event_id in self._ids:
            return
        self._order.append(event_id)
        self._ids.add(event_id)
        if len(self._order) > self._max_ids:
            self._ids.discard(self._order.popleft())


class MessageHandler:
    """The consumer callback: parse, route into the hub, then ack or reject without requeue."""

    def __init__(self, hub: Hub, counters: Counters, *, max_bytes: int, recent_ids: int) -> None:
        self._hub = hub
        self._counters = counters
        self._max_bytes = max_bytes
        self._recent = RecentIds(recent_ids)

    async def handle(self, message: Delivery) -> None:
        """Route ``message`` and settle it, whatever happens (a coroutine function, so that
        aio-pika runs it as a task of its own in delivery order)."""
        accepted = False
        try:
            accepted = self.route(message.body, redelivered=bool(message.redelivered))
        finally:
            await settle(message, accepted=accepted)

    def route(self, body: bytes, *, redelivered: bool) -> bool:
        """Hand the event in ``body`` to the hub; ``False`` if it must be rejected.

        Synchronous on purpose: aio-pika runs each delivery in a task of its own, and with
        no ``await`` before the hub, events reach it in the order the broker sent them.
        """
        try:
            event = parse_event(body, max_bytes=self._max_bytes)
            if redelivered and event.id in self._recent:
                self._counters.events_duplicates += 1
                return True
            self._hub.publish(event)
        except InvalidEvent as exc:
            self._counters.events_rejected += 1
            logger.warning("event rejected reason=%r size_bytes=%d", str(exc)[:200], len(body))
            return False
        except Exception:
            # Whatever else parsing or routing raised: this delivery ends here, the feed goes on.
            self._counters.events_rejected += 1
            logger.warning("event rejected reason=error size_bytes=%d", len(body), exc_info=True)
            return False
        self._recent.add(event.id)
        return True


async def settle(message: Delivery, *, accepted: bool) -> None:
    """Ack or reject (no requeue) ``message``; if the channel is gone the broker requeues it."""
    try:
        async with asyncio.timeout(SETTLE_TIMEOUT_S):
            if accepted:
                await message.ack()
            else:
                await message.reject(requeue=False)
    except _SETTLE_ERRORS as exc:
        logger.info("amqp settle failed accepted=%s error=%r", accepted, exc)
