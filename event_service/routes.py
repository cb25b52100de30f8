"""HTTP and WebSocket routes: the subscriber endpoint, event injection, and observation."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response, WebSocket
from pydantic import BaseModel
from starlette.websockets import WebSocketDisconnect

from event_service.events import InvalidEvent, InvalidSubscription, make_event, parse_subscription
from event_service.metrics import CONTENT_TYPE, render_metrics
from event_service.sources import READY_STATES, SourceUnavailable

POLICY_VIOLATION = 1008
INTERNAL_ERROR = 1011

logger = logging.getLogger("event_service.routes")
router = APIRouter()


class PublishRequest(BaseModel):
    """Body of ``POST /events``."""

    type: str
    payload: Any = None


@router.websocket("/ws")
async def subscribe(websocket: WebSocket, events: str | None = None) -> None:
    """Subscribe to events of the types in ``?events=a,b`` (every type without it)."""
    state = websocket.app.state
    await websocket.accept()
    try:
        types = parse_subscription(events)
    except InvalidSubscription as exc:
        await websocket.close(POLICY_VIOLATION, str(exc))
        return
    subscriber = state.hub.subscribe(types)
    try:
        await state.handler(websocket, subscriber, state.counters)
    except Exception:
        logger.exception("session failed")
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await websocket.close(INTERNAL_ERROR, "internal error")
    finally:
        state.hub.unsubscribe(subscriber)


@router.post("/events", status_code=202)
async def publish(body: PublishRequest, request: Request) -> dict[str, Any]:
    """Publish one event through the active source, as if it came from upstream."""
    try:
        event = make_event(body.type, body.payload)
    except InvalidEvent as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from None
    try:
        await request.app.state.source.publish(event)
    except SourceUnavailable as exc:
        raise HTTPException(status_code=503, detail=str(exc)) from None
    return {"id": event.id, "type": event.type, "ts": event.ts}


@router.get("/stats")
async def stats(request: Request) -> dict[str, Any]:
    """Figures measured from the kernel and the process, plus the service's counters."""
    return await _snapshot(request)


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    """The same figures in Prometheus text format."""
    return Response(render_metrics(await _snapshot(request)), media_type=CONTENT_TYPE)


@router.get("/healthz")
async def healthz(request: Request) -> dict[str, Any]:
    """Liveness: answers 200 as soon as the service is up, whatever the broker's state."""
    state = request.app.state
    return {
        "status": "ok",
        "read_handler": state.settings.read_handler_name,
        "broker": state.source.state,
    }


@router.get("/readyz")
async def readyz(request: Request, response: Response) -> dict[str, Any]:
    """Readiness: 200 while the source can deliver events, 503 while the broker is away."""
    broker = request.app.state.source.state
    ready = broker in READY_STATES
    response.status_code = 200 if ready else 503
    return {"status": "ready" if ready else "not ready", "broker": broker}


async def _snapshot(request: Request) -> dict[str, Any]:
    state = request.app.state
    port = request.scope["server"][1]
    snapshot = await state.observer.snapshot(port, state.counters, len(state.hub))
    return {**snapshot, "broker": state.source.state}
