"""The FastAPI app: built by :func:`create_app`, its resources owned by the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI

from event_service.counters import Counters
from event_service.hub import Hub
from event_service.observer import Observer
from event_service.routes import router
from event_service.session import READ_HANDLERS
from event_service.settings import Settings
from event_service.sources import make_source

logger = logging.getLogger("event_service")


def create_app(settings: Settings) -> FastAPI:
    """Build the event router for ``settings``; nothing starts until the lifespan runs."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        counters = Counters()
        hub = Hub(counters, settings.queue_size)
        source = make_source(settings, hub, counters)
        app.state.settings = settings
        app.state.counters = counters
        app.state.hub = hub
        app.state.source = source
        app.state.handler = READ_HANDLERS[settings.read_handler_name]
        app.state.observer = Observer(
            read_handler=settings.read_handler_name,
            ws_impl=settings.ws_impl,
            source=settings.source_name,
        )
        if not settings.read_handler:
            logger.warning(
                "read handler missing: client messages will not be read "
                "and pile up in kernel socket buffers (READ_HANDLER=off)"
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
    return app


def stop_sessions(app: Any) -> Hub | None:
    """Ask every WebSocket session to close with 1001; return the hub (None before start-up)."""
    hub: Hub | None = getattr(app.state, "hub", None)
    if hub is not None:
        hub.stop_all()
    return hub


def _log_source_end(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("event source stopped", exc_info=task.exception())
