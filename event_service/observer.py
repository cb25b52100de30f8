"""The socket observer: reads the kernel and the process, returns one snapshot of figures.

Everything here is measured, not estimated. The service's sockets are the ones it owns: the
kernel's TCP sockets on the service's port (netlink sock_diag, filtered in the kernel, with
queues and skmem) whose inode is one of this process's fds. That leaves out another
process's socket that happens to have the same port number on another address, and keeps
every socket the service still holds, including sessions it no longer lists (the missing
handler's dead sessions keep their fd until the session ends). Listening sockets are left
out: their queue columns are the accept backlog. Kernel TCP memory comes from
``/proc/net/sockstat``, RSS, fds and threads from psutil, the task count from asyncio. The
kernel is read through :mod:`sockscope`, in a worker thread.
"""

from __future__ import annotations

import asyncio
import time

import psutil

from event_service.counters import Counters
from event_service.snapshot import KernelTcp, ObservedFigures
from sockscope.diag import SocketTotals, socket_totals
from sockscope.kernel import read_sockstat
from sockscope.netlink import read_own_sockets

__all__ = ["Observer", "kernel_tcp", "read_service_sockets"]


class Observer:
    """Takes snapshots of the service's sockets, kernel memory, process and counters."""

    def __init__(self, *, read_handler: str, ws_impl: str, source: str, fanout: str) -> None:
        self._read_handler = read_handler
        self._ws_impl = ws_impl
        self._source = source
        self._fanout = fanout
        self._process = psutil.Process()

    async def snapshot(self, port: int, counters: Counters, subscribers: int) -> ObservedFigures:
        """Measure everything once. ``port`` is the port the service listens on."""
        # One hop to a worker thread for everything that reads the kernel: counting 10,000
        # fds lists /proc/self/fd, several ms that the loop would otherwise wait for.
        (totals, sockstat, read_s), (rss_bytes, open_fds, threads) = await asyncio.to_thread(
            lambda: (_read_kernel(port), self._read_process())
        )
        return {
            "read_handler": self._read_handler,
            "ws_impl": self._ws_impl,
            "source": self._source,
            "fanout": self._fanout,
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
            "skmem_r_bytes": totals.skmem_r_bytes,
            "skmem_r_max_bytes": totals.skmem_r_max_bytes,
            "skmem_rb_bytes": totals.skmem_rb_bytes,
            "skmem_rb_max_bytes": totals.skmem_rb_max_bytes,
            "skmem_w_bytes": totals.skmem_w_bytes,
            "skmem_w_max_bytes": totals.skmem_w_max_bytes,
            "sockets_read_s": round(read_s, 6),
            "kernel_tcp_mem_pages": sockstat.get("mem", 0),
            "kernel_tcp_mem_bytes": sockstat["mem_bytes"],
            "kernel_tcp": kernel_tcp(sockstat),
            "rss_bytes": rss_bytes,
            "open_fds": open_fds,
            "threads": threads,
            "asyncio_tasks": len(asyncio.all_tasks()),
            **counters.as_dict(),
        }

    def _read_process(self) -> tuple[int, int, int]:
        with self._process.oneshot():
            rss_bytes = int(self._process.memory_info().rss)
            return rss_bytes, self._process.num_fds(), self._process.num_threads()


def kernel_tcp(sockstat: dict[str, int]) -> KernelTcp:
    """The sockets by kind of sockstat's ``TCP:`` line (0 for a figure the kernel left out)."""
    return KernelTcp(
        inuse=sockstat.get("inuse", 0),
        orphan=sockstat.get("orphan", 0),
        tw=sockstat.get("tw", 0),
        alloc=sockstat.get("alloc", 0),
    )


def read_service_sockets(port: int) -> SocketTotals:
    """Queues and skmem of this process's connected TCP sockets whose local port is ``port``."""
    return socket_totals(read_own_sockets(local=(None, port)))


def _read_kernel(port: int) -> tuple[SocketTotals, dict[str, int], float]:
    started = time.perf_counter()
    totals = read_service_sockets(port)
    read_s = time.perf_counter() - started
    return totals, read_sockstat(), read_s
