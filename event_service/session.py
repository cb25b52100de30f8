"""A subscriber's WebSocket session, with the two read handlers the lab compares.

The missing and the fixed handler differ in exactly one thing: whether a reader runs.

- ``serve_without_reader`` (READ_HANDLER=off) only writes. Whatever the client sends stays
  in the kernel's receive buffer (uvicorn stops reading the socket once one message waits
  for the app), and the session learns that the client left only when a send fails.
- ``serve_with_reader`` (READ_HANDLER=on) runs a reader next to the writer. The reader
  drains and discards client messages; when it ends (the client closed or went away) the
  writer is cancelled and the session ends at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from starlette.websockets import WebSocket, WebSocketDisconnect

from event_service.counters import Counters
from event_service.hub import Subscriber

SHUTDOWN_CODE = 1001
SHUTDOWN_REASON = "server shutting down"

Handler = Callable[[WebSocket, Subscriber, Counters], Awaitable[None]]


async def serve_without_reader(ws: WebSocket, subscriber: Subscriber, counters: Counters) -> None:
    """The bug: write events, never read. Client messages pile up in the kernel."""
    await write_events(ws, subscriber, counters)


async def serve_with_reader(ws: WebSocket, subscriber: Subscriber, counters: Counters) -> None:
    """The fix: drain client messages next to the writer; stop writing when reading ends."""
    async with asyncio.TaskGroup() as tasks:
        writer = tasks.create_task(write_events(ws, subscriber, counters), name="ws-writer")
        await drain_messages(ws, counters)
        writer.cancel()


READ_HANDLERS: dict[str, Handler] = {
    "missing": serve_without_reader,
    "fixed": serve_with_reader,
}


async def write_events(ws: WebSocket, subscriber: Subscriber, counters: Counters) -> None:
    """Send buffered events until the client is gone or the hub asks the session to stop."""
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
