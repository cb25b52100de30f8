"""Tests for event_service.events: encoding once, strict parsing, subscription queries."""

import json

import pytest

from event_service.events import (
    MAX_EVENT_BYTES,
    MAX_NESTING_DEPTH,
    MAX_NUMBER_CHARS,
    MAX_SUBSCRIPTION_TYPES,
    InvalidEvent,
    InvalidSubscription,
    is_nested_deeper,
    make_event,
    parse_event,
    parse_subscription,
)


def event_body(payload_json: str, *, ts: str = "1") -> bytes:
    """An event whose ``payload`` and ``ts`` are the given JSON text, as is."""
    return f'{{"type":"a","id":"x","ts":{ts},"payload":{payload_json}}}'.encode()


def nested(depth: int) -> str:
    """A payload of ``depth`` nested arrays (the event object adds one level)."""
    return "[" * depth + "]" * depth


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


def test_the_size_limit_is_a_parameter():
    body = event_body('"' + "x" * 300 + '"')
    assert parse_event(body, max_bytes=len(body)).payload == "x" * 300
    with pytest.raises(InvalidEvent, match="larger than 256 bytes"):
        parse_event(body, max_bytes=256)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "nested deeper"),  # RecursionError in json
        (event_body("null", ts="1" + "0" * 399), "number longer"),  # OverflowError in float()
        (event_body("9" * 5000), "number longer"),  # ValueError: the int-string limit
        (event_body("1." + "5" * 5000), "number longer"),
        (event_body("1e" + "9" * 400), "number longer"),
    ],
    ids=["nested-100000", "ts-400-digits", "int-5000-digits", "float-5000-digits", "exponent"],
)
def test_poison_bodies_raise_invalid_event_only(body, reason):
    with pytest.raises(InvalidEvent, match=reason):
        parse_event(body, max_bytes=1 << 20)


def test_nesting_up_to_the_bound_is_accepted_and_one_more_level_is_not():
    assert parse_event(event_body(nested(MAX_NESTING_DEPTH - 1))).payload is not None
    with pytest.raises(InvalidEvent, match="nested deeper"):
        parse_event(event_body(nested(MAX_NESTING_DEPTH)))


def test_numbers_up_to_the_bound_are_accepted_and_longer_ones_are_not():
    longest = "1" * MAX_NUMBER_CHARS
    assert parse_event(event_body(longest)).payload == int(longest)
    with pytest.raises(InvalidEvent, match="number longer"):
        parse_event(event_body(longest + "1"))


@pytest.mark.parametrize(
    ("raw", "max_depth", "deeper"),
    [
        (b'{"a":[[1]]}', 3, False),
        (b'{"a":[[1]]}', 2, True),
        (b'{"a":"[[[[[[","b":[]}', 2, False),  # brackets in strings do not count
        (b'{"a":"\\\\","b":[[[]]]}', 3, True),  # an escaped backslash, then the string ends
        (b'{"a":"\\"[[[[","b":1}', 1, False),  # an escaped quote does not end the string
        (b'{"a":[[[}', 2, True),  # unbalanced: invalid JSON, refused too
        (b"[[][[]]]", 2, True),
        (b"[[][]][[][]]", 2, False),
        (b'"' + b'\\"' * 1000, 1, False),  # an unterminated string runs to the end
    ],
)
def test_nesting_depth_counts_brackets_outside_strings(raw, max_depth, deeper):
    assert is_nested_deeper(raw, max_depth) is deeper
