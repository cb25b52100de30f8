"""Sockets as ``ss -tmn`` sees them: states, queues and kernel memory (``skmem``).

``ss`` asks the kernel through netlink sock_diag, independently of a service's own
``/proc/net/tcp`` reading: the lab's witness. Sockets are chosen by their exact local address
and port (another program's socket may have the same port number on another address).
"""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from typing import Any

__all__ = ["parse_ss_skmem", "parse_ss_states", "read_skmem", "skmem_totals", "ss_filter"]

_SKMEM_RE = re.compile(r"skmem:\(([^)]*)\)")
_FIELD_RE = re.compile(r"([a-z_]+?)(\d+)")


def parse_ss_skmem(text: str) -> list[dict[str, int]]:
    """Parse ``ss -tm`` output into one ``{r, rb, t, tb, f, w, o, bl, d}`` dict per socket.

    ``r`` is memory allocated for received data, ``rb`` the receive buffer limit, ``t`` and
    ``tb`` the same for sending. Sockets without an skmem field (TIME-WAIT) are skipped.
    """
    sockets = []
    for match in _SKMEM_RE.finditer(text):
        fields = (_FIELD_RE.fullmatch(part) for part in match.group(1).split(","))
        sockets.append({m.group(1): int(m.group(2)) for m in fields if m})
    return sockets


def parse_ss_states(text: str) -> tuple[dict[str, int], int, int]:
    """Sockets by state (``ESTAB``, ``CLOSE-WAIT``...), summed Recv-Q and Send-Q, from
    ``ss -tn[m]H`` output (socket lines start with the state; skmem lines are indented)."""
    states: Counter[str] = Counter()
    recv_q = send_q = 0
    for line in text.splitlines():
        if not line or line[0].isspace():
            continue
        fields = line.split()
        if len(fields) < 3 or not (fields[1].isdigit() and fields[2].isdigit()):
            continue
        states[fields[0]] += 1
        recv_q += int(fields[1])
        send_q += int(fields[2])
    return dict(sorted(states.items())), recv_q, send_q


def skmem_totals(sockets: list[dict[str, int]]) -> dict[str, int]:
    """Receive and send memory summed over sockets, in bytes."""
    return {
        "skmem_r_bytes": sum(s.get("r", 0) for s in sockets),
        "skmem_t_bytes": sum(s.get("t", 0) for s in sockets),
        "skmem_sockets": len(sockets),
    }


def ss_filter(port: int, host: str | None = None) -> list[str]:
    """The ``ss`` filter for sockets whose local end is ``host:port`` (any address without
    ``host``)."""
    if host is None:
        return [f"( sport = :{port} )"]
    address = f"[{host}]" if ":" in host else host
    return ["src", f"{address}:{port}"]


def read_skmem(port: int, host: str | None = None, timeout_s: float = 5.0) -> dict[str, Any] | None:
    """skmem totals, sockets by state (``ss_states``) and summed queues (``ss_recv_q_bytes``,
    ``ss_send_q_bytes``) of the connected sockets at ``host:port``; None if ss fails."""
    try:
        result = subprocess.run(
            ["ss", "-tmnH", "state", "connected", *ss_filter(port, host)],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    states, recv_q, send_q = parse_ss_states(result.stdout)
    return {
        **skmem_totals(parse_ss_skmem(result.stdout)),
        "ss_states": states,
        "ss_recv_q_bytes": recv_q,
        "ss_send_q_bytes": send_q,
    }
