"""One socket of this process, asked about through its fd: addresses, TCP state, queues.

The kernel answers a process about its own sockets directly, without reading the whole
namespace's ``/proc/net/tcp``: ``ioctl(FIONREAD)`` gives the bytes received and not read
(Recv-Q), ``ioctl(SIOCOUTQ)`` the bytes not yet acknowledged by the peer (Send-Q), and
``TCP_INFO`` the state and, on a LISTEN socket, the accept backlog. A few microseconds per
socket. The fd is duplicated first, so the caller's fd is never touched.
"""

from __future__ import annotations

import array
import dataclasses
import fcntl
import os
import socket
import termios

from sockscope.tcp import CONNECTED_STATES, parse_tcp_info

__all__ = ["SocketInfo", "format_address", "inspect_socket", "transport_name"]

_TCP_INFO = getattr(socket, "TCP_INFO", 11)
_TCP_INFO_BYTES = 104  # struct tcp_info up to tcpi_rcv_space is plenty for what we read
_SIOCINQ = termios.FIONREAD
_SIOCOUTQ = termios.TIOCOUTQ

_TRANSPORTS: dict[tuple[int, int], str] = {
    (socket.AF_INET, socket.SOCK_STREAM): "tcp",
    (socket.AF_INET6, socket.SOCK_STREAM): "tcp6",
    (socket.AF_INET, socket.SOCK_DGRAM): "udp",
    (socket.AF_INET6, socket.SOCK_DGRAM): "udp6",
    (socket.AF_UNIX, socket.SOCK_STREAM): "unix",
    (socket.AF_UNIX, socket.SOCK_DGRAM): "unix-dgram",
    (socket.AF_UNIX, socket.SOCK_SEQPACKET): "unix-seqpacket",
}


@dataclasses.dataclass(frozen=True, slots=True)
class SocketInfo:
    """What the kernel says about one socket of ours, now."""

    fd: int
    inode: int | None
    transport: str  # tcp, tcp6, udp, udp6, unix, unix-dgram, ...
    state: str | None  # TCP state; None for other transports
    local: str
    peer: str | None
    recv_q_bytes: int | None  # received, not read (connected sockets)
    send_q_bytes: int | None  # sent, not yet acknowledged (connected sockets)
    accept_backlog: int | None = None  # LISTEN: connections waiting for accept()
    accept_limit: int | None = None  # LISTEN: the backlog given to listen()

    @property
    def is_tcp(self) -> bool:
        """Whether this is a TCP socket (IPv4 or IPv6)."""
        return self.transport in ("tcp", "tcp6")

    @property
    def unread_bytes(self) -> int:
        """Bytes a connected TCP socket holds that the application has not read."""
        if self.is_tcp and self.state in CONNECTED_STATES:
            return self.recv_q_bytes or 0
        return 0

    @property
    def unaccepted(self) -> int:
        """Connections a LISTEN socket holds that the application has not accepted."""
        return self.accept_backlog or 0

    def describe(self) -> str:
        """``tcp CLOSE_WAIT local 127.0.0.1:8000 peer 127.0.0.1:51344``."""
        words = [self.transport]
        if self.state:
            words.append(self.state)
        words.append(f"local {self.local}")
        if self.peer:
            words.append(f"peer {self.peer}")
        return " ".join(words)


def transport_name(family: int, kind: int) -> str:
    """``tcp``, ``udp6``, ``unix`` ... for a socket's family and type."""
    known = _TRANSPORTS.get((family, kind))
    if known:
        return known
    return f"{_enum_name(socket.AddressFamily, family)}/{_enum_name(socket.SocketKind, kind)}"


def format_address(family: int, address: object) -> str:
    """An address as people write it: ``127.0.0.1:80``, ``[::1]:80``, a path, ``@abstract``."""
    if family == socket.AF_INET and isinstance(address, tuple):
        return f"{address[0]}:{address[1]}"
    if family == socket.AF_INET6 and isinstance(address, tuple):
        return f"[{address[0]}]:{address[1]}"
    if family == socket.AF_UNIX:
        if isinstance(address, bytes):  # the abstract namespace: a leading NUL byte
            return "@" + address[1:].decode(errors="replace") if address else "(unnamed)"
        return str(address) if address else "(unnamed)"
    return str(address)


def inspect_socket(fd: int, inode: int | None = None) -> SocketInfo | None:
    """Ask the kernel about the socket open at ``fd``; None if it is not a socket (any more)."""
    try:
        dup = os.dup(fd)
    except OSError:
        return None
    try:
        sock = socket.socket(fileno=dup)
    except OSError:
        os.close(dup)
        return None
    with sock:
        try:
            return _inspect(sock, fd, inode)
        except OSError:
            return None


def _inspect(sock: socket.socket, fd: int, inode: int | None) -> SocketInfo:
    family, kind = sock.family, sock.type
    transport = transport_name(family, kind)
    local = format_address(family, sock.getsockname())
    try:
        peer: str | None = format_address(family, sock.getpeername())
    except OSError:  # not connected
        peer = None
    state = backlog = limit = None
    if transport in ("tcp", "tcp6"):
        info = parse_tcp_info(sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, _TCP_INFO_BYTES))
        state, backlog, limit = info.state, info.accept_backlog, info.accept_limit
    # FIONREAD is refused (EINVAL) on a listening socket: that is the accept backlog's case.
    recv_q = None if state == "LISTEN" else _ioctl_int(sock.fileno(), _SIOCINQ)
    send_q = None if state == "LISTEN" else _ioctl_int(sock.fileno(), _SIOCOUTQ)
    return SocketInfo(fd, inode, transport, state, local, peer, recv_q, send_q, backlog, limit)


def _ioctl_int(fd: int, request: int) -> int | None:
    buf = array.array("i", [0])
    try:
        fcntl.ioctl(fd, request, buf)
    except OSError:
        return None
    return buf[0]


def _enum_name(enum: type[socket.AddressFamily] | type[socket.SocketKind], value: int) -> str:
    try:
        return enum(value).name
    except ValueError:
        return str(value)
