"""Tests for sockscope.procfs on literal text of /proc/net/tcp{,6} and sockstat."""

import pytest

from sockscope.procfs import (
    TcpSocket,
    parse_port_range,
    parse_proc_net_tcp,
    parse_sockstat,
    parse_tcp_mem,
    percentile,
    queue_totals,
)

# Service on 127.0.0.1:8000 (0x1F40): LISTEN with 5 connections waiting in the accept backlog,
# a server socket with 128000 unread bytes, the client side of it with 65536 bytes unsent,
# a CLOSE_WAIT socket, and a TIME_WAIT socket (shorter row, as the kernel writes it).
TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F40 00000000:0000 0A 00000000:00000005 00:00000000 00000000  1000        0 41001 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F40 0100007F:C738 01 00000200:0001F400 00:00000000 00000000  1000        0 41002 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:C738 0100007F:1F40 01 00010000:00000000 01:00000014 00000000  1000        0 41003 1 0000000000000000 20 4 30 10 -1
   3: 0100007F:1F40 0100007F:C73A 08 00000000:00000064 00:00000000 00000000  1000        0 41004 1 0000000000000000 20 4 0 10 -1
   4: 0100007F:1F40 0100007F:C73C 06 00000000:00000000 03:00001310 00000000     0        0 0 3 0000000000000000
"""  # noqa: E501
TCP6 = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:1F40 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 41010 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:1F40 00000000000000000000000001000000:D431 01 00000000:00002000 00:00000000 00000000  1000        0 41011 1 0000000000000000 20 4 30 10 -1
"""  # noqa: E501
SOCKSTAT = """\
sockets: used 27
TCP: inuse 11 orphan 1 tw 4 alloc 14 mem 87
UDP: inuse 0 mem 0
TCP6: inuse 2
"""


def test_parse_reads_ports_state_and_hex_queues():
    assert parse_proc_net_tcp(TCP) == [
        TcpSocket(8000, 0, "LISTEN", send_q_bytes=0, recv_q_bytes=5, inode=41001),
        TcpSocket(8000, 51000, "ESTABLISHED", send_q_bytes=512, recv_q_bytes=128000, inode=41002),
        TcpSocket(51000, 8000, "ESTABLISHED", send_q_bytes=65536, recv_q_bytes=0, inode=41003),
        TcpSocket(8000, 51002, "CLOSE_WAIT", send_q_bytes=0, recv_q_bytes=100, inode=41004),
        TcpSocket(8000, 51004, "TIME_WAIT", send_q_bytes=0, recv_q_bytes=0, inode=0),
    ]


def test_parse_reads_ipv6_rows():
    listen, established = parse_proc_net_tcp(TCP6)
    assert (listen.local_port, listen.state) == (8000, "LISTEN")
    assert (established.remote_port, established.recv_q_bytes) == (54321, 8192)


def test_queue_totals_ignore_listen_and_time_wait():
    rows = parse_proc_net_tcp(TCP) + parse_proc_net_tcp(TCP6)
    totals = queue_totals(s for s in rows if s.local_port == 8000)  # one service on the rows
    assert totals.sockets == 3
    assert totals.recv_q_bytes == 128000 + 100 + 8192
    assert (totals.recv_q_max_bytes, totals.send_q_bytes, totals.send_q_max_bytes) == (
        128000,
        512,
        512,
    )
    assert totals.states == {"ESTABLISHED": 2, "CLOSE_WAIT": 1}


def test_queue_totals_p99_is_nearest_rank():
    sockets = [TcpSocket(8000, 50000 + n, "ESTABLISHED", 0, n, n) for n in range(1, 101)]
    totals = queue_totals(sockets)
    assert (totals.recv_q_p99_bytes, totals.recv_q_max_bytes) == (99, 100)


def test_parse_sockstat_converts_mem_pages_to_bytes():
    assert parse_sockstat(SOCKSTAT, page_size=16384) == {
        "inuse": 11, "orphan": 1, "tw": 4, "alloc": 14, "mem": 87, "mem_bytes": 87 * 16384,
    }  # fmt: skip


def test_parse_sockstat_without_tcp_line_raises():
    with pytest.raises(ValueError, match="no TCP line"):
        parse_sockstat("sockets: used 27\nTCP6: inuse 2\n", page_size=4096)


def test_parse_tcp_mem_reads_low_pressure_high():
    assert parse_tcp_mem("287898\t383866\t575796\n") == (287898, 383866, 575796)


@pytest.mark.parametrize(
    ("values", "pct", "expected"),
    [([], 99, 0.0), ([7], 99, 7.0), ([1, 2, 3, 4], 50, 2.0), ([1, 2, 3, 4], 51, 3.0),
     ([1, 2, 3, 4], 100, 4.0), ([1, 2, 3, 4], 0, 1.0)],
)  # fmt: skip
def test_percentile_is_nearest_rank(values, pct, expected):
    assert percentile(values, pct) == expected


def test_port_range_is_the_first_and_last_port():
    assert parse_port_range("32768\t60999\n") == (32768, 60999)
    with pytest.raises(ValueError, match="not a port range"):
        parse_port_range("61000 32768")
