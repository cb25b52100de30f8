"""The pure half of the RabbitMQ source: the topology's names and arguments, the reconnect
schedule. No I/O here; :mod:`event_service.sources.rabbitmq` is the shell around the broker.

Topology, for an exchange ``X`` (``AMQP_EXCHANGE``, default ``events``)::

    publishers --> X (fanout, durable) --+--> X.<host>.<pid>.<token>   one queue per instance
                                         +--> X.<host>.<pid>.<token>   (durable, x-expires)
                                                      | rejected
                                                      v
                                  X.dead (fanout) --> X.dead queue (at most DEAD_LETTER_MAX)

The instance queue is named, not exclusive: it outlives its connection, so events published
while the service is cut off from the broker wait there. ``x-expires`` reaps it a few minutes
after its consumer is gone for good; a clean stop deletes it at once.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["DEAD_LETTER_MAX", "INSTANCE_QUEUE_MAX", "Topology", "backoff_delays"]

DEAD_LETTER_MAX = 10_000
# Bounds the instance queue through a long outage; past it the oldest events are dropped
# (and dead-lettered with reason "maxlen").
INSTANCE_QUEUE_MAX = 100_000


@dataclasses.dataclass(frozen=True)
class Topology:
    """Names and arguments of everything one service instance declares on the broker."""

    exchange: str
    queue: str
    queue_expires_s: int

    @classmethod
    def for_instance(
        cls, exchange: str, *, hostname: str, pid: int, token: str, queue_expires_s: int
    ) -> Topology:
        """The topology of one instance: its queue is named after the exchange and itself."""
        host = "".join(c if c.isalnum() or c in "-_" else "-" for c in hostname)[:64]
        return cls(exchange, f"{exchange}.{host}.{pid}.{token}", queue_expires_s)

    @property
    def dead_letter_exchange(self) -> str:
        """Where rejected messages go: ``<exchange>.dead``."""
        return f"{self.exchange}.dead"

    @property
    def dead_letter_queue(self) -> str:
        """The queue that keeps the dead letters, also ``<exchange>.dead``."""
        return f"{self.exchange}.dead"

    def queue_arguments(self) -> dict[str, Any]:
        """Arguments of the instance queue: expiry, dead-lettering, a bound, classic type."""
        return {
            "x-expires": self.queue_expires_s * 1000,
            "x-dead-letter-exchange": self.dead_letter_exchange,
            "x-max-length": INSTANCE_QUEUE_MAX,
            "x-queue-type": "classic",
        }

    @staticmethod
    def dead_letter_arguments() -> dict[str, Any]:
        """Arguments of the dead-letter queue, the same for every instance."""
        return {"x-max-length": DEAD_LETTER_MAX, "x-queue-type": "classic"}


def backoff_delays(
    first_s: float, max_s: float, *, jitter: float = 0.2, rand: Callable[[], float] = random.random
) -> Iterator[float]:
    """Seconds to wait before each attempt: doubling from ``first_s`` up to ``max_s``, for ever.

    Each delay is shortened by up to ``jitter`` of itself, so that instances cut off together
    do not all knock at the same instant; never longer than ``max_s``.
    """
    delay_s = first_s
    while True:
        yield delay_s * (1.0 - jitter * rand())
        delay_s = min(delay_s * 2, max_s)
