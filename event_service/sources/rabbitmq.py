"""The RabbitMQ event source, through aio-pika: the I/O shell around the broker.

The topology and the reconnect schedule are pure (:mod:`event_service.sources.amqp`), one
delivery's path is :mod:`event_service.sources.delivery`. Here: one connection at a time,
opened with plain ``aio_pika.connect`` and watched; when it drops the source goes ``down``,
logs it, and opens a new one on a backoff of at most ``RECONNECT_MAX_S`` (aio-pika's robust
connection waits a fixed 5 s and hides its state), declaring the same named queue again, so
the events the broker kept for us meanwhile are delivered in order. Manual acks with a
bounded prefetch: aio-pika starts a task per delivery, so prefetch bounds our memory too.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import secrets
import socket
from typing import Any

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractExchange,
    AbstractQueue,
    AbstractRobustConnection,
)
from aiormq.exceptions import AMQPError, ChannelInvalidStateError

from event_service.counters import Counters
from event_service.events import Event
from event_service.hub import Hub
from event_service.settings import Settings
from event_service.sources import SourceState, SourceUnavailable
from event_service.sources.amqp import Topology, backoff_delays
from event_service.sources.delivery import MessageHandler

EXCHANGE = "events"  # the default of AMQP_EXCHANGE
HEARTBEAT_S = 10
CONNECT_ATTEMPTS = 8
CONNECT_TIMEOUT_S = 5.0
RECONNECT_FIRST_S = 0.25
RECONNECT_MAX_S = 2.0
# A reconnect attempt that hangs (a black-holed broker) gives up sooner than the first
# connect, so that delivery resumes within about RECONNECT_TIMEOUT_S + RECONNECT_MAX_S.
RECONNECT_TIMEOUT_S = 3.0
CLOSE_TIMEOUT_S = 2.0
_BROKER_ERRORS = (AMQPError, ChannelInvalidStateError, ConnectionError, OSError, TimeoutError)

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


async def declare_exchange(channel: AbstractChannel, name: str = EXCHANGE) -> AbstractExchange:
    """Declare the durable fanout exchange that carries events."""
    return await channel.declare_exchange(name, aio_pika.ExchangeType.FANOUT, durable=True)


@dataclasses.dataclass
class _Link:
    """One connection to the broker and what was declared on it; ``lost`` is set when it drops."""

    connection: AbstractConnection
    channel: AbstractChannel
    exchange: AbstractExchange
    queue: AbstractQueue
    lost: asyncio.Event
    lost_error: BaseException | None = None

    def mark_lost(self, error: BaseException | None) -> None:
        if not self.lost.is_set():
            self.lost_error = error
            self.lost.set()


class RabbitMQSource:
    """Consumes events from the fanout exchange into the hub, across broker outages."""

    def __init__(self, settings: Settings, hub: Hub, counters: Counters) -> None:
        assert settings.amqp_url, "the RabbitMQ source needs AMQP_URL"
        self._url = settings.amqp_url
        self._counters = counters
        self._prefetch = settings.amqp_prefetch
        self.topology = Topology.for_instance(
            settings.amqp_exchange,
            hostname=socket.gethostname(),
            pid=os.getpid(),
            token=secrets.token_hex(4),
            queue_expires_s=settings.amqp_queue_expires_s,
        )
        # Redeliveries after a cut are at most the unacked ones: a prefetch window, with margin.
        self._handler = MessageHandler(
            hub,
            counters,
            max_bytes=settings.event_max_bytes,
            recent_ids=max(4 * settings.amqp_prefetch, 1024),
        )
        self._state: SourceState = "connecting"
        # aio-pika holds channels and queues weakly: the link keeps the references.
        self._link: _Link | None = None

    @property
    def state(self) -> SourceState:
        """``connecting`` until the first connection, then ``up`` or ``down``."""
        return self._state

    async def start(self) -> None:
        """Connect (with retries) and declare the topology; raise if the broker stays away."""
        delays = backoff_delays(0.5, 10.0, jitter=0.0)
        for attempt in range(1, CONNECT_ATTEMPTS + 1):
            try:
                self._link = await self._open_link(CONNECT_TIMEOUT_S)
                break
            except _BROKER_ERRORS as exc:
                if attempt == CONNECT_ATTEMPTS:
                    raise
                delay_s = next(delays)
                logger.warning(
                    "amqp connect failed attempt=%d retry_in_s=%.1f error=%r", attempt, delay_s, exc
                )
                await asyncio.sleep(delay_s)
        self._state = "up"
        logger.info(
            "amqp connected exchange=%s queue=%s queue_expires_s=%d",
            self.topology.exchange,
            self.topology.queue,
            self.topology.queue_expires_s,
        )

    async def run(self) -> None:
        """Consume until cancelled; reconnect whenever the connection drops."""
        assert self._link is not None, "start() first"
        loop = asyncio.get_running_loop()
        link = self._link
        while True:
            await self._consume_until_lost(link)
            self._state = "down"
            lost_at = loop.time()
            logger.warning(
                "amqp connection lost error=%r queue=%s", link.lost_error, self.topology.queue
            )
            await self._close_quietly(link.connection)
            self._link = None
            link, attempts = await self._reconnect()
            self._link = link
            self._state = "up"
            self._counters.broker_reconnects += 1
            logger.info(
                "amqp reconnected after_s=%.2f attempts=%d queue=%s",
                loop.time() - lost_at,
                attempts,
                self.topology.queue,
            )

    async def publish(self, event: Event) -> None:
        """Publish through the exchange, confirmed; it comes back to every instance."""
        link = self._link
        if link is None or self._state != "up":
            raise SourceUnavailable(f"broker {self._state}")
        try:
            await link.exchange.publish(
                aio_pika.Message(event.text.encode(), content_type="application/json"),
                routing_key="",
            )
        except _BROKER_ERRORS as exc:
            raise SourceUnavailable(f"publish failed: {exc!r}") from exc

    async def close(self) -> None:
        """Delete the instance queue (x-expires reaps it if we cannot), close the connection."""
        link, self._link = self._link, None
        if link is None:
            return
        if not link.lost.is_set():
            try:
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    await link.queue.delete(if_unused=False, if_empty=False)
                logger.info("amqp queue deleted queue=%s", self.topology.queue)
            except _BROKER_ERRORS as exc:
                logger.warning(
                    "amqp queue left for x-expires queue=%s expires_s=%d error=%r",
                    self.topology.queue,
                    self.topology.queue_expires_s,
                    exc,
                )
        await self._close_quietly(link.connection)

    async def _open_link(self, timeout_s: float) -> _Link:
        """Connect, declare the topology and watch the connection; close it if a step fails."""
        topology = self.topology
        lost = asyncio.Event()
        connection = await aio_pika.connect(
            self._url,
            heartbeat=HEARTBEAT_S,
            timeout=timeout_s,
            client_properties={"connection_name": f"event-service {topology.queue}"},
        )
        try:
            async with asyncio.timeout(timeout_s):
                channel = await connection.channel()
                await channel.set_qos(prefetch_count=self._prefetch)
                exchange = await declare_exchange(channel, topology.exchange)
                dead = await channel.declare_exchange(
                    topology.dead_letter_exchange, aio_pika.ExchangeType.FANOUT, durable=True
                )
                dead_queue = await channel.declare_queue(
                    topology.dead_letter_queue,
                    durable=True,
                    arguments=topology.dead_letter_arguments(),
                )
                await dead_queue.bind(dead)
                queue = await channel.declare_queue(
                    topology.queue, durable=True, arguments=topology.queue_arguments()
                )
                await queue.bind(exchange)
        except BaseException:
            await self._close_quietly(connection)
            raise
        link = _Link(connection, channel, exchange, queue, lost)

        def on_close(_sender: Any, error: BaseException | None = None) -> None:
            link.mark_lost(error)

        connection.close_callbacks.add(on_close)
        channel.close_callbacks.add(on_close)
        if connection.is_closed:
            link.mark_lost(None)
        return link

    async def _consume_until_lost(self, link: _Link) -> None:
        """Consume from the link's queue until it drops (or the broker cancels the consumer)."""

        def on_cancel(frame: Any) -> None:
            link.mark_lost(RuntimeError("consumer cancelled by the broker"))

        try:
            underlay = await link.channel.get_underlay_channel()
            underlay.on_consumer_cancel_callbacks.add(on_cancel)
            tag = await link.queue.consume(self._handler.handle)
        except _BROKER_ERRORS as exc:
            link.mark_lost(exc)
            return
        try:
            await link.lost.wait()
        finally:
            if not link.lost.is_set():  # cancelled: stop deliveries before close() deletes
                with contextlib.suppress(*_BROKER_ERRORS):
                    async with asyncio.timeout(CLOSE_TIMEOUT_S):
                        await link.queue.cancel(tag)

    async def _reconnect(self) -> tuple[_Link, int]:
        """Open a new link on a backoff schedule, for as long as it takes; (link, attempts)."""
        attempts = 0
        for delay_s in backoff_delays(RECONNECT_FIRST_S, RECONNECT_MAX_S):
            await asyncio.sleep(delay_s)
            attempts += 1
            try:
                return await self._open_link(RECONNECT_TIMEOUT_S), attempts
            except Exception as exc:
                # Broad on purpose: this attempt ends here, and the feed must not stop on an
                # error type we did not foresee (a reset mid-handshake raises several kinds).
                # Every attempt at debug, and a line at 1, 2, 4, 8... attempts: bounded noise.
                level = logging.WARNING if attempts & (attempts - 1) == 0 else logging.DEBUG
                logger.log(level, "amqp reconnect failed attempts=%d error=%r", attempts, exc)
        raise AssertionError("unreachable")

    @staticmethod
    async def _close_quietly(connection: AbstractConnection) -> None:
        with contextlib.suppress(*_BROKER_ERRORS):
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await connection.close()
