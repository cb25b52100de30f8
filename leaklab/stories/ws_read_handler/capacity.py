"""Whether this machine can hold a large cell now: fds, sessions, kernel and free memory.

The check is pure (:func:`refusal`, over a :class:`Room` of plain numbers); :func:`read_room`
is the short shell that reads them: the lab's fd limit (raised to the hard one first,
``ping_client.limits.raise_fd_limit``; the service inherits it), the service's session cap
at that limit, the host's TCP memory against the kernel's pressure
threshold (``ping_client.safety.read_memory``, as the swarm's memory guard reads it) and
``MemAvailable``. A large cell that does not fit is refused before anything starts, with
the numbers, and reported ``unknown``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from event_service.settings import Settings, session_cap
from leaklab.stories.ws_read_handler.matrix import Large
from ping_client.plan import FD_HEADROOM
from ping_client.safety import MemoryReading, mem_available_bytes, read_memory

__all__ = ["KERNEL_OVERHEAD", "Room", "kernel_bytes_needed", "read_room", "refusal"]

# Kernel memory per byte left unread: the skb overhead of 1 KiB messages on loopback (1.1
# measured here: sockstat's TCP mem over the payload sent), with a margin.
KERNEL_OVERHEAD = 1.25
# Free memory to keep beyond the cell's kernel memory: the cell may use at most half.
FREE_SHARE = 0.5
MIB = 1 << 20


@dataclasses.dataclass(frozen=True)
class Room:
    """What the machine has for a cell: fds for the lab's clients, sessions, memory."""

    client_fds: int  # connections the lab's own process can hold under its fd limit
    service_sessions: int  # the service's session cap at that fd limit
    tcp: MemoryReading  # host TCP memory and the kernel's pressure threshold
    available_bytes: int  # MemAvailable
    guard_share: float  # the swarm stops sending at this share of the threshold


def kernel_bytes_needed(large: Large) -> int:
    """The kernel memory a missing-handler cell of this size reaches by its end."""
    return round(large.sent_bytes * KERNEL_OVERHEAD)


def refusal(large: Large, room: Room) -> str | None:
    """Why ``large`` does not fit in ``room`` (None: it does), with the numbers."""
    clients = large.clients
    if clients > room.client_fds:
        return f"{clients} clients need {clients} fds; this process can hold {room.client_fds}"
    if clients > room.service_sessions:
        return f"{clients} clients; the service caps sessions at {room.service_sessions}"
    needed = kernel_bytes_needed(large)
    limit = room.guard_share * room.tcp.pressure_bytes
    if room.tcp.used_bytes + needed > limit:
        return (
            f"needs about {needed // MIB} MiB of kernel TCP memory; {room.tcp.used_bytes // MIB} "
            f"MiB are in use and the swarm stops at {limit / MIB:.0f} MiB "
            f"({room.guard_share:.0%} of {room.tcp.pressure_bytes // MIB} MiB, "
            f"{room.tcp.pressure_from})"
        )
    if needed > FREE_SHARE * room.available_bytes:
        return (
            f"needs about {needed // MIB} MiB of kernel memory; only "
            f"{room.available_bytes // MIB} MiB are available"
        )
    return None


def read_room(
    settings: Settings, fd_limit: int, guard_share: float, proc: Path = Path("/proc")
) -> Room:
    """The machine's room now: the lab and its service each under ``fd_limit`` fds."""
    return Room(
        client_fds=max(0, fd_limit - FD_HEADROOM),
        service_sessions=session_cap(settings, fd_limit),
        tcp=read_memory(proc),
        available_bytes=mem_available_bytes((proc / "meminfo").read_text()),
        guard_share=guard_share,
    )
