"""TCP as the kernel reports it: state names, ``struct tcp_info``, ``/proc/net/tcp{,6}`` rows.

Pure functions over bytes and text, tested on literal inputs. Two sources, two uses:

- ``getsockopt(TCP_INFO)`` on a socket of our own: its state, and for a LISTEN socket the
  accept backlog (``tcpi_unacked``: connections the kernel completed that nobody accepted)
  and its limit (``tcpi_sacked``: the ``listen()`` backlog). See ``tcp_get_info()`` in
  ``net/ipv4/tcp.c``.
- ``/proc/net/tcp`` and ``tcp6``: every TCP socket of the network namespace, with the same
  numbers ``ss -tn`` shows (``tx_queue:rx_queue`` is Send-Q:Recv-Q, or the accept backlog on
  a LISTEN row) and the socket's inode, which is how a row is matched to one of our fds.
  Reading it costs time proportional to every socket on the host's namespace; for our own
  sockets, asking through the fd is cheaper.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import struct

__all__ = [
    "CONNECTED_STATES",
    "TCP_STATES",
    "TcpInfo",
    "TcpRow",
    "decode_address",
    "parse_proc_net_tcp",
    "parse_tcp_info",
]

# TCP states as numbered in include/net/tcp_states.h.
TCP_STATES = {
    1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2",
    6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING",
    12: "NEW_SYN_RECV",
}  # fmt: skip

# The states ``ss -t`` lists by default: sockets with a peer, not LISTEN or TIME_WAIT.
CONNECTED_STATES = frozenset(
    {"ESTABLISHED", "SYN_SENT", "FIN_WAIT1", "FIN_WAIT2", "CLOSE_WAIT", "LAST_ACK", "CLOSING"}
)

# struct tcp_info begins with 8 bytes of u8 fields (tcpi_state first), then u32 fields:
# rto, ato, snd_mss, rcv_mss, unacked, sacked, ...
_TCP_INFO_HEAD = struct.Struct("=B7x6I")
TCP_INFO_MIN_BYTES = _TCP_INFO_HEAD.size


@dataclasses.dataclass(frozen=True, slots=True)
class TcpInfo:
    """The head of ``struct tcp_info``: the state, and the two fields LISTEN reuses."""

    state: str
    unacked: int
    sacked: int

    @property
    def accept_backlog(self) -> int | None:
        """On a LISTEN socket: connections waiting for ``accept()``; otherwise None."""
        return self.unacked if self.state == "LISTEN" else None

    @property
    def accept_limit(self) -> int | None:
        """On a LISTEN socket: the backlog given to ``listen()``; otherwise None."""
        return self.sacked if self.state == "LISTEN" else None


@dataclasses.dataclass(frozen=True, slots=True)
class TcpRow:
    """One row of ``/proc/net/tcp`` or ``/proc/net/tcp6``, addresses decoded."""

    local: tuple[str, int]
    remote: tuple[str, int]
    state: str
    send_q_bytes: int
    recv_q_bytes: int
    inode: int


def parse_tcp_info(raw: bytes) -> TcpInfo:
    """Parse the bytes ``getsockopt(IPPROTO_TCP, TCP_INFO)`` returned."""
    state, _rto, _ato, _snd_mss, _rcv_mss, unacked, sacked = _TCP_INFO_HEAD.unpack_from(raw)
    return TcpInfo(TCP_STATES.get(state, f"UNKNOWN({state})"), unacked, sacked)


def decode_address(text: str) -> tuple[str, int]:
    """``0100007F:1F40`` → ``("127.0.0.1", 8000)``; IPv6 rows as four host-order words."""
    hex_ip, hex_port = text.rsplit(":", 1)
    raw = bytes.fromhex(hex_ip)
    # The kernel prints each 32-bit word of the address in host (little-endian) order.
    packed = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    address = ipaddress.ip_address(packed)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        # As getsockname() writes it (Python before 3.13 would print ::ffff:7f00:1).
        return f"::ffff:{address.ipv4_mapped}", int(hex_port, 16)
    return str(address), int(hex_port, 16)


def parse_proc_net_tcp(text: str) -> list[TcpRow]:
    """Parse the text of ``/proc/net/tcp`` or ``/proc/net/tcp6`` (header line included)."""
    rows = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10:
            continue
        tx_queue, rx_queue = fields[4].split(":")
        rows.append(
            TcpRow(
                local=decode_address(fields[1]),
                remote=decode_address(fields[2]),
                state=TCP_STATES.get(int(fields[3], 16), "UNKNOWN"),
                send_q_bytes=int(tx_queue, 16),
                recv_q_bytes=int(rx_queue, 16),
                inode=int(fields[9]),
            )
        )
    return rows
