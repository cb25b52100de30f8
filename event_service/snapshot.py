"""The shape of one ``/stats`` snapshot: what the observer measures, the counters, the service's
state. The JSON keys are these names exactly; ``/metrics`` renders the same snapshot."""

from __future__ import annotations

from typing import TypedDict

from event_service.counters import CounterFigures
from event_service.sources import SourceState

__all__ = ["CounterFigures", "KernelTcp", "ObservedFigures", "ServiceSnapshot"]


class KernelTcp(TypedDict):
    """The host's ``TCP:`` line of ``/proc/net/sockstat`` but its memory (sockets by kind)."""

    inuse: int
    orphan: int
    tw: int
    alloc: int


class ObservedFigures(CounterFigures):
    """What :class:`~event_service.observer.Observer` measures once, with the counters."""

    read_handler: str
    ws_impl: str
    source: str
    fanout: str
    time: float
    port: int
    connections: int
    sockets: int
    socket_states: dict[str, int]
    recv_q_bytes: int
    recv_q_max_bytes: int
    recv_q_p99_bytes: int
    send_q_bytes: int
    send_q_max_bytes: int
    skmem_r_bytes: int
    skmem_r_max_bytes: int
    skmem_rb_bytes: int
    skmem_rb_max_bytes: int
    skmem_w_bytes: int
    skmem_w_max_bytes: int
    sockets_read_s: float
    kernel_tcp_mem_pages: int
    kernel_tcp_mem_bytes: int
    kernel_tcp: KernelTcp
    rss_bytes: int
    open_fds: int
    threads: int
    asyncio_tasks: int


class ServiceSnapshot(ObservedFigures):
    """The whole ``/stats`` answer: the observed figures, the session cap, the source's state."""

    max_sessions: int
    broker: SourceState
