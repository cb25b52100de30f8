"""Plain counters of what the service did, owned by one app instance."""

from __future__ import annotations

import dataclasses

__all__ = ["Counters"]


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

    def as_dict(self) -> dict[str, int]:
        """The counters as a plain mapping."""
        return dataclasses.asdict(self)
