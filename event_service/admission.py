"""Who may open a WebSocket session: the Origin allow-list, the optional token, the session cap.

Pure decisions over the handshake's headers and the current count; the endpoint
(:mod:`event_service.ws_endpoint`) turns a :class:`Refusal` into an HTTP answer before the
handshake completes. The cap keeps fds free for ``/healthz``, ``/stats`` and ``/metrics``
however many clients pile up, leaked ones included (the missing handler's dead sessions hold
their fds too).
"""

from __future__ import annotations

import dataclasses
import hmac
from collections.abc import Mapping

__all__ = ["Admission", "Refusal", "bearer_token", "token_matches"]

# Seconds a client refused at the cap is asked to wait before it tries again.
RETRY_AFTER_S = 5


@dataclasses.dataclass(frozen=True, slots=True)
class Refusal:
    """Why a handshake is refused, as the HTTP status and a short reason."""

    status: int
    reason: str

    @property
    def headers(self) -> dict[str, str]:
        """Headers the refusal's HTTP answer carries."""
        if self.status == 401:
            return {"WWW-Authenticate": "Bearer"}
        if self.status == 503:
            return {"Retry-After": str(RETRY_AFTER_S)}
        return {}


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, if any."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def token_matches(expected: str | None, given: str | None) -> bool:
    """Whether ``given`` is the token (always, when no token is configured); constant time."""
    if expected is None:
        return True
    if given is None:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


class Admission:
    """Counts the sessions in progress and decides on each new handshake."""

    def __init__(
        self, cap: int, *, token: str | None = None, origins: frozenset[str] | None = None
    ) -> None:
        self.cap = cap
        self.active = 0
        self._token = token
        self._origins = origins

    def check(self, headers: Mapping[str, str], query_token: str | None = None) -> Refusal | None:
        """``None`` if a session may start now, else why not (403, 401 or 503)."""
        if self._origins is not None:
            origin = headers.get("origin")
            # Browsers always send Origin; other clients may not, and are not the threat.
            if origin is not None and origin.strip().rstrip("/").lower() not in self._origins:
                return Refusal(403, "origin not allowed")
        if not token_matches(self._token, bearer_token(headers) or query_token):
            return Refusal(401, "token required")
        if self.active >= self.cap:
            return Refusal(503, "too many sessions")
        return None
