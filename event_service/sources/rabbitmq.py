"""The RabbitMQ event source, through aio-pika.

Topology: a durable fanout exchange ``events``; one exclusive, uniquely named queue per service
instance bound to it, so every instance receives every event; manual acks with a bounded
prefetch (aio-pika starts a task per delivery, so prefetch bounds our memory too). A message
that is not a valid event is rejected without requeue, counted, and dead-lettered to the
``events.dead`` exchange, whose queue keeps at most ``DEAD_LETTER_MAX`` messages.
"""

from __future__ import annotations

import asyncio
import logging

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)

from event_service.counters import Counters
from event_service.events import Event, InvalidEvent, parse_event
from event_service.hub import Hub

EXCHANGE = "events"
DEAD_LETTER_EXCHANGE = "events.dead"
DEAD_LETTER_QUEUE = "events.dead"
DEAD_LETTER_MAX = 10_000
HEARTBEAT_S = 10
CONNECT_ATTEMPTS = 8
CONNECT_TIMEOUT_S = 5.0

logger = logging.getLogger("event_service.rabbitmq")


async def connect_with_retry(
    url: str, *, attempts: int = CONNECT_ATTEMPTS, first_delay_s: float = 0.5
) -> AbstractRobustConnection:
    """Connect with exponential backoff; ``connect_robust`` only retries after a first success."""
    delay_s = first_delay_s
    for attempt in range(1, attempts + 1):
        try:
            return await aio_pika.connect_robust(
                url, heartbeat=HEARTBEAT_S, timeout=CONNECT_TIMEOUT_S
            )
        except (TimeoutError, OSError, aio_pika.exceptions.AMQPConnectionError) as exc:
            if attempt == attempts:
                raise
            logger.warning(
                "amqp connect failed attempt=%d retry_in_s=%.1f error=%r", attempt, delay_s, exc
            )
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, 10.0)
    raise AssertionError("unreachable")


async def declare_exchange(channel: AbstractChannel) -> AbstractExchange:
    """Declare the durable fanout exchange that carries events."""
    return await channel.declare_exchange(EXCHANGE, aio_pika.ExchangeType.FANOUT, durable=True)


class RabbitMQSource:
    """Consumes events from the ``events`` fanout exchange into the hub."""

    def __init__(self, url: str, hub: Hub, counters: Counters, *, prefetch: int) -> None:
        self._url = url
        self._hub = hub
        self._counters = counters
        self._prefetch = prefetch
        # aio-pika holds channels and queues weakly: keep references for the source's life.
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._queue: AbstractQueue | None = None

    async def start(self) -> None:
        """Connect and declare the topology."""
        self._connection = await connect_with_retry(self._url)
        self._channel = channel = await self._connection.channel()
        await channel.set_qos(prefetch_count=self._prefetch)
        self._exchange = await declare_exchange(channel)
        dead = await channel.declare_exchange(
            DEAD_LETTER_EXCHANGE, aio_pika.ExchangeType.FANOUT, durable=True
        )
        dead_queue = await channel.declare_queue(
            DEAD_LETTER_QUEUE,
            durable=True,
            arguments={"x-max-length": DEAD_LETTER_MAX, "x-queue-type": "classic"},
        )
        await dead_queue.bind(dead)
        self._queue = await channel.declare_queue(
            exclusive=True, arguments={"x-dead-letter-exchange": DEAD_LETTER_EXCHANGE}
        )
        await self._queue.bind(self._exchange)
        logger.info("amqp connected exchange=%s queue=%s", EXCHANGE, self._queue.name)

    async def run(self) -> None:
        """Consume until cancelled."""
        assert self._queue is not None, "start() first"
        tag = await self._queue.consume(self._on_message)
        try:
            await asyncio.Event().wait()
        finally:
            if self._channel is not None and not self._channel.is_closed:
                await self._queue.cancel(tag)

    async def publish(self, event: Event) -> None:
        """Publish through the exchange, confirmed; it comes back to every instance."""
        assert self._exchange is not None, "start() first"
        await self._exchange.publish(
            aio_pika.Message(event.text.encode(), content_type="application/json"),
            routing_key="",
        )

    async def close(self) -> None:
        """Close the connection, which closes the channel and deletes the exclusive queue."""
        if self._connection is not None:
            await self._connection.close()

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        try:
            event = parse_event(message.body)
        except InvalidEvent as exc:
            self._counters.events_rejected += 1
            logger.warning("event rejected reason=%r", str(exc))
            await message.reject(requeue=False)
            return
        self._hub.publish(event)
        await message.ack()
