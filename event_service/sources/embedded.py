"""The embedded event source: generates ``tick`` events in-process at a fixed rate."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from event_service.events import Event, make_event
from event_service.hub import Hub
from event_service.sources import SourceState
from sockscope.schedule import every

EVENT_TYPE = "tick"


async def tick_forever(rate_per_s: float, emit: Callable[[Event], object]) -> None:
    """Emit ``tick`` events on a fixed schedule; a late tick does not shift the ones after it."""
    if rate_per_s <= 0:
        await asyncio.Event().wait()
    # Late ticks are caught up, not skipped: the rate over any long window stays exact.
    async for seq in every(1.0 / rate_per_s, missed="catch-up"):
        emit(make_event(EVENT_TYPE, {"seq": seq}))


class EmbeddedSource:
    """Publishes ``rate_per_s`` events per second straight into the hub (0: none)."""

    def __init__(self, hub: Hub, *, rate_per_s: float) -> None:
        self._hub = hub
        self._rate_per_s = rate_per_s

    @property
    def state(self) -> SourceState:
        """Always ``embedded``: nothing to connect to, always ready."""
        return "embedded"

    async def start(self) -> None:
        """Nothing to connect to."""

    async def run(self) -> None:
        """Publish on a fixed schedule until cancelled."""
        await tick_forever(self._rate_per_s, self._hub.publish)

    async def publish(self, event: Event) -> None:
        """Hand the event to the hub directly."""
        self._hub.publish(event)

    async def close(self) -> None:
        """Nothing to release."""
