"""Tests for ping_client.safety: loopback-only targets and the TCP memory reading."""

import pytest

from ping_client.safety import UnsafeTarget, check_target, is_loopback, memory_reading

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
