"""A subscriber's WebSocket session, with the two read handlers the lab compares.

The missing and the fixed handler differ in exactly one thing: whether a reader runs.

- ``serve_without_reader`` (READ_HANDLER=missing) only writes. Whatever the client sends stays
  in the kernel's receive buffer (uvicorn stops reading the socket once one message waits
  for the app), and the session learns that the client left only when a send fails.
- ``serve_with_reader`` (READ_HANDLER=fixed) runs a reader next to the writer. The reader
  drains and discards client messages; when it ends (the client closed or went away) the
  writer is cancelled and the session ends at once.

The writer is the same in both, and so is the slow-consumer policy, which is about the
write side only: a subscriber past its budget (see :mod:`event_service.hub`) is closed with
``SLOW_CODE``, and aborted if even the close frame cannot get through. With ``FANOUT=asgi``
the writer sends every event through ASGI; with ``FANOUT=direct`` the hub writes the events
below ASGI itself (:mod:`event_service.direct_subscriber`), and the writer only waits for the
end of the session to close it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from starlette.websockets import WebSocket, WebSocketDisconnect

from event_service.counters import Counters
from event_service.direct_subscriber import DirectSubscriber
from event_service.hub import SLOW_CODE, SLOW_REASON, Subscriber, Subscription
from event_service.transport import abort, cap_send_buffer, transport_of, unsent_bytes

__all__ = [
    "READ_HANDLERS",
    "SHUTDOWN_CODE",
    "SHUTDOWN_REASON",
    "SLOW_CLOSE_GRACE_S",
    "Handler",
    "close_slow",
    "drain_messages",
    "serve_with_reader",
    "serve_without_reader",
    "write_events",
]

SHUTDOWN_CODE = 1001
SHUTDOWN_REASON = "server shutting down"
# How long a slow subscriber's close frame may take to get through before the connection is
# dropped with a RST: a client that reads again in time learns why it was closed.
SLOW_CLOSE_GRACE_S = 5.0

Handler = Callable[[WebSocket, Subscription, Counters], Awaitable[None]]


async def serve_without_reader(ws: WebSocket, subscriber: Subscription, counters: Counters) -> None:
    """The bug: write events, never read. Client messages pile up in the kernel."""
    await write_events(ws, subscriber, counters)


async def serve_with_reader(ws: WebSocket, subscriber: Subscription, counters: Counters) -> None:
    """The fix: drain client messages next to the writer; stop writing when reading ends."""
    async with asyncio.TaskGroup() as tasks:
        writer = tasks.create_task(write_events(ws, subscriber, counters), name="ws-writer")
        await drain_messages(ws, counters)
        if not subscriber.is_slow:  # else the writer is closing it, within its grace
            writer.cancel()


READ_HANDLERS: dict[str, Handler] = {
    "missing": serve_without_reader,
    "fixed": serve_with_reader,
}


async def write_events(ws: WebSocket, subscriber: Subscription, counters: Counters) -> None:
    """Send buffered events until the client is gone, the hub stops the session, or the
    subscriber falls behind its budget (then close it as a slow consumer)."""
    transport = transport_of(ws.scope)
    if transport is not None:
        # The kernel may hold half the budget (a quarter, doubled by Linux); the rest is
        # for our queue and the transport's buffer, which fill once the kernel's is full.
        cap_send_buffer(transport, subscriber.budget_bytes // 4)
        subscriber.unsent = lambda: unsent_bytes(transport)
    task = asyncio.current_task()
    assert task is not None
    # The hub marks the subscriber slow from the fan-out path, while this writer may be
    # blocked in send() on a full socket: cancelling is the way to get it out of there.
    subscriber.on_slow(task.cancel)
    try:
        if isinstance(subscriber, DirectSubscriber):
            await _close_when_ended(ws, subscriber)
        else:
            await _send_events(ws, subscriber, counters)
        return
    except asyncio.CancelledError:
        if not subscriber.is_slow or task.uncancel() > 0:
            raise
    await close_slow(ws)


async def _send_events(ws: WebSocket, subscriber: Subscriber, counters: Counters) -> None:
    next_event = subscriber.next
    while True:
        event = await next_event()
        try:
            if event is None:
                await ws.close(SHUTDOWN_CODE, SHUTDOWN_REASON)
                return
            await ws.send_text(event.text)
        except WebSocketDisconnect:
            return
        counters.events_delivered += 1


async def _close_when_ended(ws: WebSocket, subscriber: DirectSubscriber) -> None:
    """The hub writes this subscriber's events itself: close the session once it ends."""
    if await subscriber.ended() == "stopped":
        with contextlib.suppress(WebSocketDisconnect):
            await ws.close(SHUTDOWN_CODE, SHUTDOWN_REASON)


async def close_slow(ws: WebSocket) -> None:
    """Close a slow subscriber with ``SLOW_CODE``; drop it with a RST if that cannot finish.

    The close frame waits behind everything the client has not read yet. If the client has
    not completed the closing handshake within ``SLOW_CLOSE_GRACE_S``, the connection is
    aborted, so that its buffers (ours and the kernel's) are freed at once instead of
    lingering as an orphan.
    """
    transport = transport_of(ws.scope)
    closed = False
    try:
        with contextlib.suppress(TimeoutError, WebSocketDisconnect, RuntimeError, OSError):
            async with asyncio.timeout(SLOW_CLOSE_GRACE_S):
                await ws.close(SLOW_CODE, SLOW_REASON)
                closed = True
    finally:
        if transport is not None:
            if closed:  # the frame is written: give the client the grace to take it
                asyncio.get_running_loop().call_later(SLOW_CLOSE_GRACE_S, _abort_if_open, transport)
            else:  # not even the frame got out, or we are cancelled (shutdown)
                _abort_if_open(transport)


def _abort_if_open(transport: asyncio.Transport) -> None:
    if not _is_gone(transport):
        abort(transport)


def _is_gone(transport: asyncio.Transport) -> bool:
    sock = transport.get_extra_info("socket")
    return sock is None or sock.fileno() < 0


async def drain_messages(ws: WebSocket, counters: Counters) -> None:
    """Read and discard client messages, counting them, until the client disconnects."""
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        data = message.get("bytes")
        counters.client_messages += 1
        if text is not None:
            counters.client_bytes += len(text.encode())
        elif data is not None:
            counters.client_bytes += len(data)
