"""Tests for event_service.events: encoding once, strict parsing, subscription queries."""

import json

import pytest

from event_service.events import (
    MAX_EVENT_BYTES,
    MAX_SUBSCRIPTION_TYPES,
    InvalidEvent,
    InvalidSubscription,
    make_event,
    parse_event,
    parse_subscription,
)


def test_make_event_encodes_once_and_parse_event_round_trips():
    event = make_event("order.created", {"n": 1}, ts=1700000000.5, id_="abc")
    assert json.loads(event.text) == {
        "type": "order.created",
        "id": "abc",
        "ts": 1700000000.5,
        "payload": {"n": 1},
    }
    assert parse_event(event.text.encode()) == event
    assert parse_event(event.text) == event


def test_make_event_rejects_a_bad_type_name():
    with pytest.raises(InvalidEvent):
        make_event("has space", None)


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"\xff\xfe\xfd",
        b"[1, 2]",
        b'{"type": "a", "id": "x", "ts": 1}',
        b'{"type": "a b", "id": "x", "ts": 1, "payload": null}',
        b'{"type": "", "id": "x", "ts": 1, "payload": null}',
        b'{"type": 7, "id": "x", "ts": 1, "payload": null}',
        b'{"type": "a", "id": "x", "ts": true, "payload": null}',
        b'{"type": "a", "id": "x", "ts": "1", "payload": null}',
        b'{"type": "a", "id": "", "ts": 1, "payload": null}',
        b'{"type": "a", "id": 5, "ts": 1, "payload": null}',
        b'{"type": "a", "id": "x", "ts": NaN, "payload": null}',
        '{"type":"a","id":"x","ts":1,"payload":null}'.encode("utf-16"),
    ],
    ids=[
        "not-json", "bad-utf8", "array", "missing-payload", "space-in-type", "empty-type",
        "int-type", "boolean-ts", "string-ts", "empty-id", "int-id", "nan-ts", "utf16-body",
    ],
)  # fmt: skip
def test_parse_event_rejects_invalid_bodies(body):
    with pytest.raises(InvalidEvent):
        parse_event(body)


def test_parse_event_rejects_a_body_over_the_size_limit():
    padding = "x" * MAX_EVENT_BYTES
    body = json.dumps({"type": "a", "id": "x", "ts": 1, "payload": padding}).encode()
    with pytest.raises(InvalidEvent, match="larger than"):
        parse_event(body)


@pytest.mark.parametrize("query", [None, "", "   "])
def test_absent_subscription_means_every_type(query):
    assert parse_subscription(query) is None


def test_subscription_lists_types_separated_by_commas():
    assert parse_subscription("a, b,a") == frozenset({"a", "b"})


@pytest.mark.parametrize(
    "query",
    ["a,has space", "a,,b", "x" * 65, ",".join(f"t{n}" for n in range(MAX_SUBSCRIPTION_TYPES + 1))],
    ids=["space", "empty-name", "name-too-long", "too-many-types"],
)
def test_bad_subscription_raises_invalid_subscription(query):
    with pytest.raises(InvalidSubscription):
        parse_subscription(query)
