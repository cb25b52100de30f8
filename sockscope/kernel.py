"""Short shells that read the kernel's tables; the parsing is in :mod:`sockscope.procfs`."""

from __future__ import annotations

import os
from pathlib import Path

from sockscope.procfs import TcpSocket, parse_port_range, parse_proc_net_tcp, parse_sockstat

__all__ = ["PAGE_SIZE", "PORT_RANGE_PATH", "PROC_NET", "read_port_range", "read_sockstat",
           "read_tcp_sockets"]  # fmt: skip

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
PROC_NET = Path("/proc/net")
PORT_RANGE_PATH = Path("/proc/sys/net/ipv4/ip_local_port_range")


def read_tcp_sockets(proc_net: Path = PROC_NET) -> list[TcpSocket]:
    """All TCP sockets of this network namespace, IPv4 and IPv6."""
    sockets: list[TcpSocket] = []
    for name in ("tcp", "tcp6"):
        path = proc_net / name
        if path.exists():
            sockets.extend(parse_proc_net_tcp(path.read_text()))
    return sockets


def read_sockstat(proc_net: Path = PROC_NET) -> dict[str, int]:
    """The ``TCP:`` figures of ``/proc/net/sockstat`` (host-wide ``mem`` in pages and bytes)."""
    return parse_sockstat((proc_net / "sockstat").read_text(), PAGE_SIZE)


def read_port_range(path: Path = PORT_RANGE_PATH) -> tuple[int, int]:
    """The ephemeral ports ``connect()`` picks from in this network namespace: (first, last)."""
    return parse_port_range(path.read_text())
