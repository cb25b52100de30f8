"""What one per-second sample of the read-handler story holds, and its parts. Types only.

Two kinds of cell write samples: a swarm cell (``cell.py``: the clients' figures, the server's,
the kernel's) and a vanished-client cell (``vanished_cell.py``: the server's side and the
link's state only, the clients being out of reach). Both are a :class:`ReadHandlerSample`;
only ``t_s`` and ``wall_time`` are in every one of them. The keys are the ones
``samples.jsonl`` has, in the order they are written.
"""

from __future__ import annotations

from typing import NotRequired, TypedDict

__all__ = ["FirstClose", "ReadHandlerSample", "ServerFigures", "SocketFigures"]


class ServerFigures(TypedDict):
    """The ``/stats`` figures a sample keeps in ``sample["server"]``, under their /stats names."""

    recv_q_bytes: int
    recv_q_max_bytes: int
    recv_q_p99_bytes: int
    kernel_tcp_mem_bytes: int
    rss_bytes: int
    open_fds: int
    asyncio_tasks: int
    connections: int
    events_received: int
    events_delivered: int
    events_dropped: int
    client_messages: int
    client_bytes: int


class FirstClose(TypedDict):
    """The first close the swarm saw: its code and when (seconds since the swarm started)."""

    code: int
    after_s: float


class SocketFigures(TypedDict):
    """The service's connected sockets as the kernel reports them (netlink sock_diag), and
    what the read cost: wall ms, and CPU ms of the thread that read."""

    skmem_r_bytes: int
    skmem_t_bytes: int
    skmem_sockets: int
    sockets_by_state: dict[str, int]
    sockets_recv_q_bytes: int
    sockets_send_q_bytes: int
    kernel_read_ms: float
    kernel_read_cpu_ms: float


class ReadHandlerSample(TypedDict):
    """One second of a read-handler cell.

    Every sample has ``t_s`` (seconds since the swarm, or the vanished cell, started) and
    ``wall_time``. A swarm cell's samples have every client key (``connected`` to
    ``swarm_closing``); a vanished cell's have ``link_down`` and ``link_down_at_s`` instead
    (and ``tcp_retries2`` at the second the link went down). ``server`` is there when
    ``/stats`` answered, ``task_groups`` when the task dump did, the socket keys when the
    kernel could be asked. ``kernel_read_ms`` and ``kernel_read_cpu_ms`` are the cost of
    every kernel read of the sample: the lab's of the service's sockets and, in a swarm cell,
    the swarm's of its clients' and the server's queues. ``target`` is the clients the swarm
    holds once its ramp is over (not in churn cells).
    """

    t_s: float
    wall_time: float
    # The swarm's figures (swarm cells).
    connected: NotRequired[int]
    connecting: NotRequired[int]
    connect_failures: NotRequired[int]
    pings_sent: NotRequired[int]
    pings_blocked: NotRequired[int]
    bytes_sent: NotRequired[int]
    blocked_in_send_s: NotRequired[float]
    events_received: NotRequired[int]
    latency_p50_ms: NotRequired[float]
    latency_p99_ms: NotRequired[float]
    closes: NotRequired[dict[str, int]]  # close code (as text) -> connections
    first_close: NotRequired[FirstClose | None]
    first_close_s: NotRequired[dict[str, float]]  # close code (as text) -> first seen at
    # The subscribers each published event should reach (0: a never-published type).
    clients: NotRequired[int]
    client_send_q_bytes: NotRequired[int | None]
    sending: NotRequired[bool]
    active: NotRequired[int]  # connected and not leaving
    opened: NotRequired[int]
    left: NotRequired[int]
    left_unanswered: NotRequired[int]
    swarm_closing: NotRequired[bool]
    target: NotRequired[int]
    # The service's side.
    server: NotRequired[ServerFigures]
    task_groups: NotRequired[list[str]]
    skmem_r_bytes: NotRequired[int]
    skmem_t_bytes: NotRequired[int]
    skmem_sockets: NotRequired[int]
    sockets_by_state: NotRequired[dict[str, int]]
    sockets_recv_q_bytes: NotRequired[int]
    sockets_send_q_bytes: NotRequired[int]
    kernel_read_ms: NotRequired[float]
    kernel_read_cpu_ms: NotRequired[float]
    # The link of a vanished cell.
    tcp_retries2: NotRequired[int | None]
    link_down: NotRequired[bool]
    link_down_at_s: NotRequired[float | None]
