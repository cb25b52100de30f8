"""Guards that keep a swarm from hurting the host: loopback-only targets, a TCP memory limit."""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import os
from pathlib import Path

from ping_client.errors import UnsafeTarget
from sockscope.procfs import parse_sockstat, parse_tcp_mem

__all__ = [
    "DEFAULT_PRESSURE_SHARE",
    "LOOPBACK_NAMES",
    "PAGE_SIZE",
    "TCP_MEM_PATH",
    "MemoryGuard",
    "MemoryReading",
    "check_target",
    "estimated_memory_reading",
    "is_loopback",
    "mem_available_bytes",
    "mem_total_bytes",
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


logger = logging.getLogger("ping_client")

TCP_MEM_PATH = "/proc/sys/net/ipv4/tcp_mem"
# Linux's default tcp_mem pressure threshold is 1/16 of the memory it finds at boot
# (tcp_init_mem in net/ipv4/tcp.c); MemTotal/16 is within a few percent of it.
DEFAULT_PRESSURE_SHARE = 16


@dataclasses.dataclass(frozen=True)
class MemoryReading:
    """Host TCP memory against the kernel's pressure threshold, in bytes.

    ``pressure_from`` says where the threshold comes from: the kernel's ``tcp_mem``, or,
    where this network namespace has none (a container), an estimate from ``MemTotal``.
    """

    used_bytes: int
    pressure_bytes: int
    pressure_from: str = TCP_MEM_PATH

    @property
    def fraction(self) -> float:
        """Used memory as a fraction of the pressure threshold."""
        return self.used_bytes / self.pressure_bytes if self.pressure_bytes else 0.0

    @property
    def is_estimate(self) -> bool:
        """Whether the threshold is estimated, not read from ``tcp_mem``."""
        return self.pressure_from != TCP_MEM_PATH


def memory_reading(
    sockstat_text: str, tcp_mem_text: str, page_size: int = PAGE_SIZE
) -> MemoryReading:
    """Compare sockstat's TCP ``mem`` with ``tcp_mem``'s pressure threshold (both in pages)."""
    used_pages = parse_sockstat(sockstat_text, page_size)["mem"]
    _, pressure_pages, _ = parse_tcp_mem(tcp_mem_text)
    return MemoryReading(used_pages * page_size, pressure_pages * page_size)


def estimated_memory_reading(
    sockstat_text: str, meminfo_text: str, page_size: int = PAGE_SIZE
) -> MemoryReading:
    """Compare sockstat's TCP ``mem`` with the kernel's default threshold, MemTotal / 16."""
    used_pages = parse_sockstat(sockstat_text, page_size)["mem"]
    return MemoryReading(
        used_pages * page_size,
        mem_total_bytes(meminfo_text) // DEFAULT_PRESSURE_SHARE,
        f"MemTotal/{DEFAULT_PRESSURE_SHARE}, the kernel's default: "
        f"no {TCP_MEM_PATH} in this network namespace",
    )


def mem_total_bytes(meminfo_text: str) -> int:
    """``MemTotal`` of ``/proc/meminfo`` in bytes (the file gives it in kB)."""
    return _meminfo_bytes(meminfo_text, "MemTotal")


def mem_available_bytes(meminfo_text: str) -> int:
    """``MemAvailable`` of ``/proc/meminfo`` in bytes: what can be had without swapping."""
    return _meminfo_bytes(meminfo_text, "MemAvailable")


def _meminfo_bytes(meminfo_text: str, field: str) -> int:
    for line in meminfo_text.splitlines():
        name, _, value = line.partition(":")
        if name == field:
            number, *unit = value.split()
            return int(number) * (1024 if unit == ["kB"] else 1)
    raise ValueError(f"no {field} in /proc/meminfo")


def read_memory(proc: Path = Path("/proc")) -> MemoryReading:
    """Read the host's TCP memory and pressure threshold now (estimated without tcp_mem)."""
    sockstat = (proc / "net" / "sockstat").read_text()
    try:
        tcp_mem = (proc / "sys" / "net" / "ipv4" / "tcp_mem").read_text()
    except FileNotFoundError:
        return estimated_memory_reading(sockstat, (proc / "meminfo").read_text())
    return memory_reading(sockstat, tcp_mem)


class MemoryGuard:
    """Trips once host TCP memory reaches ``share`` of the kernel's pressure threshold.

    ``message`` says why it tripped (None until then); ``threshold_from`` where the
    threshold came from, known after the first :meth:`check`.
    """

    def __init__(self, share: float, proc: Path = Path("/proc")) -> None:
        self.share = share
        self._proc = proc
        self.message: str | None = None
        self.threshold_from: str | None = None

    @property
    def tripped(self) -> bool:
        """Whether the guard has tripped (it stays tripped)."""
        return self.message is not None

    def check(self) -> bool:
        """Read the host's TCP memory now; return True if the guard trips on this check."""
        if self.tripped:
            return False
        reading = read_memory(self._proc)
        if self.threshold_from is None:
            self.threshold_from = reading.pressure_from
            if reading.is_estimate:
                logger.warning(
                    "tcp memory guard: threshold %.0f MiB from %s",
                    reading.pressure_bytes / 2**20,
                    reading.pressure_from,
                )
        if reading.fraction < self.share:
            return False
        self.message = (
            f"stopped sending: host TCP memory {reading.used_bytes / 2**20:.0f} MiB is "
            f"{reading.fraction:.0%} of the kernel's pressure threshold "
            f"({reading.pressure_bytes / 2**20:.0f} MiB, {reading.pressure_from})"
        )
        logger.warning(self.message)
        return True
