"""Churn: when clients arrive and when they leave. Pure schedule arithmetic, no I/O.

A churning swarm opens its first ``clients`` at the ramp rate, then a batch of
``churn_batch`` new clients every ``churn_every_s`` (each batch ramped too); every client
leaves with a normal close ``client_lifetime_s`` after it opened. This is the shape of
production traffic: the population stays about the same, while the clients in it change.
Every client has the same lifetime, so the clients due to leave are simply the oldest ones:
:class:`Departures` is a FIFO queue.
"""

from __future__ import annotations

import collections
import dataclasses
import re
from collections.abc import Iterator
from typing import Generic, TypeVar

from websockets.uri import WebSocketURI

__all__ = ["EVENT_TYPE_RE", "Departures", "arrival_offsets", "subscription_uri"]

# The event types a subscriber may name (the service's own rule, spelled again on this side
# of the socket: the swarm does not import the service).
EVENT_TYPE_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")

T = TypeVar("T")


def arrival_offsets(
    clients: int, ramp_per_s: float, churn_every_s: float | None, churn_batch: int
) -> Iterator[float]:
    """Seconds after the start at which each client opens, in order.

    Without churn: ``clients`` offsets, one every ``1 / ramp_per_s``. With churn the
    offsets go on for ever (the swarm stops reading them at its end): a batch of
    ``churn_batch`` at every multiple of ``churn_every_s``, ramped from there.
    """
    for index in range(clients):
        yield index / ramp_per_s
    if churn_every_s is None:
        return
    batch_start_s = 0.0
    while True:
        batch_start_s += churn_every_s
        for index in range(churn_batch):
            yield batch_start_s + index / ramp_per_s


class Departures(Generic[T]):
    """Clients waiting to leave, oldest first; each leaves ``lifetime_s`` after it opened."""

    def __init__(self, lifetime_s: float) -> None:
        self.lifetime_s = lifetime_s
        self._queue: collections.deque[tuple[float, T]] = collections.deque()

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, client: T, opened_at: float) -> None:
        """Schedule ``client``, which opened at ``opened_at`` (monotonic seconds)."""
        self._queue.append((opened_at + self.lifetime_s, client))

    def due(self, now: float) -> list[T]:
        """The clients whose time to leave has come by ``now``, removed from the queue."""
        leaving = []
        while self._queue and self._queue[0][0] <= now:
            leaving.append(self._queue.popleft()[1])
        return leaving

    def clear(self) -> None:
        """Forget every scheduled departure (the swarm is closing them all)."""
        self._queue.clear()


def subscription_uri(uri: WebSocketURI, types: tuple[str, ...]) -> WebSocketURI:
    """``uri`` with ``events=a,b`` added to its query (unchanged when ``types`` is empty)."""
    if not types:
        return uri
    events = "events=" + ",".join(types)
    query = f"{uri.query}&{events}" if uri.query else events
    return dataclasses.replace(uri, query=query)
