"""Spreading a swarm over processes and source addresses: the numbers, and the refusals."""

from __future__ import annotations

import pytest

from ping_client.errors import InvalidConfig
from ping_client.plan import FD_HEADROOM, Limits, can_spread_sources, plan_swarm, split

HERE = Limits(fd_hard_limit=20_000, port_range=(32768, 60999))  # this machine's


def test_split_differs_by_at_most_one_and_adds_up():
    assert split(10, 3) == [4, 3, 3]
    assert split(40_000, 3) == [13_334, 13_333, 13_333]
    assert sum(split(12_345, 7)) == 12_345


def test_the_limits_leave_headroom_for_other_files_and_ports():
    assert HERE.connections_per_process == 20_000 - FD_HEADROOM
    assert HERE.connections_per_address == int(28_232 * 0.9)


def test_by_default_as_few_processes_as_the_fd_limit_allows():
    assert plan_swarm(5_000, None, limits=HERE, host="127.0.0.1").processes == 1
    plan = plan_swarm(40_000, None, limits=HERE, host="127.0.0.1")
    assert plan.processes == 3
    assert [w.clients for w in plan.workers] == [13_334, 13_333, 13_333]


def test_one_process_is_the_swarm_itself_unbound():
    plan = plan_swarm(100, 1, limits=HERE, host="127.0.0.1")
    assert plan.processes == 1
    assert plan.source_addresses == ()


def test_each_worker_binds_to_loopback_addresses_of_its_own():
    plan = plan_swarm(5_000, 2, limits=HERE, host="127.0.0.1")
    assert [w.source_addresses for w in plan.workers] == [("127.0.0.2",), ("127.0.0.3",)]


def test_a_worker_past_the_ports_of_one_address_gets_more_addresses():
    roomy = Limits(fd_hard_limit=1_000_000, port_range=(50000, 50999))  # 900 ports each
    plan = plan_swarm(3_000, 2, limits=roomy, host="localhost")
    assert [len(w.source_addresses) for w in plan.workers] == [2, 2]
    assert len(set(plan.source_addresses)) == 4


def test_the_default_adds_a_process_when_one_address_lacks_ports():
    roomy = Limits(fd_hard_limit=1_000_000, port_range=(50000, 50999))
    plan = plan_swarm(1_000, None, limits=roomy, host="127.0.0.1")
    assert plan.processes == 2
    assert len(plan.source_addresses) == 2


def test_too_few_processes_for_the_fd_limit_is_refused_with_the_numbers():
    with pytest.raises(InvalidConfig) as caught:
        plan_swarm(40_000, 2, limits=HERE, host="127.0.0.1")
    message = str(caught.value)
    assert "20000 connections in one process" in message
    assert "fd hard limit 20000" in message
    assert "--processes 3 or more" in message


def test_one_process_past_the_ports_of_one_address_is_told_to_use_more():
    roomy = Limits(fd_hard_limit=1_000_000, port_range=(50000, 50999))
    with pytest.raises(InvalidConfig, match=r"at most 900 \(90% of the ephemeral ports "
                       r"50000-50999\).*--processes 2 or more"):  # fmt: skip
        plan_swarm(1_000, 1, limits=roomy, host="127.0.0.1")


def test_a_remote_target_has_one_source_address_and_says_so():
    plan = plan_swarm(24_000, 2, limits=HERE, host="::1")
    assert plan.source_addresses == ()
    assert plan.note is not None and "one source address" in plan.note
    with pytest.raises(InvalidConfig, match=r"192\.0\.2\.10 is not on IPv4 loopback"):
        plan_swarm(30_000, 2, limits=HERE, host="192.0.2.10")


def test_more_processes_than_clients_or_out_of_range_is_refused():
    with pytest.raises(InvalidConfig, match="--processes 4 is more than --clients 3"):
        plan_swarm(3, 4, limits=HERE, host="127.0.0.1")
    with pytest.raises(InvalidConfig, match="--processes must be from 1 to"):
        plan_swarm(3, 0, limits=HERE, host="127.0.0.1")


def test_an_fd_limit_below_the_headroom_is_refused():
    with pytest.raises(InvalidConfig, match="fd hard limit 100 leaves no room"):
        plan_swarm(3, None, limits=Limits(100, (32768, 60999)), host="127.0.0.1")


def test_only_ipv4_loopback_spreads_over_source_addresses():
    assert can_spread_sources("127.0.0.1")
    assert can_spread_sources("127.1.2.3")
    assert can_spread_sources("localhost")
    assert not can_spread_sources("::1")
    assert not can_spread_sources("10.0.0.1")
    assert not can_spread_sources("example.com")
