"""The event format shared by every source and by subscribers, and its validation.

An event is a JSON object with ``type``, ``id``, ``ts`` (publish time, Unix seconds, so
that a subscriber can compute latency) and ``payload``. Encoding happens once per event,
not once per subscriber.

Parsing a body from outside is bounded before and while ``json`` runs: the size first, then
the nesting depth (``json`` recurses, and a body nested 100,000 deep raises RecursionError),
then every number literal's length (a ``ts`` of 400 digits overflows ``float``, an integer of
5,000 digits exceeds Python's int-string limit). Every failure is an :class:`InvalidEvent`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import time
import uuid
from typing import Any

from event_service.errors import InvalidEvent, InvalidSubscription

__all__ = [
    "MAX_EVENT_BYTES",
    "MAX_NESTING_DEPTH",
    "MAX_NUMBER_CHARS",
    "MAX_SUBSCRIPTION_TYPES",
    "Event",
    "check_type",
    "is_nested_deeper",
    "make_event",
    "parse_event",
    "parse_subscription",
]

_TYPE_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
MAX_EVENT_BYTES = 1 << 16
MAX_NESTING_DEPTH = 32
MAX_NUMBER_CHARS = 40
MAX_SUBSCRIPTION_TYPES = 32

# A JSON string, or an unterminated one up to the end: each byte is consumed once, so a body
# of many lone quotes costs linear time. (With the closing quote required, every quote would
# start a scan to the end: quadratic.)
_STRING_RE = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_INNERMOST_RE = re.compile(rb"\[\]|\{\}")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


@dataclasses.dataclass(frozen=True, slots=True)
class Event:
    """One event, with its JSON text encoded once."""

    type: str
    id: str
    ts: float
    payload: Any
    text: str


def make_event(
    type_: str, payload: Any, *, ts: float | None = None, id_: str | None = None
) -> Event:
    """Create an event stamped with its publish time; raise :class:`InvalidEvent`."""
    check_type(type_)
    ts = time.time() if ts is None else ts
    id_ = uuid.uuid4().hex if id_ is None else id_
    text = json.dumps(
        {"type": type_, "id": id_, "ts": ts, "payload": payload},
        separators=(",", ":"),
        allow_nan=False,
    )
    return Event(type=type_, id=id_, ts=ts, payload=payload, text=text)


def parse_event(body: bytes | str, *, max_bytes: int = MAX_EVENT_BYTES) -> Event:
    """Parse and validate an event received from outside; raise :class:`InvalidEvent`."""
    raw = body.encode() if isinstance(body, str) else body
    if len(raw) > max_bytes:
        raise InvalidEvent(f"event larger than {max_bytes} bytes")
    if is_nested_deeper(raw, MAX_NESTING_DEPTH):
        raise InvalidEvent(f"brackets nested deeper than {MAX_NESTING_DEPTH} or unbalanced")
    try:
        text = raw.decode()
        data = json.loads(text, parse_int=_bounded_int, parse_float=_bounded_float)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidEvent(f"not UTF-8 JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidEvent("not a JSON object")
    missing = {"type", "id", "ts", "payload"} - data.keys()
    if missing:
        raise InvalidEvent(f"missing fields: {', '.join(sorted(missing))}")
    if not isinstance(data["id"], str) or not data["id"]:
        raise InvalidEvent("id must be a non-empty string")
    ts = data["ts"]
    if isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts):
        raise InvalidEvent("ts must be a finite number of seconds")
    check_type(data["type"])
    return Event(type=data["type"], id=data["id"], ts=float(ts), payload=data["payload"], text=text)


def is_nested_deeper(raw: bytes, max_depth: int) -> bool:
    """Whether the brackets outside JSON strings nest deeper than ``max_depth`` (or do not pair).

    Valid JSON always pairs its brackets; a body that does not is invalid JSON anyway. Each
    pass removes the innermost level, in C: ``max_depth`` passes at most over the skeleton,
    and a run of ``max_depth + 1`` openers ends the search at once.
    """
    if raw.count(b"[") + raw.count(b"{") <= max_depth:
        return False  # an upper bound, strings included: too few brackets to nest deeper
    skeleton = _STRING_RE.sub(b"", raw).translate(None, _NOT_BRACKETS)
    openers_run = re.compile(rb"[\[{]{%d}" % (max_depth + 1))  # re caches the compiled form
    for _ in range(max_depth):
        if not skeleton:
            return False
        if openers_run.search(skeleton):
            return True  # a run of openers deeper than the bound: found in one scan
        skeleton = _INNERMOST_RE.sub(b"", skeleton)
    return bool(skeleton)


def _bounded_int(literal: str) -> int:
    if len(literal) > MAX_NUMBER_CHARS:
        raise InvalidEvent(f"number longer than {MAX_NUMBER_CHARS} characters")
    return int(literal)


def _bounded_float(literal: str) -> float:
    if len(literal) > MAX_NUMBER_CHARS:
        raise InvalidEvent(f"number longer than {MAX_NUMBER_CHARS} characters")
    return float(literal)


def check_type(type_: Any) -> str:
    """Return ``type_`` if it is a valid event type name; raise :class:`InvalidEvent`."""
    if not isinstance(type_, str) or not _TYPE_RE.match(type_):
        raise InvalidEvent("type must be 1-64 characters of letters, digits and _ . : -")
    return type_


def parse_subscription(query: str | None) -> frozenset[str] | None:
    """Parse ``events=a,b`` into a set of types; ``None`` (every type) when absent or empty."""
    if query is None or query.strip() == "":
        return None
    types = [part.strip() for part in query.split(",")]
    if len(types) > MAX_SUBSCRIPTION_TYPES:
        raise InvalidSubscription(f"at most {MAX_SUBSCRIPTION_TYPES} event types")
    for type_ in types:
        try:
            check_type(type_)
        except InvalidEvent:
            raise InvalidSubscription(f"invalid event type {type_[:64]!r}") from None
    return frozenset(types)
