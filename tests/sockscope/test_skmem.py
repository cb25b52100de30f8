"""Tests for sockscope.skmem on literal ``ss -tmnH`` output, and one reading of a real socket."""

import socket
import time

from sockscope.skmem import parse_ss_skmem, parse_ss_states, read_skmem, skmem_totals, ss_filter

# A service on port 8000: a server socket with unread data, a TIME-WAIT socket (no skmem,
# just a tab and padding as ss writes it) and an idle server socket with data unsent.
SS = (
    "ESTAB     131072 0      127.0.0.1:8000  127.0.0.1:49840\n"
    "\t skmem:(r172800,rb262144,t0,tb2626560,f3328,w0,o0,bl0,d4)\n"
    "TIME-WAIT 0      0      127.0.0.1:8000  127.0.0.1:43370\n"
    "\t                                                 \n"
    "ESTAB     0      4096   127.0.0.1:8000  127.0.0.1:49842\n"
    "\t skmem:(r0,rb131072,t4352,tb2626560,f0,w8448,o0,bl0,d0)\n"
)


def test_parse_reads_every_field_of_each_socket():
    assert parse_ss_skmem(SS) == [
        {"r": 172800, "rb": 262144, "t": 0, "tb": 2626560, "f": 3328, "w": 0, "o": 0, "bl": 0,
         "d": 4},
        {"r": 0, "rb": 131072, "t": 4352, "tb": 2626560, "f": 0, "w": 8448, "o": 0, "bl": 0,
         "d": 0},
    ]  # fmt: skip


def test_parse_skips_sockets_without_skmem():
    time_wait = "TIME-WAIT 0      0      127.0.0.1:8000  127.0.0.1:43370\n\t      \n"
    assert parse_ss_skmem(time_wait) == []
    assert parse_ss_skmem("") == []


def test_parse_accepts_skmem_on_the_socket_line():
    line = "ESTAB 0 0 127.0.0.1:8000 127.0.0.1:49840 skmem:(r1,rb2,t3,tb4,f5,w6,o7,bl8,d9)"
    assert parse_ss_skmem(line)[0]["bl"] == 8


def test_totals_sum_receive_and_send_memory():
    assert skmem_totals(parse_ss_skmem(SS)) == {
        "skmem_r_bytes": 172800, "skmem_t_bytes": 4352, "skmem_sockets": 2,
    }  # fmt: skip


def test_totals_of_no_sockets_are_zero():
    assert skmem_totals([]) == {"skmem_r_bytes": 0, "skmem_t_bytes": 0, "skmem_sockets": 0}


def test_states_and_queues_are_counted_from_the_socket_lines():
    assert parse_ss_states(SS) == ({"ESTAB": 2, "TIME-WAIT": 1}, 131072, 4096)
    assert parse_ss_states("") == ({}, 0, 0)


def test_filter_names_the_exact_local_address_when_given():
    assert ss_filter(8000) == ["( sport = :8000 )"]
    assert ss_filter(8000, "127.0.0.1") == ["src", "127.0.0.1:8000"]
    assert ss_filter(8000, "::1") == ["src", "[::1]:8000"]


def test_read_skmem_sees_only_the_sockets_of_that_address_and_port():
    """A real listener with one unread connection: ss agrees with what was sent."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)) as client:
            server, _ = listener.accept()
            with server:
                client.sendall(b"x" * 1000)
                deadline = time.monotonic() + 5
                while (reading := read_skmem(port, "127.0.0.1")) and reading[
                    "ss_recv_q_bytes"
                ] < 1000:
                    assert time.monotonic() < deadline
                    time.sleep(0.01)
                assert reading is not None
                assert reading["ss_states"] == {"ESTAB": 1}
                assert reading["skmem_sockets"] == 1 and reading["skmem_r_bytes"] > 1000
                assert read_skmem(port, "127.0.0.2")["ss_states"] == {}
