"""The short shell around :mod:`sockscope.diag`: one netlink socket, one dump per family.

Blocking (a dump of tens of thousands of sockets takes milliseconds of kernel time): callers
on an event loop run it in a thread, ``await asyncio.to_thread(read_sockets, ...)``.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Collection, Sequence

from sockscope.diag import (
    NETLINK_SOCK_DIAG,
    DumpParser,
    Endpoint,
    SocketTable,
    compile_either,
    compile_filter,
    dump_request,
)
from sockscope.fds import socket_inodes
from sockscope.tcp import CONNECTED_STATES

__all__ = ["FAMILIES", "RECV_BYTES", "read_both_ends", "read_own_sockets", "read_sockets"]

FAMILIES = (socket.AF_INET, socket.AF_INET6)
# The kernel fills a dump's datagrams up to 32 KiB; a bigger buffer never truncates one.
RECV_BYTES = 1 << 16


def read_sockets(
    *,
    local: Endpoint | None = None,
    remote: Endpoint | None = None,
    either: Endpoint | None = None,
    states: Collection[str] = CONNECTED_STATES,
    skmem: bool = True,
    families: Sequence[int] = FAMILIES,
) -> SocketTable:
    """The TCP sockets of this network namespace whose ends are ``local`` and ``remote``, or
    with ``either`` instead, whose local or remote end is ``either`` (a server's sockets and
    its clients' in one dump; :meth:`SocketTable.split_local` tells them apart).

    The kernel does the filtering (states, exact addresses and ports), so the cost grows
    with the sockets that match, not with every socket of the host.
    """
    if either is not None and (local is not None or remote is not None):
        raise ValueError("read_sockets: either= excludes local= and remote=")
    bytecode = compile_filter(local, remote) if either is None else compile_either(either)
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


def read_both_ends(
    end: tuple[str, int], *, states: Collection[str] = CONNECTED_STATES, skmem: bool = False
) -> tuple[SocketTable, SocketTable]:
    """A server's sockets (local end ``end``) and the others connected to ``end`` (its clients).

    One dump with both sides per family, and IPv6 only when IPv4 holds no socket of the
    server: a listener's family is that of all its sockets, and a dual-stack listener's are
    IPv6 (IPv4-mapped). So a server on IPv4 costs one walk of the kernel's table, not two.
    Clients are looked for in the same families (an IPv4 address is reached by IPv4 sockets).
    """
    family = socket.AF_INET if ipaddress.ip_address(end[0]).version == 4 else socket.AF_INET6
    table = read_sockets(either=end, states=states, skmem=skmem, families=(family,))
    server, clients = table.split_local(end)
    if len(server) or family == socket.AF_INET6:
        return server, clients
    mapped = read_sockets(either=end, states=states, skmem=skmem, families=(socket.AF_INET6,))
    server, mapped_clients = mapped.split_local(end)
    return server, clients.joined(mapped_clients)


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
