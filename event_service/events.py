"""The event format shared by every source and by subscribers, and its validation.

An event is a JSON object with ``type``, ``id``, ``ts`` (publish time, Unix seconds, so
that a subscriber can compute latency) and ``payload``. Encoding happens once per event,
not once per subscriber.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import time
import uuid
from typing import Any

_TYPE_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
MAX_EVENT_BYTES = 1 << 20
MAX_SUBSCRIPTION_TYPES = 32


class InvalidEvent(ValueError):
    """A message that is not a valid event."""


class InvalidSubscription(ValueError):
    """A subscription query that names no valid set of event types."""


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


def parse_event(body: bytes | str) -> Event:
    """Parse and validate an event received from a broker; raise :class:`InvalidEvent`."""
    raw = body.encode() if isinstance(body, str) else body
    if len(raw) > MAX_EVENT_BYTES:
        raise InvalidEvent(f"event larger than {MAX_EVENT_BYTES} bytes")
    try:
        text = raw.decode()
        data = json.loads(text)
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
