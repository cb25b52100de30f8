"""Tests for sockscope.sockets on real loopback sockets, checked against ss and /proc/net/tcp.

The witnesses are found by inode (``ss -e`` prints ``ino:N``; /proc/net/tcp has an inode
column), never by port, so other programs' loopback sockets on this machine cannot confuse
them.
"""

import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sockscope.sockets import format_address, inspect_socket, transport_name
from sockscope.tcp import TcpRow, parse_proc_net_tcp

pytestmark = pytest.mark.timeout(30)


def inode(sock: socket.socket) -> int:
    """The socket's inode, as /proc/self/fd links it."""
    return os.fstat(sock.fileno()).st_ino


def proc_row(ino: int) -> TcpRow:
    """The /proc/net/tcp{,6} row of the socket with this inode."""
    for name in ("tcp", "tcp6"):
        path = Path("/proc/net") / name
        if path.exists():
            for row in parse_proc_net_tcp(path.read_text()):
                if row.inode == ino:
                    return row
    raise LookupError(ino)


def ss_queues(ino: int) -> tuple[str, int, int]:
    """(state, Recv-Q, Send-Q) of the socket with this inode, as ``ss -tanie`` prints them."""
    out = subprocess.run(["ss", "-tanieH"], capture_output=True, text=True, check=True).stdout
    # Each socket's line ends with its details; ino:N identifies it.
    for line in out.splitlines():
        if re.search(rf"\bino:{ino}\b", line):
            state, recv_q, send_q = line.split()[:3]
            return state, int(recv_q), int(send_q)
    raise LookupError(ino)


def reading(fd: int, field: str) -> object:
    """One field of what inspect_socket says about ``fd`` now (None if it says nothing)."""
    return getattr(inspect_socket(fd), field, None)


def eventually(condition: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    """Poll until ``condition`` holds or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A loopback listening socket with a backlog of 8."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock


needs_ss = pytest.mark.skipif(shutil.which("ss") is None, reason="ss (iproute2) is not installed")


@needs_ss
def test_unread_bytes_agree_with_ss_and_proc(listener: socket.socket) -> None:
    """FIONREAD on our accepted socket gives the Recv-Q that ss and /proc/net/tcp show."""
    with socket.create_connection(listener.getsockname()) as client:
        server, _ = listener.accept()
        with server:
            client.sendall(b"x" * 5000)
            assert eventually(lambda: reading(server.fileno(), "recv_q_bytes") == 5000)
            info = inspect_socket(server.fileno(), inode(server))
            assert info is not None
            assert (info.transport, info.state, info.unread_bytes) == ("tcp", "ESTABLISHED", 5000)
            assert info.local == "{}:{}".format(*listener.getsockname())
            assert info.peer == "{}:{}".format(*client.getsockname())
            assert ss_queues(inode(server))[:2] == ("ESTAB", 5000)
            assert proc_row(inode(server)).recv_q_bytes == 5000


@needs_ss
def test_accept_backlog_agrees_with_ss(listener: socket.socket) -> None:
    """A LISTEN socket's accept backlog is what ss shows as its Recv-Q."""
    clients = [socket.create_connection(listener.getsockname()) for _ in range(3)]
    try:
        assert eventually(lambda: reading(listener.fileno(), "unaccepted") == 3)
        info = inspect_socket(listener.fileno())
        assert info is not None
        assert (info.state, info.accept_backlog, info.accept_limit) == ("LISTEN", 3, 8)
        assert info.recv_q_bytes is None
        assert ss_queues(inode(listener)) == ("LISTEN", 3, 8)
        assert proc_row(inode(listener)).recv_q_bytes == 3
    finally:
        for client in clients:
            client.close()
        for _ in range(reading(listener.fileno(), "unaccepted") or 0):
            listener.accept()[0].close()


def test_close_wait_keeps_its_unread_bytes(listener: socket.socket) -> None:
    """After the peer closed, our socket is CLOSE_WAIT and still holds what it was sent."""
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    with server:
        client.sendall(b"bye")
        client.close()
        assert eventually(lambda: reading(server.fileno(), "state") == "CLOSE_WAIT")
        info = inspect_socket(server.fileno())
        assert info is not None
        assert info.unread_bytes == 3
        assert info.describe().startswith("tcp CLOSE_WAIT local 127.0.0.1:")


def test_unix_socket_pair_and_not_a_socket() -> None:
    """A Unix socketpair is described without TCP state; a pipe is not a socket at all."""
    left, right = socket.socketpair()
    with left, right:
        info = inspect_socket(left.fileno())
        assert info is not None
        assert (info.transport, info.state, info.local) == ("unix", None, "(unnamed)")
        assert not info.is_tcp
    read_end, write_end = os.pipe()
    try:
        assert inspect_socket(read_end) is None
    finally:
        os.close(read_end)
        os.close(write_end)


def test_inspecting_leaves_the_fd_open(listener: socket.socket) -> None:
    """The fd is duplicated: the caller's socket keeps working after inspection."""
    inspect_socket(listener.fileno())
    assert listener.getsockname()[0] == "127.0.0.1"


def test_format_address_and_transport_name() -> None:
    """Addresses as people write them; transports by family and type."""
    assert format_address(socket.AF_INET, ("127.0.0.1", 80)) == "127.0.0.1:80"
    assert format_address(socket.AF_INET6, ("::1", 80, 0, 0)) == "[::1]:80"
    assert format_address(socket.AF_UNIX, "/run/app.sock") == "/run/app.sock"
    assert format_address(socket.AF_UNIX, b"\0hidden") == "@hidden"
    assert format_address(socket.AF_UNIX, "") == "(unnamed)"
    assert transport_name(socket.AF_INET6, socket.SOCK_STREAM) == "tcp6"
    assert transport_name(socket.AF_INET, socket.SOCK_RAW) == "AF_INET/SOCK_RAW"
