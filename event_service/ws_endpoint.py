"""The subscriber endpoint ``/ws``: admission, the session with its read handler, its end.

Two ways in, one code path. With ``FANOUT=asgi`` FastAPI's route calls :func:`serve_subscriber`
(the plain FastAPI reference). With ``FANOUT=direct`` :class:`LeanApp` hands a ``/ws``
connection whose server offers a frame sink straight to :func:`serve_subscriber`, before
FastAPI's middleware and routing: their coroutines, exit stacks and scope entries would stay
alive for the whole life of every session, about a third of what an idle subscriber costs.
Admission (``WS_ORIGINS``, ``WS_TOKEN``, the session cap), the refusals, the close codes and
the counters are the same on both ways, as they are this one function.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

from fastapi.responses import PlainTextResponse
from starlette.datastructures import Headers, QueryParams
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from event_service.admission import Refusal
from event_service.direct_fanout import frame_sink_of
from event_service.errors import InvalidSubscription
from event_service.events import parse_subscription
from event_service.transport import tap_transport

__all__ = ["INTERNAL_ERROR", "POLICY_VIOLATION", "WS_PATH", "LeanApp", "serve_subscriber"]

WS_PATH = "/ws"
POLICY_VIOLATION = 1008
INTERNAL_ERROR = 1011

logger = logging.getLogger("event_service.ws_endpoint")


async def serve_subscriber(websocket: WebSocket, events: str | None) -> None:
    """Admit, accept and serve one subscriber of the types in ``events`` (``a,b``; all if None)."""
    state = websocket.app.state
    admission = state.admission
    # Read once, not cached on the WebSocket: nothing needs the headers after the handshake.
    scope = websocket.scope
    query_token = QueryParams(scope["query_string"]).get("token")
    refusal = admission.check(Headers(scope=scope), query_token)
    if refusal is not None:
        await _refuse(websocket, refusal)
        return
    admission.active += 1
    try:
        await websocket.accept()
        try:
            types = parse_subscription(events)
        except InvalidSubscription as exc:
            await websocket.close(POLICY_VIOLATION, str(exc))
            return
        await _serve(websocket, types)
    finally:
        admission.active -= 1


async def _serve(websocket: WebSocket, types: frozenset[str] | None) -> None:
    state = websocket.app.state
    # With FANOUT=direct the server offers the connection as a frame sink: the hub writes.
    subscriber = state.hub.subscribe(types, frame_sink_of(websocket.scope))
    try:
        await state.handler(websocket, subscriber, state.counters)
    except Exception:
        logger.exception("session failed")
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await websocket.close(INTERNAL_ERROR, "internal error")
    finally:
        state.hub.unsubscribe(subscriber)


async def _refuse(websocket: WebSocket, refusal: Refusal) -> None:
    """Answer a refused handshake over HTTP, before it completes (a server without the
    denial-response extension can only say 403)."""
    state = websocket.app.state
    state.counters.sessions_refused += 1
    state.refusal_log.log(
        time.monotonic(),
        "session refused status=%d reason=%r active=%d cap=%d",
        refusal.status,
        refusal.reason,
        state.admission.active,
        state.admission.cap,
    )
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        response = PlainTextResponse(refusal.reason, refusal.status, headers=refusal.headers)
        await websocket.send_denial_response(response)
    else:
        await websocket.close(POLICY_VIOLATION, refusal.reason)


class LeanApp:
    """The service's ASGI app: ``/ws`` with a frame sink served at once, the rest by FastAPI.

    ``state`` is the FastAPI app's (the lifespan fills it); ``scope["app"]`` is set to the
    FastAPI app, as Starlette does, so that the session finds the same state either way.
    """

    def __init__(self, api: Any) -> None:
        self.api: ASGIApp = api
        self.state = api.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "websocket"
            and scope["path"] == WS_PATH
            and frame_sink_of(scope) is not None
        ):
            scope["app"] = self.api
            tap_transport(scope, send)
            events = QueryParams(scope["query_string"]).get("events")
            await serve_subscriber(WebSocket(scope, receive, send), events)
            return
        await self.api(scope, receive, send)
