"""Running the app under uvicorn, with the WebSocket settings the lab controls.

uvicorn's graceful shutdown waits for every connection and app task to end. A session
that never reads and has nothing to send would keep it waiting for ever, so
:class:`EventServer` first asks every session to close with 1001 and waits a moment for
them, and ``timeout_graceful_shutdown`` bounds the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

import uvicorn

from event_service.app import create_app, stop_sessions
from event_service.request_head import HEAD_LIMITS
from event_service.settings import Settings
from event_service.uvicorn_guards import guarded_http_protocol, ws_protocol

SESSION_CLOSE_TIMEOUT_S = 2.0
GRACEFUL_SHUTDOWN_TIMEOUT_S = 3

logger = logging.getLogger("event_service")


def build_config(settings: Settings) -> uvicorn.Config:
    """uvicorn settings for ``settings``; keepalive ``None`` disables pings in every WS impl."""
    return uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        http=guarded_http_protocol(
            settings.http_impl, request_timeout_s=settings.handshake_timeout_s
        ),
        h11_max_incomplete_event_size=HEAD_LIMITS.head_bytes,
        ws=ws_protocol(settings.ws_impl),
        ws_max_size=settings.ws_max_size_bytes,
        ws_ping_interval=settings.ws_ping_interval_s,
        ws_ping_timeout=settings.ws_ping_timeout_s,
        log_level=settings.log_level,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_TIMEOUT_S,
    )


class EventServer(uvicorn.Server):
    """A uvicorn server that closes WebSocket sessions with 1001 before shutting down."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        hub = stop_sessions(self.config.app)
        if hub is not None and len(hub):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(hub.wait_empty(), SESSION_CLOSE_TIMEOUT_S)
            logger.info("sessions closed remaining=%d", len(hub))
        await super().shutdown(sockets)
