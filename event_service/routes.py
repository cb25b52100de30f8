"""HTTP and WebSocket routes: the subscriber endpoint, event injection, and observation."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, WebSocket
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect

from event_service.admission import bearer_token, token_matches
from event_service.events import make_event
from event_service.metrics import CONTENT_TYPE, render_metrics
from event_service.snapshot import ObservedFigures, ServiceSnapshot
from event_service.sources import READY_STATES, SourceUnavailable
from event_service.ws_endpoint import WS_PATH, serve_subscriber
from sockscope.tasks import render_dump

logger = logging.getLogger("event_service.routes")
router = APIRouter()


class PublishRequest(BaseModel):
    """Body of ``POST /events``."""

    type: str
    payload: Any = None


def require_admin(request: Request) -> None:
    """With ``ADMIN_TOKEN`` set, answer 401 unless the request carries it as a bearer token."""
    if not token_matches(request.app.state.settings.admin_token, bearer_token(request.headers)):
        raise HTTPException(401, "admin token required", headers={"WWW-Authenticate": "Bearer"})


@router.websocket(WS_PATH)
async def subscribe(websocket: WebSocket, events: str | None = None) -> None:
    """Subscribe to events of the types in ``?events=a,b`` (every type without it)."""
    await serve_subscriber(websocket, events)


@router.post("/events", status_code=202, dependencies=[Depends(require_admin)])
async def publish(request: Request) -> dict[str, Any]:
    """Publish one event through the active source, as if it came from upstream.

    Limits, in this order: the admin token (401), ``PUBLISH_RATE`` (429), ``EVENT_MAX_BYTES``
    for the body and for the event it makes (413), a valid event (422).
    """
    state = request.app.state
    wait_s = state.publish_bucket.take(time.monotonic())
    if wait_s > 0:
        state.counters.publish_refused += 1
        raise HTTPException(429, "publish rate limit", headers={"Retry-After": f"{wait_s:.0f}"})
    max_bytes = state.settings.event_max_bytes
    body = await _read_body(request, max_bytes)
    try:
        request_body = PublishRequest.model_validate_json(body)
        event = make_event(request_body.type, request_body.payload)
    except ValidationError as exc:
        raise HTTPException(422, exc.errors(include_url=False, include_input=False)) from None
    # ValueError covers InvalidEvent and integers past Python's int-string limit.
    except (ValueError, RecursionError) as exc:
        raise HTTPException(422, str(exc)[:200]) from None
    if len(event.text) > max_bytes:
        raise HTTPException(413, f"event larger than {max_bytes} bytes")
    try:
        await state.source.publish(event)
    except SourceUnavailable as exc:
        raise HTTPException(status_code=503, detail=str(exc)) from None
    return {"id": event.id, "type": event.type, "ts": event.ts}


async def _read_body(request: Request, max_bytes: int) -> bytes:
    """The request body, refused with 413 as soon as it passes ``max_bytes``."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise HTTPException(413, f"body larger than {max_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                raise HTTPException(413, f"body larger than {max_bytes} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        # The client left (or the request deadline closed it) mid-body: nobody to answer.
        raise HTTPException(400, "client disconnected") from None
    return b"".join(chunks)


# response_model=None: the snapshot is served as built, not validated field by field again.
@router.get("/stats", dependencies=[Depends(require_admin)], response_model=None)
async def stats(request: Request) -> ServiceSnapshot:
    """Figures measured from the kernel and the process, plus the service's counters."""
    return await _snapshot(request)


@router.get("/metrics", dependencies=[Depends(require_admin)])
async def metrics(request: Request) -> Response:
    """The same figures in Prometheus text format."""
    return Response(render_metrics(await _snapshot(request)), media_type=CONTENT_TYPE)


@router.get("/debug/tasks", dependencies=[Depends(require_admin)])
async def debug_tasks(debug: int = Query(1, ge=1, le=2)) -> PlainTextResponse:
    """Live asyncio tasks grouped by the coroutines they await, largest group first
    (``debug=1``, as Go's goroutine profile), or every task's await chain (``debug=2``)."""
    return PlainTextResponse(render_dump(asyncio.all_tasks(), debug))


@router.get("/healthz")
async def healthz(request: Request) -> dict[str, Any]:
    """Liveness: answers 200 as soon as the service is up, whatever the broker's state."""
    state = request.app.state
    return {
        "status": "ok",
        "read_handler": state.settings.read_handler,
        "broker": state.source.state,
    }


@router.get("/readyz")
async def readyz(request: Request, response: Response) -> dict[str, Any]:
    """Readiness: 200 while the source can deliver events, 503 while the broker is away."""
    broker = request.app.state.source.state
    ready = broker in READY_STATES
    response.status_code = 200 if ready else 503
    return {"status": "ready" if ready else "not ready", "broker": broker}


async def _snapshot(request: Request) -> ServiceSnapshot:
    state = request.app.state
    port = request.scope["server"][1]
    observed: ObservedFigures = await state.observer.snapshot(port, state.counters, len(state.hub))
    return {**observed, "max_sessions": state.admission.cap, "broker": state.source.state}
