"""Plain counters of what the service did, owned by one app instance."""

from __future__ import annotations

import dataclasses
from typing import TypedDict

__all__ = ["CounterFigures", "Counters"]


class CounterFigures(TypedDict):
    """The :class:`Counters` as plain figures (the same names)."""

    connections_opened: int
    connections_closed: int
    events_received: int
    events_delivered: int
    events_dropped: int
    events_rejected: int
    events_duplicates: int
    broker_reconnects: int
    client_messages: int
    client_bytes: int
    slow_consumers: int
    sessions_refused: int
    publish_refused: int
    fanout_batches: int


@dataclasses.dataclass
class Counters:
    """Monotonic counts since start-up; read by ``/stats`` and ``/metrics``."""

    connections_opened: int = 0
    connections_closed: int = 0
    events_received: int = 0
    events_delivered: int = 0
    events_dropped: int = 0
    events_rejected: int = 0
    events_duplicates: int = 0
    broker_reconnects: int = 0
    client_messages: int = 0
    client_bytes: int = 0
    slow_consumers: int = 0
    sessions_refused: int = 0
    publish_refused: int = 0
    #: Writes of the direct fan-out (FANOUT=direct): each one writes every subscriber's due
    #: frames; events_received / fanout_batches is how many events a write carries.
    fanout_batches: int = 0

    def as_dict(self) -> CounterFigures:
        """The counters as plain figures, under the same names."""
        return CounterFigures(
            connections_opened=self.connections_opened,
            connections_closed=self.connections_closed,
            events_received=self.events_received,
            events_delivered=self.events_delivered,
            events_dropped=self.events_dropped,
            events_rejected=self.events_rejected,
            events_duplicates=self.events_duplicates,
            broker_reconnects=self.broker_reconnects,
            client_messages=self.client_messages,
            client_bytes=self.client_bytes,
            slow_consumers=self.slow_consumers,
            sessions_refused=self.sessions_refused,
            publish_refused=self.publish_refused,
            fanout_batches=self.fanout_batches,
        )
