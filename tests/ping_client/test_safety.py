"""Tests for ping_client.safety: loopback-only targets and the TCP memory reading."""

from pathlib import Path

import pytest

from ping_client.safety import (
    TCP_MEM_PATH,
    UnsafeTarget,
    check_target,
    estimated_memory_reading,
    is_loopback,
    mem_available_bytes,
    mem_total_bytes,
    memory_reading,
    read_memory,
)

SOCKSTAT = "sockets: used 27\nTCP: inuse 11 orphan 0 tw 4 alloc 14 mem 1000\nTCP6: inuse 2\n"


@pytest.mark.parametrize("host", ["127.0.0.1", "127.1.2.3", "::1", "localhost", "LocalHost"])
def test_loopback_hosts(host):
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["10.0.0.1", "example.com", "0.0.0.0", "::"])
def test_non_loopback_hosts(host):
    assert not is_loopback(host)


def test_check_target_refuses_remote_hosts_unless_allowed():
    with pytest.raises(UnsafeTarget, match="--allow-remote"):
        check_target("10.0.0.1", allow_remote=False)
    check_target("10.0.0.1", allow_remote=True)
    check_target("127.0.0.1", allow_remote=False)


def test_memory_reading_compares_used_pages_with_the_pressure_threshold():
    reading = memory_reading(SOCKSTAT, "1000\t4000\t8000\n", page_size=16384)
    assert (reading.used_bytes, reading.pressure_bytes) == (1000 * 16384, 4000 * 16384)
    assert reading.fraction == 0.25
    assert not reading.is_estimate and reading.pressure_from == TCP_MEM_PATH


MEMINFO = "MemTotal:       16384000 kB\nMemFree:         8000000 kB\nMemAvailable:   12000000 kB\n"


def test_mem_total_is_read_in_bytes():
    assert mem_total_bytes(MEMINFO) == 16384000 * 1024
    with pytest.raises(ValueError, match="MemTotal"):
        mem_total_bytes("MemFree: 1 kB\n")


def test_mem_available_is_read_in_bytes():
    assert mem_available_bytes(MEMINFO) == 12000000 * 1024
    with pytest.raises(ValueError, match="MemAvailable"):
        mem_available_bytes("MemFree: 1 kB\n")


def test_without_tcp_mem_the_threshold_is_the_kernels_default_of_memtotal_over_16():
    reading = estimated_memory_reading(SOCKSTAT, MEMINFO, page_size=4096)
    assert (reading.used_bytes, reading.pressure_bytes) == (1000 * 4096, 16384000 * 1024 // 16)
    assert reading.is_estimate
    assert reading.pressure_from.startswith("MemTotal/16")
    assert f"no {TCP_MEM_PATH}" in reading.pressure_from


def _proc_tree(root: Path, *, tcp_mem: str | None) -> Path:
    (root / "net").mkdir(parents=True)
    (root / "net" / "sockstat").write_text(SOCKSTAT)
    (root / "meminfo").write_text(MEMINFO)
    if tcp_mem is not None:
        (root / "sys" / "net" / "ipv4").mkdir(parents=True)
        (root / "sys" / "net" / "ipv4" / "tcp_mem").write_text(tcp_mem)
    return root


def test_read_memory_falls_back_to_the_estimate_where_tcp_mem_is_missing(tmp_path):
    """A network namespace other than the host's (a container) has no tcp_mem."""
    assert not read_memory(_proc_tree(tmp_path / "host", tcp_mem="1\t4000\t8\n")).is_estimate
    assert read_memory(_proc_tree(tmp_path / "container", tcp_mem=None)).is_estimate
