"""Tests for sockscope.tcp on literal bytes of struct tcp_info and text of /proc/net/tcp{,6}."""

import struct

import pytest

from sockscope.tcp import TcpRow, decode_address, parse_proc_net_tcp, parse_tcp_info


def tcp_info(state: int, unacked: int, sacked: int) -> bytes:
    """The first 104 bytes of a struct tcp_info with these fields, the rest zero."""
    head = struct.pack("=B7x6I", state, 204000, 40000, 32768, 536, unacked, sacked)
    return head + bytes(104 - len(head))


def test_tcp_info_of_listen_gives_accept_backlog_and_limit() -> None:
    """LISTEN: tcpi_unacked is the accept backlog, tcpi_sacked the listen() limit."""
    info = parse_tcp_info(tcp_info(10, 3, 128))
    assert info.state == "LISTEN"
    assert (info.accept_backlog, info.accept_limit) == (3, 128)


def test_tcp_info_of_connected_socket_has_no_accept_backlog() -> None:
    """Other states reuse nothing: no accept backlog is read from them."""
    info = parse_tcp_info(tcp_info(8, 0, 0))
    assert info.state == "CLOSE_WAIT"
    assert info.accept_backlog is None


def test_unknown_state_number_is_named_as_such() -> None:
    """A state the table does not know is kept, not dropped."""
    assert parse_tcp_info(tcp_info(42, 0, 0)).state == "UNKNOWN(42)"


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("0100007F:1F40", ("127.0.0.1", 8000)),
        ("00000000:0000", ("0.0.0.0", 0)),
        ("00000000000000000000000001000000:D431", ("::1", 54321)),
        ("0000000000000000FFFF00000100007F:1F40", ("::ffff:127.0.0.1", 8000)),
        ("B80D0120000000000000000001000000:0050", ("2001:db8::1", 80)),
    ],
)
def test_decode_address_reads_host_order_words(text: str, address: tuple[str, int]) -> None:
    """IPv4 and each 32-bit word of IPv6 are printed by the kernel in host byte order."""
    assert decode_address(text) == address


# A LISTEN socket on 127.0.0.1:8000 with 5 connections waiting for accept(), a server socket
# with 128000 unread bytes and the client side with 65536 unsent, a TIME_WAIT row (shorter,
# as the kernel writes it), and an IPv6 server socket with 8192 unread bytes.
TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F40 00000000:0000 0A 00000000:00000005 00:00000000 00000000  1000        0 41001 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F40 0100007F:C738 01 00000000:0001F400 00:00000000 00000000  1000        0 41002 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:C738 0100007F:1F40 01 00010000:00000000 01:00000014 00000000  1000        0 41003 1 0000000000000000 20 4 30 10 -1
   3: 0100007F:1F40 0100007F:C73C 06 00000000:00000000 03:00001310 00000000     0        0 0 3 0000000000000000
"""  # noqa: E501
TCP6 = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:1F40 00000000000000000000000001000000:D431 01 00000000:00002000 00:00000000 00000000  1000        0 41011 1 0000000000000000 20 4 30 10 -1
"""  # noqa: E501


def test_parse_proc_net_tcp_rows_by_inode() -> None:
    """Each row: addresses, state, Send-Q and Recv-Q (or accept backlog on LISTEN), inode."""
    rows = {row.inode: row for row in parse_proc_net_tcp(TCP)}
    assert rows[41001] == TcpRow(("127.0.0.1", 8000), ("0.0.0.0", 0), "LISTEN", 0, 5, 41001)
    assert rows[41002].recv_q_bytes == 128000
    assert rows[41002].remote == ("127.0.0.1", 51000)
    assert rows[41003].send_q_bytes == 65536
    assert rows[0].state == "TIME_WAIT"


def test_parse_proc_net_tcp6() -> None:
    """IPv6 rows decode the same way."""
    (row,) = parse_proc_net_tcp(TCP6)
    assert (row.local, row.remote, row.recv_q_bytes) == (("::1", 8000), ("::1", 54321), 8192)
