"""Running the app under uvicorn, with the WebSocket settings the lab controls.

Shutdown (SIGTERM, Ctrl-C) is bounded and leaves nothing in the kernel:

1. stop accepting, and ask every session to close with 1001;
2. abort at once (RST) the connections whose transport still holds unsent bytes: their
   client stopped reading long enough ago that the kernel's send buffer is full, so no close
   frame can get through, and their writer is stuck in ``send()``;
3. give the others up to ``SESSION_CLOSE_TIMEOUT_S`` to end and to have everything they
   were sent acknowledged by the client's kernel (the kernel's send queue empty);
4. abort whatever still has unsent bytes, then let uvicorn finish (it closes the rest).

A plain close of a socket whose peer stopped reading would leave an orphan in FIN_WAIT1
holding its whole send queue for minutes after the process exits; ``SO_LINGER`` 0 makes
close() send a RST and free it at once. The process then exits with status 0.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable

import uvicorn

from event_service.app import create_app, stop_sessions
from event_service.direct_fanout import DirectFanoutProtocol, fanout_in_effect
from event_service.request_head import HEAD_LIMITS
from event_service.settings import Settings
from event_service.transport import abort, unacked_bytes
from event_service.uvicorn_guards import GuardedServer, guarded_http_protocol, ws_protocol

__all__ = [
    "GRACEFUL_SHUTDOWN_TIMEOUT_S",
    "SESSION_CLOSE_TIMEOUT_S",
    "EventServer",
    "build_config",
    "has_buffered_bytes",
    "has_unsent_bytes",
]

SESSION_CLOSE_TIMEOUT_S = 2.0
# uvicorn's own bound on what is left after ours (HTTP requests in flight); not reached
# when every session has ended, which is what keeps its "Cancel N task(s)" error away.
GRACEFUL_SHUTDOWN_TIMEOUT_S = 3
_POLL_S = 0.05

logger = logging.getLogger("event_service")


def build_config(settings: Settings) -> uvicorn.Config:
    """uvicorn settings for ``settings``; keepalive ``None`` disables pings in every WS impl.

    ``FANOUT=direct`` falls back to ``asgi``, with a warning, where it cannot run (another
    ``WS_IMPL``, a uvicorn release it was not verified with).
    """
    fanout, why_not = fanout_in_effect(settings.fanout, settings.ws_impl, uvicorn.__version__)
    if why_not is not None:
        logger.warning("fanout=%s instead of %s: %s", fanout, settings.fanout, why_not)
    ws = DirectFanoutProtocol if fanout == "direct" else ws_protocol(settings.ws_impl)
    return uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        http=guarded_http_protocol(
            settings.http_impl, request_timeout_s=settings.handshake_timeout_s
        ),
        h11_max_incomplete_event_size=HEAD_LIMITS.head_bytes,
        ws=ws,
        ws_max_size=settings.ws_max_size_bytes,
        ws_ping_interval=settings.ws_ping_interval_s,
        ws_ping_timeout=settings.ws_ping_timeout_s,
        log_level=settings.log_level,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_TIMEOUT_S,
    )


class EventServer(GuardedServer):
    """A uvicorn server whose shutdown closes sessions with 1001 or aborts them, in bounds."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        self.stop_accepting()
        hub = stop_sessions(self.config.app)
        aborted = self._abort_where(has_buffered_bytes)
        deadline = started + SESSION_CLOSE_TIMEOUT_S
        while not self.force_exit and loop.time() < deadline:
            sessions_left = hub is not None and len(hub) > 0
            if not sessions_left and not any(map(has_unsent_bytes, self.connection_transports())):
                break
            await asyncio.sleep(_POLL_S)
        aborted += self._abort_where(has_unsent_bytes)
        logger.info(
            "sessions closed aborted=%d remaining=%d elapsed_s=%.2f",
            aborted,
            len(hub) if hub is not None else 0,
            loop.time() - started,
        )
        await super().shutdown(sockets)

    def _abort_where(self, condition: Callable[[asyncio.Transport], bool]) -> int:
        stuck = [t for t in self.connection_transports() if condition(t)]
        for transport in stuck:
            abort(transport)
        return len(stuck)


def has_buffered_bytes(transport: asyncio.Transport) -> bool:
    """Whether the transport holds bytes the kernel would not take: its client is stuck."""
    return transport.get_write_buffer_size() > 0


def has_unsent_bytes(transport: asyncio.Transport) -> bool:
    """Whether bytes written to this connection are not yet acknowledged by the client."""
    return transport.get_write_buffer_size() > 0 or unacked_bytes(transport) > 0
