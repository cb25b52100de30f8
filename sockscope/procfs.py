"""Pure parsers for the kernel's socket tables: ``/proc/net/tcp{,6}`` and ``/proc/net/sockstat``.

These functions take the text of the files and return plain data, so they are tested on
literal text. The numbers are the ones ``ss -tn`` shows: the ``tx_queue:rx_queue`` column is
Send-Q:Recv-Q in bytes. On a LISTEN socket those two columns mean the accept backlog, which is
why :func:`queue_totals` looks at connected sockets only.

The rows carry ports, not addresses: a port number does not identify a socket (another
process's client can have the same number on another address). To find a process's sockets,
use :mod:`sockscope.netlink` (exact addresses, or this process's inodes).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence

from sockscope.tcp import CONNECTED_STATES, TCP_STATES

__all__ = [
    "CONNECTED_STATES",
    "TCP_STATES",
    "QueueTotals",
    "TcpSocket",
    "parse_port_range",
    "parse_proc_net_tcp",
    "parse_sockstat",
    "parse_tcp_mem",
    "percentile",
    "queue_totals",
]

# The state names are tcp.py's: one table for every reader of the kernel.


@dataclasses.dataclass(frozen=True, slots=True)
class TcpSocket:
    """One row of ``/proc/net/tcp`` or ``/proc/net/tcp6``."""

    local_port: int
    remote_port: int
    state: str
    send_q_bytes: int
    recv_q_bytes: int
    inode: int


@dataclasses.dataclass(frozen=True, slots=True)
class QueueTotals:
    """Queue sizes summed over a set of connected sockets."""

    sockets: int
    recv_q_bytes: int
    recv_q_max_bytes: int
    recv_q_p99_bytes: int
    send_q_bytes: int
    send_q_max_bytes: int
    states: dict[str, int]


def parse_proc_net_tcp(text: str) -> list[TcpSocket]:
    """Parse the text of ``/proc/net/tcp`` or ``/proc/net/tcp6`` (header line included)."""
    sockets = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10:
            continue
        local_port = int(fields[1].rsplit(":", 1)[1], 16)
        remote_port = int(fields[2].rsplit(":", 1)[1], 16)
        state = TCP_STATES.get(int(fields[3], 16), "UNKNOWN")
        tx_queue, rx_queue = fields[4].split(":")
        sockets.append(
            TcpSocket(
                local_port=local_port,
                remote_port=remote_port,
                state=state,
                send_q_bytes=int(tx_queue, 16),
                recv_q_bytes=int(rx_queue, 16),
                inode=int(fields[9]),
            )
        )
    return sockets


def queue_totals(sockets: Iterable[TcpSocket]) -> QueueTotals:
    """Sum Send-Q and Recv-Q over the connected sockets among ``sockets``."""
    recv: list[int] = []
    send_total = send_max = 0
    states: dict[str, int] = {}
    for sock in sockets:
        if sock.state not in CONNECTED_STATES:
            continue
        recv.append(sock.recv_q_bytes)
        send_total += sock.send_q_bytes
        send_max = max(send_max, sock.send_q_bytes)
        states[sock.state] = states.get(sock.state, 0) + 1
    return QueueTotals(
        sockets=len(recv),
        recv_q_bytes=sum(recv),
        recv_q_max_bytes=max(recv, default=0),
        recv_q_p99_bytes=int(percentile(sorted(recv), 99)),
        send_q_bytes=send_total,
        send_q_max_bytes=send_max,
        states=states,
    )


def parse_sockstat(text: str, page_size: int) -> dict[str, int]:
    """Parse the ``TCP:`` line of ``/proc/net/sockstat``; adds ``mem_bytes`` from pages."""
    for line in text.splitlines():
        if line.startswith("TCP:"):
            fields = line.split()[1:]
            values = {
                name: int(value) for name, value in zip(fields[::2], fields[1::2], strict=True)
            }
            values["mem_bytes"] = values.get("mem", 0) * page_size
            return values
    raise ValueError("no TCP line in sockstat")


def parse_tcp_mem(text: str) -> tuple[int, int, int]:
    """Parse ``/proc/sys/net/ipv4/tcp_mem``: (low, pressure, high) in pages."""
    low, pressure, high = (int(value) for value in text.split())
    return low, pressure, high


def parse_port_range(text: str) -> tuple[int, int]:
    """Parse ``/proc/sys/net/ipv4/ip_local_port_range``: the first and last ephemeral port."""
    first, last = (int(value) for value in text.split())
    if not 0 < first <= last <= 0xFFFF:
        raise ValueError(f"not a port range: {text.strip()!r}")
    return first, last


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of already sorted values; 0 for an empty sequence."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return float(sorted_values[min(rank, len(sorted_values)) - 1])
