"""The socket observer: reads the kernel and the process, returns one snapshot of figures.

Everything here is measured, not estimated: socket queues from ``/proc/net/tcp{,6}``, kernel
TCP memory from ``/proc/net/sockstat``, RSS, fds and threads from psutil, and asyncio's own
task list. The parsing lives in :mod:`event_service.procfs`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from pathlib import Path
from typing import Any

import psutil

from event_service.counters import Counters
from event_service.procfs import (
    TcpSocket,
    parse_proc_net_tcp,
    parse_sockstat,
    queue_totals,
    server_sockets,
)

__all__ = ["PAGE_SIZE", "PROC_NET", "Observer", "read_sockstat", "read_tcp_sockets"]

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
PROC_NET = Path("/proc/net")


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


class Observer:
    """Takes snapshots of the service's sockets, kernel memory, process and counters."""

    def __init__(self, *, read_handler: str, ws_impl: str, source: str, fanout: str) -> None:
        self._labels = {
            "read_handler": read_handler,
            "ws_impl": ws_impl,
            "source": source,
            "fanout": fanout,
        }
        self._process = psutil.Process()

    async def snapshot(self, port: int, counters: Counters, subscribers: int) -> dict[str, Any]:
        """Measure everything once. ``port`` is the port the service listens on."""
        sockets, sockstat = await asyncio.to_thread(_read_kernel)
        totals = queue_totals(server_sockets(sockets, port))
        with self._process.oneshot():
            rss_bytes = self._process.memory_info().rss
            open_fds = self._process.num_fds()
            threads = self._process.num_threads()
        return {
            **self._labels,
            "time": time.time(),
            "port": port,
            "connections": subscribers,
            "sockets": totals.sockets,
            "socket_states": totals.states,
            "recv_q_bytes": totals.recv_q_bytes,
            "recv_q_max_bytes": totals.recv_q_max_bytes,
            "recv_q_p99_bytes": totals.recv_q_p99_bytes,
            "send_q_bytes": totals.send_q_bytes,
            "send_q_max_bytes": totals.send_q_max_bytes,
            "kernel_tcp_mem_pages": sockstat.get("mem", 0),
            "kernel_tcp_mem_bytes": sockstat["mem_bytes"],
            "kernel_tcp": {k: v for k, v in sockstat.items() if k not in ("mem", "mem_bytes")},
            "rss_bytes": rss_bytes,
            "open_fds": open_fds,
            "threads": threads,
            "asyncio_tasks": len(asyncio.all_tasks()),
            **dataclasses.asdict(counters),
        }


def _read_kernel() -> tuple[list[TcpSocket], dict[str, int]]:
    return read_tcp_sockets(), read_sockstat()
