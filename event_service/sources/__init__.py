"""Event sources behind one small interface, chosen by name like uvicorn's protocol tables.

A source feeds events into the hub while :meth:`EventSource.run` runs, and publishes one
event on request (``POST /events``) through the same path a real event takes. Its
:attr:`EventSource.state` tells readiness apart from liveness (``/readyz``, ``/healthz``).
"""

from __future__ import annotations

from typing import Literal, Protocol

from event_service.counters import Counters
from event_service.errors import SourceUnavailable
from event_service.events import Event
from event_service.hub import Hub
from event_service.settings import Settings

__all__ = ["READY_STATES", "EventSource", "SourceState", "SourceUnavailable", "make_source"]

# up: connected to the broker; down: the connection was lost, reconnecting; connecting:
# before the first connection; embedded: no broker at all.
SourceState = Literal["up", "down", "connecting", "embedded"]
READY_STATES: frozenset[SourceState] = frozenset({"up", "embedded"})


class EventSource(Protocol):
    """What the app needs from an event source."""

    @property
    def state(self) -> SourceState:
        """Whether the source can deliver events now (see :data:`SourceState`)."""

    async def start(self) -> None:
        """Connect; raise if the source cannot be used."""

    async def run(self) -> None:
        """Feed events into the hub until cancelled."""

    async def publish(self, event: Event) -> None:
        """Publish one event through the source; raise :class:`SourceUnavailable`."""

    async def close(self) -> None:
        """Release connections; safe to call after a failed start."""


def make_source(settings: Settings, hub: Hub, counters: Counters) -> EventSource:
    """Build the source the settings ask for: RabbitMQ if ``AMQP_URL`` is set, else embedded."""
    if settings.amqp_url:
        from event_service.sources.rabbitmq import RabbitMQSource

        return RabbitMQSource(settings, hub, counters)
    from event_service.sources.embedded import EmbeddedSource

    return EmbeddedSource(hub, rate_per_s=settings.event_rate)
