"""Guards that keep a swarm from hurting the host: loopback-only targets, a TCP memory limit."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from pathlib import Path

from ping_client.errors import UnsafeTarget
from sockscope.procfs import parse_sockstat, parse_tcp_mem

__all__ = [
    "LOOPBACK_NAMES",
    "PAGE_SIZE",
    "MemoryReading",
    "check_target",
    "is_loopback",
    "memory_reading",
    "read_memory",
]

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def is_loopback(host: str) -> bool:
    """Whether ``host`` names a loopback address (127.0.0.0/8, ::1, localhost)."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_target(host: str, *, allow_remote: bool) -> None:
    """Refuse a non-loopback target unless the user said ``--allow-remote``."""
    if not allow_remote and not is_loopback(host):
        raise UnsafeTarget(
            f"refusing to load {host!r}: not a loopback address (pass --allow-remote to insist)"
        )


@dataclasses.dataclass(frozen=True)
class MemoryReading:
    """Host TCP memory against the kernel's pressure threshold, in bytes."""

    used_bytes: int
    pressure_bytes: int

    @property
    def fraction(self) -> float:
        """Used memory as a fraction of the pressure threshold."""
        return self.used_bytes / self.pressure_bytes if self.pressure_bytes else 0.0


def memory_reading(
    sockstat_text: str, tcp_mem_text: str, page_size: int = PAGE_SIZE
) -> MemoryReading:
    """Compare sockstat's TCP ``mem`` with ``tcp_mem``'s pressure threshold (both in pages)."""
    used_pages = parse_sockstat(sockstat_text, page_size)["mem"]
    _, pressure_pages, _ = parse_tcp_mem(tcp_mem_text)
    return MemoryReading(used_pages * page_size, pressure_pages * page_size)


def read_memory(proc: Path = Path("/proc")) -> MemoryReading:
    """Read the host's TCP memory and pressure threshold now."""
    return memory_reading(
        (proc / "net" / "sockstat").read_text(),
        (proc / "sys" / "net" / "ipv4" / "tcp_mem").read_text(),
    )
