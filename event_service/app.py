"""The service's ASGI app: built by :func:`create_app`, its resources owned by the lifespan.

It is a FastAPI app behind :class:`~event_service.ws_endpoint.LeanApp`, which serves the
``/ws`` sessions of the direct fan-out before FastAPI's stack (the asgi path goes through it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import time
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from fastapi import FastAPI

from event_service.admission import Admission
from event_service.counters import Counters
from event_service.direct_fanout import fanout_in_effect
from event_service.hub import Hub
from event_service.limits import BoundedLog, TokenBucket
from event_service.observer import Observer
from event_service.routes import router
from event_service.session import READ_HANDLERS
from event_service.settings import Settings, session_cap
from event_service.sources import make_source
from event_service.transport import TransportTap
from event_service.ws_endpoint import LeanApp

__all__ = ["REFUSAL_LOG_EVERY_S", "create_app", "stop_sessions"]

REFUSAL_LOG_EVERY_S = 10.0

logger = logging.getLogger("event_service")


def create_app(settings: Settings) -> LeanApp:
    """Build the event router for ``settings``; nothing starts until the lifespan runs."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        counters = Counters()
        hub = Hub(
            counters,
            settings.queue_size,
            settings.slow_consumer_bytes,
            window_s=settings.fanout_window_s,
        )
        source = make_source(settings, hub, counters)
        fd_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        app.state.settings = settings
        app.state.counters = counters
        app.state.hub = hub
        app.state.source = source
        app.state.admission = Admission(
            session_cap(settings, fd_limit), token=settings.ws_token, origins=settings.ws_origins
        )
        app.state.refusal_log = BoundedLog(logger, REFUSAL_LOG_EVERY_S)
        rate = settings.publish_rate_per_s
        app.state.publish_bucket = TokenBucket(rate, max(1.0, rate), time.monotonic())
        logger.info(
            "limits max_sessions=%d fd_limit=%d slow_consumer_bytes=%d event_max_bytes=%d "
            "publish_rate=%g admin_token=%s ws_token=%s ws_origins=%s",
            app.state.admission.cap,
            fd_limit,
            settings.slow_consumer_bytes,
            settings.event_max_bytes,
            rate,
            "set" if settings.admin_token else "unset",
            "set" if settings.ws_token else "unset",
            ",".join(sorted(settings.ws_origins)) if settings.ws_origins else "any",
        )
        app.state.handler = READ_HANDLERS[settings.read_handler]
        fanout, _ = fanout_in_effect(settings.fanout, settings.ws_impl, uvicorn.__version__)
        app.state.observer = Observer(
            read_handler=settings.read_handler,
            ws_impl=settings.ws_impl,
            source=settings.source_name,
            fanout=fanout,
        )
        if settings.read_handler == "missing":
            logger.warning(
                "read handler missing: client messages will not be read "
                "and pile up in kernel socket buffers (READ_HANDLER=missing)"
            )
        try:
            await source.start()
            source_task = asyncio.create_task(source.run(), name="event-source")
            source_task.add_done_callback(_log_source_end)
            try:
                yield
            finally:
                hub.stop_all()
                source_task.cancel()
                await asyncio.wait([source_task])
        finally:
            await source.close()

    app = FastAPI(title="event-service", lifespan=lifespan)
    app.include_router(router)
    app.add_middleware(TransportTap)
    return LeanApp(app)


def stop_sessions(app: Any) -> Hub | None:
    """Ask every WebSocket session to close with 1001; return the hub (None before start-up)."""
    hub: Hub | None = getattr(app.state, "hub", None)
    if hub is not None:
        hub.stop_all()
    return hub


def _log_source_end(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("event source stopped", exc_info=task.exception())
