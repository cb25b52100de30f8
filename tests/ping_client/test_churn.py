"""Tests for ping_client.churn: the arrival schedule, departures and the subscription URL."""

import itertools

from websockets.uri import parse_uri

from ping_client.churn import Departures, arrival_offsets, subscription_uri


def test_without_churn_the_clients_arrive_once_at_the_ramp_rate():
    assert list(arrival_offsets(4, 2.0, None, 20)) == [0.0, 0.5, 1.0, 1.5]


def test_with_churn_a_ramped_batch_arrives_every_period_for_ever():
    offsets = list(itertools.islice(arrival_offsets(2, 10.0, 5.0, 3), 8))
    assert offsets == [0.0, 0.1, 5.0, 5.1, 5.2, 10.0, 10.1, 10.2]


def test_departures_come_due_after_the_lifetime_oldest_first():
    departures: Departures[str] = Departures(lifetime_s=5.0)
    departures.add("a", opened_at=100.0)
    departures.add("b", opened_at=101.0)
    departures.add("c", opened_at=101.5)
    assert departures.due(104.9) == []
    assert departures.due(106.0) == ["a", "b"]
    assert len(departures) == 1
    assert departures.due(106.5) == ["c"]
    assert departures.due(1e9) == []


def test_cleared_departures_never_come_due():
    departures: Departures[str] = Departures(lifetime_s=1.0)
    departures.add("a", opened_at=0.0)
    departures.clear()
    assert departures.due(10.0) == [] and len(departures) == 0


def test_subscription_is_added_to_the_query():
    uri = parse_uri("ws://127.0.0.1:8000/ws")
    assert subscription_uri(uri, ("deploy", "audit")).resource_name == "/ws?events=deploy,audit"
    with_token = parse_uri("ws://127.0.0.1:8000/ws?token=t")
    assert subscription_uri(with_token, ("deploy",)).resource_name == "/ws?token=t&events=deploy"
    assert subscription_uri(uri, ()) == uri
