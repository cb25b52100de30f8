"""The event service's exceptions, one tree::

    EventServiceError            anything the service raises on purpose
    ├── SettingsError            a setting has a value the service cannot run with (ValueError)
    ├── InvalidEvent             a message that is not a valid event (ValueError)
    ├── InvalidSubscription      a subscription that names no valid set of types (ValueError)
    ├── SourceUnavailable        the source cannot publish now: the broker is away (RuntimeError)
    └── HeadTooLarge             a request head passed a limit; carries the HTTP status

The ``ValueError`` and ``RuntimeError`` bases let callers that only know the standard library
catch them too. Library errors (uvicorn's ``ClientDisconnected``, aio-pika's connection errors)
are caught where a task or handler ends and are not wrapped.
"""

from __future__ import annotations

__all__ = [
    "EventServiceError",
    "HeadTooLarge",
    "InvalidEvent",
    "InvalidSubscription",
    "SettingsError",
    "SourceUnavailable",
]


class EventServiceError(Exception):
    """Base of every exception the event service raises on purpose."""


class SettingsError(EventServiceError, ValueError):
    """A setting has a value the service cannot run with."""


class InvalidEvent(EventServiceError, ValueError):
    """A message that is not a valid event."""


class InvalidSubscription(EventServiceError, ValueError):
    """A subscription query that names no valid set of event types."""


class SourceUnavailable(EventServiceError, RuntimeError):
    """The source cannot publish now (the broker is away); the caller may retry later."""


class HeadTooLarge(EventServiceError):
    """The request head passed a limit; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
