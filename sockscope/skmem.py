"""Per-socket kernel memory from ``ss -tm`` (the ``skmem`` field, from netlink sock_diag)."""

from __future__ import annotations

import re
import subprocess

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


def skmem_totals(sockets: list[dict[str, int]]) -> dict[str, int]:
    """Receive and send memory summed over sockets, in bytes."""
    return {
        "skmem_r_bytes": sum(s.get("r", 0) for s in sockets),
        "skmem_t_bytes": sum(s.get("t", 0) for s in sockets),
        "skmem_sockets": len(sockets),
    }


def read_skmem(port: int, timeout_s: float = 5.0) -> dict[str, int] | None:
    """skmem totals of the connected sockets whose local port is ``port``; None if ss fails."""
    try:
        result = subprocess.run(
            ["ss", "-tmnH", "state", "connected", f"( sport = :{port} )"],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return skmem_totals(parse_ss_skmem(result.stdout))
