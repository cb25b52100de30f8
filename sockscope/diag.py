"""Netlink sock_diag, the interface ``ss`` uses: requests and their answers as bytes (pure).

One request (``struct inet_diag_req_v2``) asks the kernel to dump the TCP sockets of one
address family that are in a set of states and pass a filter the kernel runs itself
(``inet_diag`` bytecode: exact local and remote address and port). Each answer message is a
``struct inet_diag_msg`` (state, addresses, Recv-Q, Send-Q, uid, inode) followed by
attributes, of which we ask for one: ``INET_DIAG_SKMEMINFO``, the nine ``SK_MEMINFO_*``
figures ``ss -tm`` prints as ``skmem:(r,rb,t,tb,f,w,o,bl,d)``. Layouts: ``linux/netlink.h``,
``linux/sock_diag.h``, ``linux/inet_diag.h``; the bytecode's rules are
``inet_diag_bc_audit()`` and ``inet_diag_bc_run()`` in ``net/ipv4/inet_diag.c``.

At tens of thousands of sockets, building one Python object per socket costs more than the
kernel's whole dump. Almost every message of a dump has the same length and the same
attributes, so :class:`DumpParser` keeps such runs of messages as they came and a
:class:`SocketTable` reads one field of every socket in a run at C speed (strided
memoryviews); messages that differ are parsed one by one. :meth:`SocketTable.sockets` gives
one :class:`DiagSocket` per socket where that is wanted. The I/O is in
:mod:`sockscope.netlink`.
"""

from __future__ import annotations

import array
import dataclasses
import ipaddress
import os
import socket
import struct
import sys
from collections import Counter
from collections.abc import Collection, Iterable, Iterator
from itertools import compress
from typing import Literal

from sockscope.procfs import percentile
from sockscope.tcp import CONNECTED_STATES, TCP_STATES

__all__ = [
    "NETLINK_SOCK_DIAG",
    "DiagSocket",
    "DumpParser",
    "Endpoint",
    "Skmem",
    "SocketTable",
    "SocketTotals",
    "compile_either",
    "compile_filter",
    "dump_request",
    "ipv4_key",
    "parse_dump",
    "socket_totals",
    "states_mask",
]

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
INET_DIAG_REQ_BYTECODE = 1
INET_DIAG_SKMEMINFO = 7
INET_DIAG_BC_JMP = 1
INET_DIAG_BC_S_COND, INET_DIAG_BC_D_COND = 7, 8

# struct nlmsghdr: len, type, flags, seq, pid.
_NLMSG = struct.Struct("=IHHII")
# struct inet_diag_req_v2 with its inet_diag_sockid (ports and addresses in network order).
_REQUEST = struct.Struct("=BBBBI2s2s16s16sI8s")
# struct inet_diag_msg after the netlink header.
_MSG = struct.Struct("=BBBB2s2s16s16sI8xIIIII")
_ATTR = struct.Struct("=HH")
_SKMEM = struct.Struct("=9I")
_BC_OP = struct.Struct("=BBH")
_HOSTCOND = struct.Struct("=BB2xi")
_ERRNO = struct.Struct("=i")

_MSG_AT = _NLMSG.size  # where struct inet_diag_msg begins in a message
_ATTRS_AT = _MSG_AT + _MSG.size  # where the attributes begin
_NOCOOKIE = b"\xff" * 8
_STATE_CODES = {name: code for code, name in TCP_STATES.items()}

Endpoint = tuple[str | None, int | None]
"""An address and a port to match exactly; None matches any."""


def _align(size: int) -> int:
    return (size + 3) & ~3


@dataclasses.dataclass(frozen=True, slots=True)
class Skmem:
    """``SK_MEMINFO_*``: a socket's kernel memory in bytes, as ``ss -tm`` prints it."""

    rmem_alloc: int  # r: received data the socket holds (skb truesize, overhead included)
    rcvbuf: int  # rb: the receive buffer's limit
    wmem_alloc: int  # t: sent data not yet freed by the layers below
    sndbuf: int  # tb: the send buffer's limit
    fwd_alloc: int  # f: memory reserved ahead for the socket
    wmem_queued: int  # w: the send queue (unsent and unacknowledged data)
    optmem: int  # o: options and filters
    backlog: int  # bl: packets waiting while the socket was locked
    drops: int  # d: packets dropped


@dataclasses.dataclass(frozen=True, slots=True)
class DiagSocket:
    """One TCP socket as sock_diag reports it."""

    family: int  # socket.AF_INET or socket.AF_INET6
    state: str
    local: tuple[str, int]
    remote: tuple[str, int]
    inode: int  # 0 once no process holds it (orphans, TIME_WAIT)
    uid: int
    recv_q_bytes: int  # connected: received, not read; LISTEN: the accept backlog
    send_q_bytes: int  # connected: not yet acknowledged; LISTEN: the backlog's limit
    skmem: Skmem | None


@dataclasses.dataclass(frozen=True, slots=True)
class SocketTotals:
    """Queues and kernel memory summed (and their largest) over a set of sockets."""

    sockets: int
    states: dict[str, int]
    recv_q_bytes: int
    recv_q_max_bytes: int
    recv_q_p99_bytes: int
    send_q_bytes: int
    send_q_max_bytes: int
    skmem_r_bytes: int
    skmem_r_max_bytes: int
    skmem_rb_bytes: int
    skmem_rb_max_bytes: int
    skmem_t_bytes: int
    skmem_w_bytes: int
    skmem_w_max_bytes: int


# Requests


def states_mask(states: Iterable[str]) -> int:
    """The ``idiag_states`` bit mask of TCP state names (``ESTABLISHED`` is bit 1)."""
    mask = 0
    for name in states:
        if name not in _STATE_CODES:
            raise ValueError(f"unknown TCP state {name!r}")
        mask |= 1 << _STATE_CODES[name]
    return mask


def compile_filter(local: Endpoint | None = None, remote: Endpoint | None = None) -> bytes:
    """inet_diag bytecode that keeps the sockets whose local and remote ends are these.

    Each end given becomes one ``S_COND`` / ``D_COND`` op: its port (or any), its address
    with a full-length prefix (or any). An op that matches goes on to the next (``yes`` is
    its own length, as the kernel's audit requires); one that fails jumps past the end,
    which rejects the socket. An IPv4 address also matches IPv6 sockets whose address is
    that one, IPv4-mapped, as the kernel compares them. No end given: no bytecode at all.
    """
    conds = []
    for code, end in ((INET_DIAG_BC_S_COND, local), (INET_DIAG_BC_D_COND, remote)):
        if end is not None:
            conds.append((code, _hostcond(*end)))
    ops = []
    remaining = sum(_BC_OP.size + len(cond) for _, cond in conds)
    for code, cond in conds:
        size = _BC_OP.size + len(cond)
        ops.append(_BC_OP.pack(code, size, remaining + 4) + cond)
        remaining -= size
    return b"".join(ops)


def compile_either(end: Endpoint) -> bytes:
    """inet_diag bytecode that keeps the sockets whose local *or* remote end is ``end``.

    One dump then holds both sides of a server's connections: its own sockets (local end
    ``end``) and its clients' (remote end ``end``), for one walk of the kernel's table instead
    of two. The audit follows every op's ``yes``, so each ``yes`` is its op's own length and
    the "or" is a ``JMP`` (which always takes ``no``) to the end: ``S_COND`` true -> ``JMP``
    -> accept; false -> ``D_COND``, whose failure jumps past the end (reject).
    """
    cond = _hostcond(*end)
    cond_size = _BC_OP.size + len(cond)
    jmp_size = _BC_OP.size
    return b"".join(
        [
            _BC_OP.pack(INET_DIAG_BC_S_COND, cond_size, cond_size + jmp_size) + cond,
            _BC_OP.pack(INET_DIAG_BC_JMP, jmp_size, jmp_size + cond_size),
            _BC_OP.pack(INET_DIAG_BC_D_COND, cond_size, cond_size + 4) + cond,
        ]
    )


def _hostcond(address: str | None, port: int | None) -> bytes:
    if port is not None and not 0 <= port <= 0xFFFF:
        raise ValueError(f"port {port} out of range")
    wanted_port = -1 if port is None else port
    if address is None:
        return _HOSTCOND.pack(socket.AF_UNSPEC, 0, wanted_port)
    packed = ipaddress.ip_address(address).packed
    family = socket.AF_INET if len(packed) == 4 else socket.AF_INET6
    return _HOSTCOND.pack(family, 8 * len(packed), wanted_port) + packed


def dump_request(
    family: int,
    *,
    states: Collection[str] = CONNECTED_STATES,
    bytecode: bytes = b"",
    skmem: bool = True,
    local_port: int | None = None,
    remote_port: int | None = None,
    seq: int = 1,
) -> bytes:
    """The netlink message asking for a dump of the TCP sockets of ``family``.

    ``local_port`` and ``remote_port`` go into the request's socket id as well, where the
    kernel checks them before it runs the bytecode (a cheap first cut).
    """
    ext = 1 << (INET_DIAG_SKMEMINFO - 1) if skmem else 0
    body = _REQUEST.pack(
        family,
        socket.IPPROTO_TCP,
        ext,
        0,
        states_mask(states),
        (local_port or 0).to_bytes(2, "big"),
        (remote_port or 0).to_bytes(2, "big"),
        b"",
        b"",
        0,
        _NOCOOKIE,
    )
    if bytecode:
        body += _ATTR.pack(_ATTR.size + len(bytecode), INET_DIAG_REQ_BYTECODE) + bytecode
    flags = NLM_F_REQUEST | NLM_F_DUMP
    return _NLMSG.pack(_NLMSG.size + len(body), SOCK_DIAG_BY_FAMILY, flags, seq, 0) + body


# Answers: one socket at a time


def _address(family: int, raw: bytes) -> str:
    if family == socket.AF_INET:
        return socket.inet_ntop(socket.AF_INET, raw[:4])
    return socket.inet_ntop(socket.AF_INET6, raw)


def _parse_message(data: bytes | memoryview, offset: int, length: int) -> DiagSocket:
    """The socket of the ``SOCK_DIAG_BY_FAMILY`` message of ``length`` bytes at ``offset``."""
    if length < _ATTRS_AT:
        raise ValueError(f"sock_diag message of {length} bytes is too short")
    (family, state, _timer, _retrans, sport, dport, src, dst, _if, _expires, rqueue, wqueue,
     uid, inode) = _MSG.unpack_from(data, offset + _MSG_AT)  # fmt: skip
    skmem = None
    at, end = offset + _ATTRS_AT, offset + length
    while at + _ATTR.size <= end:
        size, kind = _ATTR.unpack_from(data, at)
        if size < _ATTR.size:
            raise ValueError(f"attribute of {size} bytes in a sock_diag message")
        if kind == INET_DIAG_SKMEMINFO and size >= _ATTR.size + _SKMEM.size:
            skmem = Skmem(*_SKMEM.unpack_from(data, at + _ATTR.size))
        at += _align(size)
    return DiagSocket(
        family=family,
        state=TCP_STATES.get(state, f"UNKNOWN({state})"),
        local=(_address(family, src), int.from_bytes(sport, "big")),
        remote=(_address(family, dst), int.from_bytes(dport, "big")),
        inode=inode,
        uid=uid,
        recv_q_bytes=rqueue,
        send_q_bytes=wqueue,
        skmem=skmem,
    )


def _skmem_offset(data: bytes | memoryview, offset: int, length: int) -> int | None:
    """Where the skmem figures of the message at ``offset`` begin, from the message's start."""
    at, end = offset + _ATTRS_AT, offset + length
    while at + _ATTR.size <= end:
        size, kind = _ATTR.unpack_from(data, at)
        if size < _ATTR.size:
            return None
        if kind == INET_DIAG_SKMEMINFO and size >= _ATTR.size + _SKMEM.size:
            return at + _ATTR.size - offset
        at += _align(size)
    return None


# Answers: runs of messages alike, read a field at a time

# Field name -> (kind, byte offset in a message). "u8" and "u32" are native, "be16" network.
_FIELDS: dict[str, tuple[Literal["u8", "be16", "u32"], int]] = {
    "family": ("u8", _MSG_AT),
    "state": ("u8", _MSG_AT + 1),
    "local_port": ("be16", _MSG_AT + 4),
    # An AF_INET socket's local address: its four bytes read as one native u32 (ipv4_key).
    "local_ipv4": ("u32", _MSG_AT + 8),
    "remote_port": ("be16", _MSG_AT + 6),
    "recv_q": ("u32", _MSG_AT + 56),
    "send_q": ("u32", _MSG_AT + 60),
    "uid": ("u32", _MSG_AT + 64),
    "inode": ("u32", _MSG_AT + 68),
}
# skmem figure -> its index among the nine u32 of SK_MEMINFO.
_SKMEM_FIELDS = {field.name: index for index, field in enumerate(dataclasses.fields(Skmem))}


@dataclasses.dataclass(frozen=True, slots=True)
class _Run:
    """``count`` messages of ``length`` bytes each, alike, from ``offset`` in ``data``."""

    data: bytes = dataclasses.field(repr=False)
    offset: int
    length: int
    count: int
    skmem_at: int | None  # where the skmem figures begin in each message, if present

    def column(self, field: str) -> list[int]:
        region = memoryview(self.data)[self.offset : self.offset + self.count * self.length]
        if field in _SKMEM_FIELDS:
            if self.skmem_at is None:
                return [0] * self.count
            at, kind = self.skmem_at + 4 * _SKMEM_FIELDS[field], "u32"
        else:
            kind, at = _FIELDS[field]
        if kind == "u8":
            return region[at :: self.length].tolist()
        if kind == "u32":
            return region.cast("I")[at // 4 :: self.length // 4].tolist()
        values = array.array("H", region.cast("H")[at // 2 :: self.length // 2].tobytes())
        if sys.byteorder == "little":
            values.byteswap()
        return values.tolist()

    def sockets(self) -> Iterator[DiagSocket]:
        for index in range(self.count):
            yield _parse_message(self.data, self.offset + index * self.length, self.length)


def ipv4_key(address: str) -> int:
    """An IPv4 address as the ``local_ipv4`` column gives it (its bytes as a native u32)."""
    return int.from_bytes(ipaddress.IPv4Address(address).packed, sys.byteorder)


def _unmapped(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """``address`` parsed, an IPv4-mapped IPv6 address as its IPv4 one."""
    parsed = ipaddress.ip_address(address)
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        return parsed.ipv4_mapped
    return parsed


def _row_column(sock: DiagSocket, field: str) -> int:
    if field in _SKMEM_FIELDS:
        return 0 if sock.skmem is None else int(getattr(sock.skmem, field))
    if field == "state":
        return _STATE_CODES.get(sock.state, 0)
    values = {
        "family": sock.family,
        "local_port": sock.local[1],
        "remote_port": sock.remote[1],
        "recv_q": sock.recv_q_bytes,
        "send_q": sock.send_q_bytes,
        "uid": sock.uid,
        "inode": sock.inode,
        "local_ipv4": ipv4_key(sock.local[0]) if sock.family == socket.AF_INET else 0,
    }
    return values[field]


class SocketTable:
    """The sockets of one or more dumps, in the order the kernel sent them.

    :meth:`column` gives one field of every socket (``state`` as the kernel's number,
    ports, ``recv_q``, ``send_q``, ``uid``, ``inode``, ``local_ipv4`` (see :func:`ipv4_key`),
    or a field of :class:`Skmem`);
    :meth:`with_inodes` keeps the sockets of one process.
    """

    def __init__(self) -> None:
        self._parts: list[_Run | DiagSocket] = []
        self._count = 0
        self._keep: list[bool] | None = None  # None: every socket

    def __len__(self) -> int:
        return self._count if self._keep is None else sum(self._keep)

    def add_run(self, run: _Run) -> None:
        """Keep ``run.count`` sockets whose messages are alike."""
        self._add(run, run.count)

    def add_socket(self, sock: DiagSocket) -> None:
        """Keep one socket parsed on its own."""
        self._add(sock, 1)

    def _add(self, part: _Run | DiagSocket, count: int) -> None:
        if self._keep is not None:
            raise ValueError("a selection of a table is read-only")
        self._parts.append(part)
        self._count += count

    def with_inodes(self, inodes: Collection[int]) -> SocketTable:
        """The sockets whose inode is in ``inodes`` (a process's, from its fds)."""
        return self._select([inode in inodes for inode in self._all("inode")])

    def split_local(self, end: tuple[str, int]) -> tuple[SocketTable, SocketTable]:
        """The sockets whose local end is exactly ``end``, and the others.

        IPv4 sockets are compared by columns; IPv6 ones (an IPv4 ``end`` matches an IPv4-mapped
        address, as the kernel's filter does) one by one, about a microsecond each.
        """
        address, port = end
        wanted = _unmapped(address)
        key = ipv4_key(str(wanted)) if wanted.version == 4 else None
        families = self._all("family")
        at_end = [
            family == socket.AF_INET and local_port == port and local_ipv4 == key
            for family, local_port, local_ipv4 in zip(
                families, self._all("local_port"), self._all("local_ipv4"), strict=True
            )
        ]
        if socket.AF_INET6 in families:
            for index, sock in enumerate(self._every_socket()):
                if sock.family == socket.AF_INET6:
                    at_end[index] = sock.local[1] == port and _unmapped(sock.local[0]) == wanted
        return self._select(at_end), self._select([not kept for kept in at_end])

    def joined(self, other: SocketTable) -> SocketTable:
        """The sockets of this table, then those of ``other``."""
        joined = SocketTable()
        joined._parts, joined._count = [*self._parts, *other._parts], self._count + other._count
        if self._keep is not None or other._keep is not None:
            joined._keep = [*self._kept(), *other._kept()]
        return joined

    def _kept(self) -> list[bool]:
        return [True] * self._count if self._keep is None else self._keep

    def _select(self, keep: list[bool]) -> SocketTable:
        selection = SocketTable()
        selection._parts, selection._count = self._parts, self._count
        if self._keep is not None:
            keep = [a and b for a, b in zip(keep, self._keep, strict=True)]
        selection._keep = None if all(keep) else keep
        return selection

    def column(self, field: str) -> list[int]:
        """One field of every socket, in order."""
        if field not in _FIELDS and field not in _SKMEM_FIELDS:
            raise KeyError(field)
        values = self._all(field)
        return values if self._keep is None else list(compress(values, self._keep))

    def sockets(self) -> list[DiagSocket]:
        """One object per socket (costs about a microsecond each)."""
        found = self._every_socket()
        return found if self._keep is None else list(compress(found, self._keep))

    def _every_socket(self) -> list[DiagSocket]:
        found: list[DiagSocket] = []
        for part in self._parts:
            if isinstance(part, _Run):
                found.extend(part.sockets())
            else:
                found.append(part)
        return found

    def _all(self, field: str) -> list[int]:
        values: list[int] = []
        for part in self._parts:
            if isinstance(part, _Run):
                values.extend(part.column(field))
            else:
                values.append(_row_column(part, field))
        return values


class DumpParser:
    """Reads the datagrams of one dump into a :class:`SocketTable` (sans I/O).

    Feed it each datagram as received; :attr:`done` turns true at ``NLMSG_DONE``. A
    kernel's ``NLMSG_ERROR`` is raised as :class:`OSError` with its errno.
    """

    def __init__(self, table: SocketTable | None = None) -> None:
        self.table = SocketTable() if table is None else table
        self.done = False

    def feed(self, data: bytes) -> None:
        """Parse one datagram (one or more netlink messages)."""
        offset, size = 0, len(data)
        while offset + _NLMSG.size <= size and not self.done:
            length, kind, _flags, _seq, _pid = _NLMSG.unpack_from(data, offset)
            if length < _NLMSG.size or offset + length > size:
                raise ValueError(f"netlink message of {length} bytes at {offset} of {size}")
            if kind == NLMSG_DONE:
                self.done = True
            elif kind == NLMSG_ERROR:
                (errno,) = _ERRNO.unpack_from(data, offset + _NLMSG.size)
                if errno:
                    raise OSError(-errno, f"sock_diag: {os.strerror(-errno)}")
                self.done = True  # an acknowledgement
            elif kind == SOCK_DIAG_BY_FAMILY:
                count = _alike(data, offset, length)
                if count > 1:
                    skmem_at = _skmem_offset(data, offset, length)
                    self.table.add_run(_Run(data, offset, length, count, skmem_at))
                    offset += count * length
                    continue
                self.table.add_socket(_parse_message(data, offset, length))
            else:
                raise ValueError(f"unexpected netlink message type {kind}")
            offset += _align(length)


def _alike(data: bytes, offset: int, length: int) -> int:
    """How many messages from ``offset`` have the first one's length, header and skmem place."""
    if length % 4:
        return 1
    most = (len(data) - offset) // length
    if most < 2:
        return 1
    words = memoryview(data)[offset : offset + most * length].cast("I")
    step = length // 4
    checks = [0, 1]  # nlmsg_len; nlmsg_type with nlmsg_flags
    skmem_at = _skmem_offset(data, offset, length)
    if skmem_at is not None:
        checks.append(skmem_at // 4 - 1)  # the skmem attribute's own header
    count = most
    for word in checks:
        column = words[word::step].tolist()
        first = column[0]
        if column.count(first) != len(column):
            count = min(count, next(i for i, value in enumerate(column) if value != first))
    return count


def parse_dump(datagrams: Iterable[bytes]) -> SocketTable:
    """The sockets of a whole dump given as its datagrams (ends at ``NLMSG_DONE``)."""
    parser = DumpParser()
    for data in datagrams:
        parser.feed(data)
        if parser.done:
            break
    return parser.table


# Totals


def socket_totals(table: SocketTable) -> SocketTotals:
    """Queues and skmem summed, and their largest, over the sockets of ``table``.

    Recv-Q and Send-Q of LISTEN sockets are their accept backlog: leave LISTEN out of the
    dump's states to have queue figures only.
    """
    columns = {
        name: table.column(name)
        for name in ("state", "recv_q", "send_q", "rmem_alloc", "rcvbuf", "wmem_alloc",
                     "wmem_queued")
    }  # fmt: skip
    recv_q = columns["recv_q"]
    return SocketTotals(
        sockets=len(recv_q),
        states={
            TCP_STATES.get(code, f"UNKNOWN({code})"): count
            for code, count in sorted(Counter(columns["state"]).items())
        },
        recv_q_bytes=sum(recv_q),
        recv_q_max_bytes=max(recv_q, default=0),
        recv_q_p99_bytes=int(percentile(sorted(recv_q), 99)),
        send_q_bytes=sum(columns["send_q"]),
        send_q_max_bytes=max(columns["send_q"], default=0),
        skmem_r_bytes=sum(columns["rmem_alloc"]),
        skmem_r_max_bytes=max(columns["rmem_alloc"], default=0),
        skmem_rb_bytes=sum(columns["rcvbuf"]),
        skmem_rb_max_bytes=max(columns["rcvbuf"], default=0),
        skmem_t_bytes=sum(columns["wmem_alloc"]),
        skmem_w_bytes=sum(columns["wmem_queued"]),
        skmem_w_max_bytes=max(columns["wmem_queued"], default=0),
    )
