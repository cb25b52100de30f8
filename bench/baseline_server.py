"""The baseline: a minimal raw ``websockets`` broadcast server on uvloop, run as a child.

``python -m bench.baseline_server --rate 30`` publishes the same events as the event service's
embedded source, on the same fixed schedule (``event_service.sources.embedded.tick_forever``),
and hands each event to :func:`websockets.asyncio.server.broadcast`: one encode, then one
frame write per open connection, synchronously, no task per subscriber. Each session reads
and discards what its client sends, like the service's fixed read handler.

It serves on a listening socket it inherits (``--listen-fd``, as the service's ``LISTEN_FD``;
the benchmarks bind it with :func:`leaklab.children.bind_listener`) or binds ``--host`` and
``--port`` itself and prints ``listening port=N``. It answers ``GET /stats`` on the same
port with its counters in the service's names (``events_received``, ``events_delivered``,
``connections``, ``broker``), so the benchmarks measure both servers the same way. SIGTERM
closes every connection with 1001 and exits.

With ``--amqp-url`` it relays the RabbitMQ ``events`` fanout exchange instead (one exclusive
queue, like the service): the raw baseline of the latency benchmark. Its ``broker`` is
``connecting`` until its queue is bound, then ``up`` (``embedded`` when it publishes itself).
"""

from __future__ import annotations

import argparse
import asyncio
import http
import json
import signal
import socket
import sys
from typing import Any

import uvloop
from aio_pika.abc import AbstractIncomingMessage
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.http11 import Request, Response
from websockets.protocol import OPEN

from event_service.sources.embedded import tick_forever
from event_service.sources.rabbitmq import connect_with_retry, declare_exchange


class Broadcaster:
    """The connection registry, the publish schedule and the counters."""

    def __init__(self, rate_per_s: float, relays: bool = False) -> None:
        self.rate_per_s = rate_per_s
        # The service's names of its source's states: the bench waits for a ready one.
        self.broker = "connecting" if relays else "embedded"
        self.connections: set[ServerConnection] = set()
        self.events_received = 0
        self.events_delivered = 0

    async def session(self, connection: ServerConnection) -> None:
        """Register the connection and drain its messages until it closes."""
        self.connections.add(connection)
        try:
            async for _ in connection:
                pass
        finally:
            self.connections.discard(connection)

    def stats(self, connection: ServerConnection, request: Request) -> Response | None:
        """``GET /stats`` answers with the counters; any other path goes on to the handshake."""
        if request.path != "/stats":
            return None
        body = json.dumps(
            {
                "connections": len(self.connections),
                "events_received": self.events_received,
                "events_delivered": self.events_delivered,
                "broker": self.broker,
            }
        )
        response = connection.respond(http.HTTPStatus.OK, body)
        response.headers["Content-Type"] = "application/json"
        return response

    async def consume_forever(self, amqp_url: str) -> None:
        """Broadcast every message of the ``events`` fanout exchange, as the service would."""
        connection = await connect_with_retry(amqp_url)
        async with connection:
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=64)
            exchange = await declare_exchange(channel)
            queue = await channel.declare_queue(exclusive=True)
            await queue.bind(exchange)
            await queue.consume(self._on_message, no_ack=True)
            self.broker = "up"
            await asyncio.Event().wait()

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        self.broadcast(message.body.decode())

    def broadcast(self, text: str) -> None:
        """Send one event to every open connection and count it."""
        # broadcast() skips connections that are not open; count the ones it wrote to.
        open_now = [c for c in self.connections if c.protocol.state is OPEN]
        broadcast(open_now, text)
        self.events_received += 1
        self.events_delivered += len(open_now)

    async def publish_forever(self) -> None:
        """Publish the service's embedded ``tick`` events, on the same fixed schedule."""
        await tick_forever(self.rate_per_s, lambda event: self.broadcast(event.text))


async def serve_until_stopped(
    where: tuple[str, int] | int, rate_per_s: float, amqp_url: str | None
) -> None:
    """Serve on ``(host, port)`` or an inherited listening fd, and publish (or relay RabbitMQ
    events) until SIGTERM or SIGINT."""
    broadcaster = Broadcaster(rate_per_s, relays=bool(amqp_url))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if isinstance(where, int):
        bind: dict[str, Any] = {"sock": socket.socket(fileno=where)}
    else:
        bind = {"host": where[0], "port": where[1]}
    async with serve(
        broadcaster.session,
        process_request=broadcaster.stats,
        compression=None,
        ping_interval=None,
        backlog=4096,  # asyncio listens again on an inherited socket, with this backlog
        **bind,
    ) as server:
        if not isinstance(where, int):
            bound_port = next(iter(server.sockets)).getsockname()[1]
            print(f"listening port={bound_port}", flush=True)
        async with asyncio.TaskGroup() as tasks:
            source = (
                broadcaster.consume_forever(amqp_url) if amqp_url else broadcaster.publish_forever()
            )
            publisher = tasks.create_task(source, name="publisher")
            await stop.wait()
            publisher.cancel()
        server.close()
        await server.wait_closed()


def main(argv: list[str] | None = None) -> int:
    """Parse options and serve."""
    parser = argparse.ArgumentParser(prog="python -m bench.baseline_server", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--listen-fd", type=int, help="serve on this inherited listening socket")
    parser.add_argument("--rate", type=float, default=30.0, help="events per second (0: none)")
    parser.add_argument("--amqp-url", help="relay the RabbitMQ 'events' exchange instead")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    where = args.listen_fd if args.listen_fd is not None else (args.host, args.port)
    uvloop.run(serve_until_stopped(where, args.rate, args.amqp_url))
    return 0


if __name__ == "__main__":
    sys.exit(main())
