"""Tests for leaklab.netns: the pure choices on literal ``ip`` output, and one real namespace."""

from __future__ import annotations

import ipaddress
import os
import subprocess

import pytest

from leaklab.netns import SUBNET_POOL, VethNamespace, free_subnets, stale_namespaces, used_networks

IP_ADDR = (
    "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever\n"
    "4: eth0    inet 192.0.2.2/24 brd 192.0.2.255 scope global eth0\n"
    "9: lkab12cdh    inet 192.168.251.1/30 scope global lkab12cdh\n"
    "10: br0    inet 192.168.251.64/27 scope global br0\n"
)


def test_used_networks_are_read_from_ip_addr():
    assert used_networks(IP_ADDR) == [
        ipaddress.IPv4Network(n)
        for n in ("127.0.0.0/8", "192.0.2.0/24", "192.168.251.0/30", "192.168.251.64/27")
    ]


def test_free_subnets_skip_every_overlapping_network():
    free = free_subnets(IP_ADDR)
    assert ipaddress.IPv4Network("192.168.251.0/30") not in free
    assert ipaddress.IPv4Network("192.168.251.4/30") in free
    assert not any(net.overlaps(ipaddress.IPv4Network("192.168.251.64/27")) for net in free)
    assert len(free) == 64 - 1 - 8
    assert all(net.subnet_of(SUBNET_POOL) for net in free)


def test_only_our_namespaces_of_dead_labs_are_stale():
    alive = os.getpid()
    dead = 2**22 + 12345  # above any pid_max
    listing = (
        f"leaklab-{dead}-a1b2c3 (id: 3)\nleaklab-{alive}-d4e5f6 (id: 4)\n"
        f"other-{dead}-a1b2c3\nleaklab-x-1\n"
    )
    assert stale_namespaces(listing) == [f"leaklab-{dead}-a1b2c3"]


@pytest.mark.skipif(os.geteuid() != 0, reason="a network namespace needs root")
@pytest.mark.timeout(30)
def test_a_namespace_reaches_the_host_side_and_is_gone_after_close():
    with VethNamespace.create() as netns:
        assert netns.exists()
        assert netns.name.startswith(f"leaklab-{os.getpid()}-")
        route = subprocess.run(
            ["ip", "netns", "exec", netns.name, "ip", "-4", "route"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        assert f"{netns.ns_address}" in route and "default" not in route
        host_route = subprocess.run(["ip", "route"], capture_output=True, text=True).stdout
        assert netns.host_ifname in host_route
        netns.take_link_down()
    assert not netns.exists()
    assert netns.host_ifname not in subprocess.run(["ip", "route"], capture_output=True,
                                                   text=True).stdout  # fmt: skip
