"""Tests of the large cells' check of the machine: fds, sessions, kernel and free memory."""

from __future__ import annotations

import dataclasses
import resource
from pathlib import Path

from event_service.settings import Settings
from leaklab.stories.ws_read_handler.capacity import (
    KERNEL_OVERHEAD,
    Room,
    kernel_bytes_needed,
    read_room,
    refusal,
)
from leaklab.stories.ws_read_handler.matrix import LARGE
from ping_client.safety import MemoryReading

MIB, GIB = 1 << 20, 1 << 30
# This machine's figures: fd hard limit 20,000, tcp_mem pressure 1.5 GiB, 22 GiB free.
ROOM = Room(
    client_fds=19_744, service_sessions=16_000,
    tcp=MemoryReading(used_bytes=50 * MIB, pressure_bytes=1536 * MIB),
    available_bytes=22 * GIB, guard_share=0.8,
)  # fmt: skip


def test_the_large_cell_fits_this_machine():
    assert refusal(LARGE, ROOM) is None
    assert kernel_bytes_needed(LARGE) == round(LARGE.sent_bytes * KERNEL_OVERHEAD)
    assert kernel_bytes_needed(LARGE) < 450 * MIB


def test_too_few_fds_or_sessions_are_refused_with_the_numbers():
    assert refusal(LARGE, dataclasses.replace(ROOM, client_fds=768)) == (
        "10000 clients need 10000 fds; this process can hold 768"
    )
    assert refusal(LARGE, dataclasses.replace(ROOM, service_sessions=819)) == (
        "10000 clients; the service caps sessions at 819"
    )


def test_kernel_memory_past_the_swarms_guard_is_refused():
    """The swarm would stop sending at 80% of tcp_mem's pressure threshold mid-cell."""
    busy = MemoryReading(used_bytes=900 * MIB, pressure_bytes=1536 * MIB)
    why = refusal(LARGE, dataclasses.replace(ROOM, tcp=busy))
    assert why is not None and why.startswith("needs about 427 MiB of kernel TCP memory")
    assert "900 MiB are in use and the swarm stops at 1229 MiB (80% of 1536 MiB" in why


def test_too_little_free_memory_is_refused():
    why = refusal(LARGE, dataclasses.replace(ROOM, available_bytes=512 * MIB))
    assert why == "needs about 427 MiB of kernel memory; only 512 MiB are available"


def test_the_room_is_read_from_this_machine(tmp_path: Path) -> None:
    """The service's cap at the fd limit given; memory from the files /proc has."""
    (tmp_path / "net").mkdir()
    (tmp_path / "sys" / "net" / "ipv4").mkdir(parents=True)
    (tmp_path / "net" / "sockstat").write_text("TCP: inuse 5 orphan 0 tw 0 alloc 5 mem 100\n")
    (tmp_path / "sys" / "net" / "ipv4" / "tcp_mem").write_text("1000\t2000\t3000\n")
    (tmp_path / "meminfo").write_text("MemTotal: 100 kB\nMemAvailable: 64 kB\n")
    room = read_room(Settings(port=0), 20_000, 0.8, proc=tmp_path)
    page = resource.getpagesize()
    assert (room.client_fds, room.service_sessions) == (20_000 - 256, 16_000)
    assert (room.tcp.used_bytes, room.tcp.pressure_bytes) == (100 * page, 2000 * page)
    assert (room.available_bytes, room.guard_share) == (64 * 1024, 0.8)
