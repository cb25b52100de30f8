"""Tests for sockscope.diag on bytes the kernel sent (captured once, below) and on requests.

Captured on Linux 6.18 as root (so each socket carries an ``INET_DIAG_MARK`` attribute) with
``dump_request(family, states={"ESTABLISHED", "LISTEN"}, bytecode=compile_filter(local=...),
seq=7)``: V4 asks for ``local=("127.0.0.1", 8000)``, V6 for ``local=(None, 8001)``. What
``ss -tmnHe`` said at the same moment::

    LISTEN 0    8  127.0.0.1:8000  0.0.0.0:*        ino:1178876  skmem:(r0,rb131072,t0,tb16384,...)
    ESTAB  3000 0  127.0.0.1:8000  127.0.0.1:50003  ino:1178882  skmem:(r3832,rb131072,t0,tb3939840,f264,...)
    ESTAB  1000 0  127.0.0.1:8000  127.0.0.1:50002  ino:1178881  skmem:(r1832,rb131072,t0,tb3939840,f2264,...)
    ESTAB  0    0  127.0.0.1:8000  127.0.0.1:50001  ino:1178880  skmem:(r0,rb131072,t0,tb3939840,...)
    LISTEN 0    8  *:8001          *:*              ino:1178883  skmem:(r0,rb131072,t0,tb16384,...)
    ESTAB  500  0  [::1]:8001      [::1]:50011      ino:1178886  skmem:(r1332,rb131072,...,f2764,...)
    ESTAB  0    0  [::ffff:127.0.0.1]:8001 [::ffff:127.0.0.1]:50012 ino:1178887

The LISTEN and ESTABLISHED messages of V4 have the same length (a run of four); V6's LISTEN
has one more attribute (``INET_DIAG_SKV6ONLY``), then a run of two.
"""  # noqa: E501

from __future__ import annotations

import socket
import struct

import pytest

from sockscope.diag import (
    DiagSocket,
    DumpParser,
    Skmem,
    compile_either,
    compile_filter,
    dump_request,
    parse_dump,
    socket_totals,
    states_mask,
)

V4 = [
    bytes.fromhex(
        "a4000000140002000700000002670000020a00001f4000007f00000100000000000000000000000000000000"
        "000000000000000000000000000000001a5403000000000000000000000000000800000000000000fcfc1100"
        "050008000000000008000f00000000000c001500010000000000000006001600520000002800070000000000"
        "0000020000000000004000000000000000000000000000000000000000000000a40000001400020007000000"
        "02670000020100001f40c3537f0000010000000000000000000000007f000001000000000000000000000000"
        "000000001b5403000000000000000000b80b0000000000000000000002fd1100050008000000000008000f00"
        "000000000c0015000100000000000000060016005200000028000700f80e00000000020000000000001e3c00"
        "0801000000000000000000000000000000000000a4000000140002000700000002670000020100001f40c352"
        "7f0000010000000000000000000000007f000001000000000000000000000000000000001c54030000000000"
        "00000000e8030000000000000000000001fd1100050008000000000008000f00000000000c00150001000000"
        "00000000060016005200000028000700280700000000020000000000001e3c00d80800000000000000000000"
        "0000000000000000a4000000140002000700000002670000020100001f40c3517f0000010000000000000000"
        "000000007f000001000000000000000000000000000000001d54030000000000000000000000000000000000"
        "0000000000fd1100050008000000000008000f00000000000c00150001000000000000000600160052000000"
        "28000700000000000000020000000000001e3c000000000000000000000000000000000000000000"
    ),
    bytes.fromhex("1400000003000200070000000267000000000000"),
]
V6 = [
    bytes.fromhex(
        "ac0000001400020007000000026700000a0a00001f4100000000000000000000000000000000000000000000"
        "000000000000000000000000000000001e540300000000000000000000000000080000000000000003fd1100"
        "050008000000000005000b000000000008000f00000000000c00150001000000000000000600160012000000"
        "28000700000000000000020000000000004000000000000000000000000000000000000000000000a4000000"
        "1400020007000000026700000a0100001f41c35b000000000000000000000000000000010000000000000000"
        "0000000000000001000000001f5403000000000000000000f4010000000000000000000006fd110005000800"
        "0000000008000f00000000000c00150001000000000000000600160012000000280007003405000000000200"
        "00000000001e3c00cc0a000000000000000000000000000000000000a4000000140002000700000002670000"
        "0a0100001f41c35c00000000000000000000ffff7f00000100000000000000000000ffff7f00000100000000"
        "20540300000000000000000000000000000000000000000007fd1100050008000000000008000f0000000000"
        "0c0015000100000000000000060016001200000028000700000000000000020000000000001e3c0000000000"
        "00000000000000000000000000000000"
    ),
    bytes.fromhex("1400000003000200070000000267000000000000"),
]

LISTEN_SKMEM = Skmem(0, 131072, 0, 16384, 0, 0, 0, 0, 0)


def skmem(r: int, f: int) -> Skmem:
    return Skmem(r, 131072, 0, 3939840, f, 0, 0, 0, 0)


EXPECTED_V4 = [
    DiagSocket(2, "LISTEN", ("127.0.0.1", 8000), ("0.0.0.0", 0), 1178876, 0, 0, 8, LISTEN_SKMEM),
    DiagSocket(2, "ESTABLISHED", ("127.0.0.1", 8000), ("127.0.0.1", 50003), 1178882, 0, 3000, 0,
               skmem(3832, 264)),
    DiagSocket(2, "ESTABLISHED", ("127.0.0.1", 8000), ("127.0.0.1", 50002), 1178881, 0, 1000, 0,
               skmem(1832, 2264)),
    DiagSocket(2, "ESTABLISHED", ("127.0.0.1", 8000), ("127.0.0.1", 50001), 1178880, 0, 0, 0,
               skmem(0, 0)),
]  # fmt: skip
EXPECTED_V6 = [
    DiagSocket(10, "LISTEN", ("::", 8001), ("::", 0), 1178883, 0, 0, 8, LISTEN_SKMEM),
    DiagSocket(10, "ESTABLISHED", ("::1", 8001), ("::1", 50011), 1178886, 0, 500, 0,
               skmem(1332, 2764)),
    DiagSocket(10, "ESTABLISHED", ("::ffff:127.0.0.1", 8001), ("::ffff:127.0.0.1", 50012),
               1178887, 0, 0, 0, skmem(0, 0)),
]  # fmt: skip


def messages(datagram: bytes) -> list[bytes]:
    """The netlink messages of one datagram, apart."""
    found, offset = [], 0
    while offset < len(datagram):
        (length,) = struct.unpack_from("=I", datagram, offset)
        found.append(datagram[offset : offset + length])
        offset += (length + 3) & ~3
    return found


# Answers


def test_a_captured_ipv4_dump_gives_every_socket_as_ss_showed_it() -> None:
    assert parse_dump(V4).sockets() == EXPECTED_V4


def test_a_captured_ipv6_dump_gives_v6_and_v4_mapped_addresses() -> None:
    assert parse_dump(V6).sockets() == EXPECTED_V6


def test_columns_agree_with_the_sockets_they_come_from() -> None:
    table = parse_dump(V4)
    assert table.column("recv_q") == [s.recv_q_bytes for s in EXPECTED_V4]
    assert table.column("send_q") == [s.send_q_bytes for s in EXPECTED_V4]
    assert table.column("inode") == [s.inode for s in EXPECTED_V4]
    assert table.column("state") == [10, 1, 1, 1]
    assert table.column("local_port") == [8000] * 4
    assert table.column("remote_port") == [0, 50003, 50002, 50001]
    assert table.column("rmem_alloc") == [0, 3832, 1832, 0]
    assert table.column("fwd_alloc") == [0, 264, 2264, 0]
    assert table.column("sndbuf") == [16384, 3939840, 3939840, 3939840]
    with pytest.raises(KeyError):
        table.column("colour")


def test_a_message_unlike_its_neighbours_splits_a_run_and_is_read_on_its_own() -> None:
    """Runs are only ever messages of the same length with skmem at the same place."""
    v4, v6 = messages(V4[0]), messages(V6[0])
    mixed = b"".join([v4[0], v4[1], v6[0], v4[2], v4[3]])
    table = parse_dump([mixed, V4[1]])
    expected = [EXPECTED_V4[0], EXPECTED_V4[1], EXPECTED_V6[0], *EXPECTED_V4[2:]]
    assert table.sockets() == expected
    assert table.column("recv_q") == [s.recv_q_bytes for s in expected]
    assert table.column("family") == [2, 2, 10, 2, 2]


def test_one_message_per_datagram_gives_the_same_sockets() -> None:
    parser = DumpParser()
    for message in [*messages(V4[0]), *messages(V6[0])]:
        parser.feed(message)
    assert not parser.done
    parser.feed(V4[1])
    assert parser.done
    assert parser.table.sockets() == EXPECTED_V4 + EXPECTED_V6
    assert len(parser.table) == 7


def test_a_message_without_skmem_has_none_and_zero_columns() -> None:
    """Without INET_DIAG_SKMEMINFO (not asked for, or a TIME_WAIT socket) skmem is None."""
    message = bytearray(messages(V4[0])[1][:88])  # header and inet_diag_msg only
    message[:4] = (88).to_bytes(4, "little")
    table = parse_dump([bytes(message), bytes(message), V4[1]])
    assert [s.skmem for s in table.sockets()] == [None, None]
    assert table.column("rmem_alloc") == [0, 0]
    assert table.column("recv_q") == [3000, 3000]


def test_a_kernel_error_is_raised_with_its_errno() -> None:
    request_head = struct.pack("=IHHII", 72, 20, 0x301, 7, 0)
    error = struct.pack("=IHHII", 36, 2, 0x100, 7, 0) + struct.pack("=i", -22) + request_head
    with pytest.raises(OSError) as caught:
        parse_dump([error])
    assert caught.value.errno == 22


def test_truncated_bytes_are_refused() -> None:
    with pytest.raises(ValueError, match="netlink message"):
        parse_dump([V4[0][:100]])


def test_with_inodes_keeps_one_process_sockets() -> None:
    table = parse_dump(V4)
    mine = table.with_inodes({1178881, 1178880, 424242})
    assert [s.inode for s in mine.sockets()] == [1178881, 1178880]
    assert mine.column("recv_q") == [1000, 0]
    assert len(mine) == 2
    assert len(table.with_inodes({s.inode for s in EXPECTED_V4})) == 4


def test_split_local_parts_a_server_from_the_rest_by_exact_end() -> None:
    table = parse_dump(V4)
    at_end, rest = table.split_local(("127.0.0.1", 8000))
    assert (len(at_end), len(rest)) == (4, 0)
    at_other, rest = table.split_local(("127.0.0.2", 8000))  # the same port, another address
    assert (len(at_other), len(rest)) == (0, 4)
    mine = table.with_inodes({1178881, 1178880})
    at_end, rest = mine.split_local(("127.0.0.1", 8000))
    assert at_end.column("inode") == [1178881, 1178880]  # a selection stays one


def test_split_local_compares_ipv6_and_ipv4_mapped_addresses_in_full() -> None:
    table = parse_dump(V6)
    v6, _ = table.split_local(("::1", 8001))
    mapped, _ = table.split_local(("127.0.0.1", 8001))
    assert [s.local for s in v6.sockets()] == [("::1", 8001)]
    assert [s.local for s in mapped.sockets()] == [("::ffff:127.0.0.1", 8001)]


def test_joined_tables_keep_both_selections_in_order() -> None:
    v4 = parse_dump(V4).with_inodes({1178882})
    v6 = parse_dump(V6)
    joined = v4.joined(v6)
    assert joined.column("inode") == [1178882, *(s.inode for s in EXPECTED_V6)]
    assert len(parse_dump(V4).joined(v6)) == len(EXPECTED_V4) + len(EXPECTED_V6)


def test_totals_sum_and_take_the_largest_queue_and_memory() -> None:
    totals = socket_totals(parse_dump(V4).with_inodes({1178880, 1178881, 1178882}))
    assert totals.sockets == 3
    assert totals.states == {"ESTABLISHED": 3}
    assert (totals.recv_q_bytes, totals.recv_q_max_bytes, totals.recv_q_p99_bytes) == (
        4000,
        3000,
        3000,
    )
    assert (totals.skmem_r_bytes, totals.skmem_r_max_bytes) == (3832 + 1832, 3832)
    assert (totals.skmem_rb_bytes, totals.skmem_rb_max_bytes) == (3 * 131072, 131072)
    assert (totals.send_q_bytes, totals.skmem_w_bytes, totals.skmem_t_bytes) == (0, 0, 0)


def test_totals_of_no_sockets_are_zero() -> None:
    totals = socket_totals(parse_dump([V4[1]]))
    assert (totals.sockets, totals.recv_q_max_bytes, totals.skmem_r_max_bytes) == (0, 0, 0)
    assert totals.states == {}


# Requests


def test_a_local_endpoint_becomes_one_source_condition() -> None:
    """S_COND, yes: the op's 16 bytes; no: past the end (reject); AF_INET/32, port, address."""
    assert compile_filter(local=("127.0.0.1", 8000)).hex() == (
        "07101400" "02200000" "401f0000" "7f000001"
    )  # fmt: skip


def test_two_ends_are_anded_and_any_address_has_no_address_bytes() -> None:
    assert compile_filter(local=("127.0.0.1", 8000), remote=(None, None)).hex() == (
        "07102000" "02200000" "401f0000" "7f000001"  # no: 16 + 12 + 4
        "080c1000" "00000000" "ffffffff"  # D_COND, AF_UNSPEC, port -1 (any)
    )  # fmt: skip


def test_an_ipv6_endpoint_carries_sixteen_bytes_and_a_full_prefix() -> None:
    code = compile_filter(remote=("::1", 443))
    assert code[:4].hex() == "081c2000"  # D_COND, yes 28, no 32
    assert code[4:8].hex() == "0a800000"  # AF_INET6, /128
    assert code[12:] == socket.inet_pton(socket.AF_INET6, "::1")


def test_either_end_is_a_source_or_a_destination_condition() -> None:
    """S_COND true -> JMP (always its no) -> the end (accept); false -> D_COND, whose no
    jumps past the end (reject). Every yes is its op's own length, for the kernel's audit."""
    cond = "02200000401f00007f000001"
    assert compile_either(("127.0.0.1", 8000)).hex() == (
        "07101400" + cond + "01041400" + "08101400" + cond
    )


def test_no_end_means_no_bytecode() -> None:
    assert compile_filter() == b""


def test_a_bad_port_or_address_is_refused() -> None:
    with pytest.raises(ValueError):
        compile_filter(local=("127.0.0.1", 70000))
    with pytest.raises(ValueError):
        compile_filter(local=("localhost", 80))


def test_states_become_the_kernels_bit_mask() -> None:
    assert states_mask({"ESTABLISHED", "LISTEN"}) == (1 << 1) | (1 << 10)
    with pytest.raises(ValueError, match="unknown TCP state"):
        states_mask({"ESTABLISHED", "RESTING"})


def test_a_dump_request_says_what_to_dump_and_carries_the_bytecode() -> None:
    bytecode = compile_filter(local=("127.0.0.1", 8000))
    request = dump_request(
        socket.AF_INET, states={"ESTABLISHED"}, bytecode=bytecode, local_port=8000, seq=9
    )
    length, kind, flags, seq, _pid = struct.unpack_from("=IHHII", request)
    assert (length, kind, flags, seq) == (len(request), 20, 0x301, 9)
    family, protocol, ext, _pad, states = struct.unpack_from("=BBBBI", request, 16)
    assert (family, protocol, ext, states) == (socket.AF_INET, socket.IPPROTO_TCP, 1 << 6, 2)
    assert request[24:26] == (8000).to_bytes(2, "big")  # idiag_sport: the kernel's first cut
    assert request[64:72] == b"\xff" * 8  # no cookie
    attr_len, attr_type = struct.unpack_from("=HH", request, 72)
    assert (attr_len, attr_type) == (4 + len(bytecode), 1)
    assert request[76:] == bytecode
    assert dump_request(socket.AF_INET6, skmem=False)[18] == 0  # no extension asked
