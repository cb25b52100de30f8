"""A TCP relay of the tests' own, to cut a service off from the shared broker without
touching the broker: ``cut()`` resets every relayed connection and refuses new ones (accepted
and reset at once) until ``restore()``. ``mute_clients()`` first discards what the clients
send (acks lost on the way, while deliveries still arrive), so that a cut leaves deliveries
unacked that the broker will redeliver. Loopback only, port chosen by the kernel.

:class:`Relay` is asyncio; :class:`RelayThread` runs one on an event loop of its own, so that
tests that block their own loop (the launcher, sync HTTP calls) never stall the relay.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import socket
import struct
import threading
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any, TypeVar

T = TypeVar("T")

CHUNK_BYTES = 64 * 1024


class Relay:
    """Relays ``127.0.0.1:<port>`` to ``target``, both ways, until cut."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._is_open = True
        self._is_muted = False
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self.accepted = 0
        self.refused = 0

    @property
    def port(self) -> int:
        """The port the relay listens on."""
        assert self._server is not None, "start() first"
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def connections(self) -> int:
        """Relayed connections open now."""
        return len(self._pairs)

    async def start(self) -> Relay:
        """Listen on a free loopback port."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    def mute_clients(self) -> None:
        """Discard the bytes clients send from now on (until the next cut)."""
        self._is_muted = True

    def cut(self) -> None:
        """Reset every relayed connection, on both sides, and refuse new ones."""
        self._is_open = False
        self._is_muted = False
        for client, upstream in list(self._pairs):
            _reset(client)
            _reset(upstream)

    def restore(self) -> None:
        """Relay new connections again."""
        self._is_open = True

    async def close(self) -> None:
        """Stop listening, cut what is left and wait for every handler to end."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        self.cut()
        if self._handlers:
            await asyncio.wait(self._handlers)

    async def __aenter__(self) -> Relay:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            if not self._is_open:
                self.refused += 1
                _reset(writer)
                return
            try:
                up_reader, up_writer = await asyncio.open_connection(*self._target)
            except OSError:
                _reset(writer)
                return
            self.accepted += 1
            pair = (writer, up_writer)
            self._pairs.add(pair)
            try:
                async with asyncio.TaskGroup() as group:
                    group.create_task(_pipe(reader, up_writer, lambda: self._is_muted))
                    group.create_task(_pipe(up_reader, writer, lambda: False))
            finally:
                self._pairs.discard(pair)
                _reset(writer)
                _reset(up_writer)
        finally:
            self._handlers.discard(task)


async def _pipe(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, is_muted: Callable[[], bool]
) -> None:
    """Copy until EOF or a reset; then reset the other side too (a cut is abrupt both ways)."""
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(CHUNK_BYTES):
            if is_muted():
                continue
            writer.write(data)
            await writer.drain()
    _reset(writer)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST (SO_LINGER 0), as a cable pulled between the two would look."""
    transport = writer.transport
    if transport.is_closing():
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class RelayThread:
    """A :class:`Relay` on its own event loop in a daemon thread; a sync context manager."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="relay", daemon=True)
        self._relay = Relay(target_host, target_port)

    @property
    def port(self) -> int:
        """The port the relay listens on."""
        return self._relay.port

    @property
    def connections(self) -> int:
        """Relayed connections open now."""
        return self._call(self._count())

    @property
    def refused(self) -> int:
        """Connections refused while cut."""
        return self._relay.refused

    def mute_clients(self) -> None:
        """Discard what clients send from now on, before returning."""
        self._call(self._do(self._relay.mute_clients))

    def cut(self) -> None:
        """Reset every relayed connection and refuse new ones, before returning."""
        self._call(self._do(self._relay.cut))

    def restore(self) -> None:
        """Relay new connections again."""
        self._call(self._do(self._relay.restore))

    def __enter__(self) -> RelayThread:
        self._thread.start()
        self._call(self._relay.start())
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self._call(self._relay.close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
            self._loop.close()

    def _call(self, coro: Coroutine[Any, Any, T], timeout_s: float = 10.0) -> T:
        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout_s)

    async def _count(self) -> int:
        return self._relay.connections

    @staticmethod
    async def _do(action: Any) -> None:
        action()
