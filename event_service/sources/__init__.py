"""Event sources behind one small interface, chosen by name like uvicorn's protocol tables.

A source feeds events into the hub while :meth:`EventSource.run` runs, and publishes one
event on request (``POST /events``) through the same path a real event takes.
"""

from __future__ import annotations

from typing import Protocol

from event_service.counters import Counters
from event_service.events import Event
from event_service.hub import Hub
from event_service.settings import Settings


class EventSource(Protocol):
    """What the app needs from an event source."""

    async def start(self) -> None:
        """Connect; raise if the source cannot be used."""

    async def run(self) -> None:
        """Feed events into the hub until cancelled."""

    async def publish(self, event: Event) -> None:
        """Publish one event through the source, so that it reaches the hub like any other."""

    async def close(self) -> None:
        """Release connections; safe to call after a failed start."""


def make_source(settings: Settings, hub: Hub, counters: Counters) -> EventSource:
    """Build the source the settings ask for: RabbitMQ if ``AMQP_URL`` is set, else embedded."""
    if settings.amqp_url:
        from event_service.sources.rabbitmq import RabbitMQSource

        return RabbitMQSource(settings.amqp_url, hub, counters, prefetch=settings.amqp_prefetch)
    from event_service.sources.embedded import EmbeddedSource

    return EmbeddedSource(hub, rate_per_s=settings.event_rate)
