"""Tests for sockscope.netlink on real loopback sockets, checked against ``ss`` socket by socket.

The witness is ``ss -tmnHe`` (netlink too, but another program's parser and filter), matched
by inode. Decoys share the port number on other loopback addresses (127.0.0.0/8 is all
``lo``): a filter by exact address and port must leave them out, and the sockets of another
process must not count as ours.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

from sockscope.diag import DiagSocket, ipv4_key
from sockscope.netlink import read_both_ends, read_own_sockets, read_sockets
from tests.utils import SsSocket, ss_sockets

pytestmark = [
    pytest.mark.timeout(30),
    pytest.mark.skipif(shutil.which("ss") is None, reason="ss (iproute2) is not installed"),
]


# ss's names of the SK_MEMINFO figures, in the kernel's order (sockscope.diag.Skmem's).
SS_SKMEM = ("r", "rb", "t", "tb", "f", "w", "o", "bl", "d")


def inode(sock: socket.socket) -> int:
    return os.fstat(sock.fileno()).st_ino


def ss_endpoint(end: tuple[str, int]) -> str:
    """An endpoint as ss prints it."""
    return f"[{end[0]}]:{end[1]}" if ":" in end[0] else f"{end[0]}:{end[1]}"


def assert_same(ours: DiagSocket, witness: SsSocket) -> None:
    """Every figure both report, equal."""
    assert ours.inode == witness.inode
    assert ours.state == witness.state
    assert (ours.recv_q_bytes, ours.send_q_bytes) == (witness.recv_q_bytes, witness.send_q_bytes)
    assert (ss_endpoint(ours.local), ss_endpoint(ours.remote)) == (witness.local, witness.remote)
    assert ours.skmem is not None
    mem = ours.skmem
    assert dict(zip(SS_SKMEM, dataclasses.astuple(mem), strict=True)) == witness.skmem


def settled_pair(local: tuple[str, int], attempts: int = 20) -> tuple[list[DiagSocket], list]:
    """Our reading and ss's of the sockets at ``local``, with ss unchanged around ours."""
    words = ("state", "established", "src", ss_endpoint(local))
    for _ in range(attempts):
        before = ss_sockets(*words)
        ours = read_sockets(local=local).sockets()
        if ss_sockets(*words) == before:
            return ours, before
        time.sleep(0.05)
    pytest.fail(f"sockets at {local} kept changing")


class Pair:
    """A listener and connections to it; the accepted ends do not read.

    Closed inside each test (a ``with`` block): the unread bytes are the point, and the
    suite's leak guard rightly fails a test that returns with them still there.
    """

    def __init__(self, family: int, host: str, clients: int, client_host: str | None = None):
        self.listener = socket.socket(family, socket.SOCK_STREAM)
        self.listener.bind((host, 0))
        self.listener.listen(16)
        self.end = (host, self.listener.getsockname()[1])
        self.clients = []
        for _ in range(clients):
            client = socket.socket(socket.AF_INET if client_host else family)
            client.connect((client_host or host, self.end[1]))
            self.clients.append(client)
        self.accepted = [self.listener.accept()[0] for _ in range(clients)]

    def __enter__(self) -> Pair:
        return self

    def __exit__(self, *exc_info: object) -> None:
        for sock in [*self.clients, *self.accepted, self.listener]:
            sock.close()


def test_server_sockets_agree_with_ss_socket_by_socket() -> None:
    """Recv-Q, Send-Q, addresses and every skmem figure, for each socket, as ss shows them."""
    with Pair(socket.AF_INET, "127.0.0.1", 3) as pair:
        for index, client in enumerate(pair.clients):
            client.sendall(b"\x00" * (1000 * index))
        pair.accepted[2].sendall(b"\x01" * 4096)
        ours, witness = settled_pair(pair.end)
    assert len(ours) == 3
    by_inode = {s.inode: s for s in witness}
    for sock in ours:
        assert_same(sock, by_inode[sock.inode])
    assert sorted(s.recv_q_bytes for s in ours) == [0, 1000, 2000]


def test_ipv6_and_ipv4_mapped_sockets_agree_with_ss() -> None:
    """A dual-stack listener's IPv4 clients are IPv6 sockets; an IPv4 filter finds them."""
    with Pair(socket.AF_INET6, "::", 2, client_host="127.0.0.1") as pair:
        pair.clients[0].sendall(b"\x00" * 777)
        ours, witness = settled_pair(("127.0.0.1", pair.end[1]))
    assert sorted(s.recv_q_bytes for s in ours) == [0, 777]
    assert {(s.family, s.local[0]) for s in ours} == {(socket.AF_INET6, "::ffff:127.0.0.1")}
    by_inode = {s.inode: s for s in witness}
    for sock in ours:
        assert_same(sock, by_inode[sock.inode])


def test_an_exact_address_leaves_out_the_same_port_on_another_address() -> None:
    """A socket bound to 127.0.0.2:<port> (another connection) is not the server's."""
    with (
        Pair(socket.AF_INET, "127.0.0.1", 1) as server,
        Pair(socket.AF_INET, "127.0.0.3", 0) as elsewhere,
        socket.socket() as decoy,
    ):
        decoy.bind(("127.0.0.2", server.end[1]))  # the same port number, another address
        decoy.connect(elsewhere.end)
        elsewhere.accepted.append(elsewhere.listener.accept()[0])
        decoy.sendall(b"\x00" * 500)
        server_side = read_sockets(local=server.end).sockets()
        by_port = read_sockets(local=(None, server.end[1])).sockets()
        clients = read_sockets(remote=server.end).sockets()
        assert [s.inode for s in server_side] == [inode(server.accepted[0])]
        assert inode(decoy) in {s.inode for s in by_port}  # what a port alone would match
        assert [s.inode for s in clients] == [inode(server.clients[0])]


def test_states_are_filtered_in_the_kernel() -> None:
    with Pair(socket.AF_INET, "127.0.0.1", 1) as pair:
        listening = read_sockets(local=pair.end, states={"LISTEN"}).sockets()
        assert [(s.state, s.inode) for s in listening] == [("LISTEN", inode(pair.listener))]
        assert listening[0].send_q_bytes == 16  # on a listener: the backlog's limit
        both = read_sockets(local=pair.end, states={"LISTEN", "ESTABLISHED"})
        assert sorted(both.column("state")) == [1, 10]
        pair.clients[0].close()
        time.sleep(0.05)
        assert [s.state for s in read_sockets(local=pair.end).sockets()] == ["CLOSE_WAIT"]


def test_our_own_sockets_leave_out_another_process_with_the_same_ends() -> None:
    """A child's client socket matches the filter, but its inode is not among our fds."""
    code = (
        "import socket, sys; s = socket.create_connection((sys.argv[1], int(sys.argv[2])));"
        " print(flush=True); sys.stdin.read()"
    )
    with Pair(socket.AF_INET, "127.0.0.1", 1) as pair:
        our_client = inode(pair.clients[0])
        child = subprocess.Popen(
            [sys.executable, "-c", code, *map(str, pair.end)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        try:
            assert child.stdout is not None and child.stdout.readline() == b"\n"
            pair.accepted.append(pair.listener.accept()[0])
            everyone = read_sockets(remote=pair.end).sockets()
            ours = read_own_sockets(remote=pair.end).sockets()
            served = read_own_sockets(local=pair.end)
        finally:
            assert child.stdin is not None and child.stdout is not None
            child.stdin.close()
            child.wait(10)
            child.stdout.close()
    assert len(everyone) == 2  # our client and the child's
    assert [s.inode for s in ours] == [our_client]
    assert len(served) == 2  # both accepted ends are ours


def test_the_local_ipv4_column_tells_source_addresses_apart() -> None:
    """Clients of one listener from 127.0.0.2 and 127.0.0.3: the column names each one's."""
    with socket.create_server(("127.0.0.1", 0)) as listener, contextlib.ExitStack() as stack:
        for source in ("127.0.0.2", "127.0.0.3", "127.0.0.3"):
            client = stack.enter_context(socket.socket())
            client.bind((source, 0))
            client.connect(listener.getsockname())
            stack.enter_context(listener.accept()[0])
        table = read_sockets(remote=listener.getsockname(), families=(socket.AF_INET,))
        keys = table.column("local_ipv4")
        assert keys == [ipv4_key(s.local[0]) for s in table.sockets()]
        assert sorted(keys) == sorted(map(ipv4_key, ("127.0.0.2", "127.0.0.3", "127.0.0.3")))


def test_either_end_finds_a_server_and_its_clients_in_one_dump_and_no_decoy() -> None:
    """Both sides of a server's connections, split by exact local end; decoys with the
    server's port number on other addresses (one connected elsewhere, one connected to the
    server from that very port number) land on the right side or not at all."""
    with (
        Pair(socket.AF_INET, "127.0.0.1", 2) as server,
        Pair(socket.AF_INET, "127.0.0.3", 0) as elsewhere,
        socket.socket() as decoy,
        socket.socket() as port_twin,
    ):
        decoy.bind(("127.0.0.2", server.end[1]))
        decoy.connect(elsewhere.end)
        elsewhere.accepted.append(elsewhere.listener.accept()[0])
        port_twin.bind(("127.0.0.4", server.end[1]))  # a client of the server, same port number
        port_twin.connect(server.end)
        server.accepted.append(server.listener.accept()[0])
        server.clients[0].sendall(b"\x00" * 300)
        table = read_sockets(either=server.end, skmem=False)
        at_server, clients = table.split_local(server.end)
        both_sides, others = read_both_ends(server.end)
        witness_server = {s.inode for s in ss_sockets("state", "established", "src", "127.0.0.1:"
                                                      f"{server.end[1]}")}  # fmt: skip
        assert {s.inode for s in at_server.sockets()} == set(map(inode, server.accepted))
        assert {s.inode for s in at_server.sockets()} == witness_server
        assert set(clients.column("inode")) == set(map(inode, [*server.clients, port_twin]))
        assert inode(decoy) not in set(table.column("inode"))
        assert sorted(at_server.column("recv_q")) == [0, 0, 300]
        assert set(both_sides.column("inode")) == set(at_server.column("inode"))
        assert set(others.column("inode")) == set(clients.column("inode"))


def test_either_end_of_a_dual_stack_server_reads_its_ipv4_mapped_sockets() -> None:
    """An IPv4 end on a dual-stack listener: the server's sockets are IPv6 (mapped), so
    read_both_ends reads IPv6 too; the clients stay IPv4."""
    with Pair(socket.AF_INET6, "::", 2, client_host="127.0.0.1") as pair:
        end = ("127.0.0.1", pair.end[1])
        server, clients = read_both_ends(end)
        assert {(s.family, s.local[0]) for s in server.sockets()} == {
            (socket.AF_INET6, "::ffff:127.0.0.1")
        }
        assert set(server.column("inode")) == set(map(inode, pair.accepted))
        assert set(clients.column("inode")) == set(map(inode, pair.clients))


def test_either_end_on_ipv6_loopback() -> None:
    with Pair(socket.AF_INET6, "::1", 2) as pair:
        server, clients = read_both_ends(pair.end)
        assert set(server.column("inode")) == set(map(inode, pair.accepted))
        assert set(clients.column("inode")) == set(map(inode, pair.clients))


def test_either_excludes_local_and_remote() -> None:
    with pytest.raises(ValueError, match="either= excludes"):
        read_sockets(either=("127.0.0.1", 1), local=("127.0.0.1", 1))
