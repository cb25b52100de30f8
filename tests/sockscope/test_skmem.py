"""Tests for sockscope.skmem on literal ``ss -tmnH`` output (no ss is run)."""

from sockscope.skmem import parse_ss_skmem, skmem_totals

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
