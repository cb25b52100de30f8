"""Tests for ping_client.swarm.SwarmConfig.validate (pure: no connection is made)."""

import pytest

from ping_client.safety import UnsafeTarget
from ping_client.swarm import SwarmConfig


@pytest.mark.parametrize(
    "url", ["ws://127.0.0.1:8000/ws", "ws://localhost:8000/ws", "ws://[::1]/ws"]
)
def test_loopback_url_is_accepted(url):
    uri = SwarmConfig(url=url).validate()
    assert uri.path == "/ws" and not uri.secure


def test_remote_url_is_refused_unless_allowed():
    with pytest.raises(UnsafeTarget, match="--allow-remote"):
        SwarmConfig(url="ws://10.0.0.1:8000/ws").validate()
    assert SwarmConfig(url="ws://10.0.0.1:8000/ws", allow_remote=True).validate().host == "10.0.0.1"


@pytest.mark.parametrize("url", ["wss://127.0.0.1:8000/ws", "http://127.0.0.1:8000/ws"])
def test_wss_and_non_websocket_urls_are_refused(url):
    with pytest.raises(ValueError, match="--url"):
        SwarmConfig(url=url).validate()


@pytest.mark.parametrize(
    ("field", "value", "option"),
    [
        ("clients", 0, "--clients"),
        ("ramp_per_s", 0.0, "--ramp"),
        ("interval_s", 0.04, "--interval"),
        ("size_bytes", 0, "--size"),
        ("size_bytes", (1 << 20) + 1, "--size"),
        ("payload", "zeros", "--payload"),
        ("ping_kind", "pong", "--ping-kind"),
        ("duration_s", 0.0, "--duration"),
        ("tcp_mem_guard", 0.0, "--tcp-mem-guard"),
        ("tcp_mem_guard", 1.01, "--tcp-mem-guard"),
        ("client_keepalive_s", 0.0, "--client-keepalive"),
        ("churn_every_s", 0.05, "--churn-every"),
        ("churn_batch", 0, "--churn-batch"),
        ("churn_batch", 10_001, "--churn-batch"),
        ("client_lifetime_s", 0.0, "--lifetime"),
        ("subscribe", ("ok", "not a type"), "--subscribe"),
        ("subscribe", ("x" * 65,), "--subscribe"),
    ],
)
def test_bad_field_raises_value_error_naming_the_option(field, value, option):
    with pytest.raises(ValueError, match=option):
        SwarmConfig(**{field: value}).validate()


def test_edge_values_are_accepted():
    SwarmConfig(
        interval_s=0.05, size_bytes=1 << 20, tcp_mem_guard=1.0, client_keepalive_s=5.0
    ).validate()


def test_churn_is_off_by_default():
    """The swarm's existing behaviour stays the default: the clients connect once and stay."""
    config = SwarmConfig()
    assert (config.churn_every_s, config.client_lifetime_s, config.subscribe) == (None, None, ())


def test_subscribe_adds_the_types_to_the_url():
    uri = SwarmConfig(subscribe=("deploy", "audit.v1")).validate()
    assert uri.resource_name == "/ws?events=deploy,audit.v1"


def test_subscribe_and_events_in_the_url_are_refused_together():
    with pytest.raises(ValueError, match="one place"):
        SwarmConfig(url="ws://127.0.0.1:8000/ws?events=a", subscribe=("b",)).validate()
    assert SwarmConfig(url="ws://127.0.0.1:8000/ws?events=a").validate().query == "events=a"


def test_churn_edge_values_are_accepted():
    SwarmConfig(churn_every_s=0.1, churn_batch=10_000, client_lifetime_s=0.01).validate()
