"""The short shell around :mod:`sockscope.diag`: one netlink socket, one dump per family.

Blocking (a dump of tens of thousands of sockets takes milliseconds of kernel time): callers
on an event loop run it in a thread, ``await asyncio.to_thread(read_sockets, ...)``.
"""

from __future__ import annotations

import socket
from collections.abc import Collection, Sequence

from sockscope.diag import (
    NETLINK_SOCK_DIAG,
    DumpParser,
    Endpoint,
    SocketTable,
    compile_filter,
    dump_request,
)
from sockscope.fds import socket_inodes
from sockscope.tcp import CONNECTED_STATES

__all__ = ["FAMILIES", "RECV_BYTES", "read_own_sockets", "read_sockets"]

FAMILIES = (socket.AF_INET, socket.AF_INET6)
# The kernel fills a dump's datagrams up to 32 KiB; a bigger buffer never truncates one.
RECV_BYTES = 1 << 16


def read_sockets(
    *,
    local: Endpoint | None = None,
    remote: Endpoint | None = None,
    states: Collection[str] = CONNECTED_STATES,
    skmem: bool = True,
    families: Sequence[int] = FAMILIES,
) -> SocketTable:
    """The TCP sockets of this network namespace whose ends are ``local`` and ``remote``.

    The kernel does the filtering (states, exact addresses and ports), so the cost grows
    with the sockets that match, not with every socket of the host.
    """
    bytecode = compile_filter(local, remote)
    table = SocketTable()
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG) as sock:
        for seq, family in enumerate(families, start=1):
            request = dump_request(
                family,
                states=states,
                bytecode=bytecode,
                skmem=skmem,
                local_port=None if local is None else local[1],
                remote_port=None if remote is None else remote[1],
                seq=seq,
            )
            sock.sendall(request)
            parser = DumpParser(table)
            while not parser.done:
                parser.feed(sock.recv(RECV_BYTES))
    return table


def read_own_sockets(
    *,
    local: Endpoint | None = None,
    remote: Endpoint | None = None,
    states: Collection[str] = CONNECTED_STATES,
    skmem: bool = True,
) -> SocketTable:
    """This process's sockets among those :func:`read_sockets` finds: by the inodes of its fds.

    Another process's socket with the same addresses or ports is left out; a socket this
    process still holds is in, whatever else holds it (a session the application already
    dropped, say). Sockets nobody holds (orphans closing, TIME_WAIT) have no inode: out.
    """
    table = read_sockets(local=local, remote=remote, states=states, skmem=skmem)
    return table.with_inodes(socket_inodes())
