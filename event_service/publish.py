"""``python -m event_service.publish``: publish events to RabbitMQ with publisher confirms.

Publishes ``--count`` events of ``--type`` at ``--rate`` per second to the ``events`` fanout
exchange (``--exchange``, default ``$AMQP_EXCHANGE`` or ``events``), so that every running
event service receives them. ``--count 0`` publishes until
interrupted (what the compose file's publisher does).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from contextlib import aclosing

import aio_pika

from event_service.errors import InvalidEvent
from event_service.events import check_type, make_event
from event_service.sources.rabbitmq import EXCHANGE, connect_with_retry, declare_exchange
from sockscope.schedule import every

logger = logging.getLogger("event_service.publish")
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Options of the publisher; the broker URL defaults to ``AMQP_URL``."""
    parser = argparse.ArgumentParser(prog="python -m event_service.publish", description=__doc__)
    parser.add_argument(
        "--url",
        default=os.environ.get("AMQP_URL") or "amqp://guest:guest@127.0.0.1:5672/",
        help="broker URL (default: $AMQP_URL or the local broker)",
    )
    parser.add_argument(
        "--exchange",
        default=os.environ.get("AMQP_EXCHANGE") or EXCHANGE,
        help=f"fanout exchange (default: $AMQP_EXCHANGE or {EXCHANGE})",
    )
    parser.add_argument("--type", default="tick", dest="type_", help="event type (default: tick)")
    parser.add_argument("--rate", type=float, default=1.0, help="events per second (default: 1)")
    parser.add_argument(
        "--count", type=int, default=10, help="events to publish, 0 = until stopped"
    )
    parser.add_argument("--size", type=int, default=0, help="bytes of padding in the payload")
    args = parser.parse_args(argv)
    try:
        check_type(args.type_)
    except InvalidEvent as exc:
        parser.error(f"--type: {exc}")
    if not 0 < args.rate <= 100_000:
        parser.error("--rate must be > 0 and at most 100000")
    if args.count < 0:
        parser.error("--count must be >= 0")
    if not 0 <= args.size <= 1 << 19:
        parser.error("--size must be from 0 to 524288")
    return args  # fmt: skip


async def publish(
    url: str, type_: str, *, rate: float, count: int, size: int, exchange_name: str = EXCHANGE
) -> int:
    """Publish events on a fixed schedule, each confirmed by the broker; return how many."""
    connection = await connect_with_retry(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await declare_exchange(channel, exchange_name)
        published = 0
        # The first at once; a confirm that came late is caught up, so the rate holds.
        async with aclosing(every(1.0 / rate, first_at_once=True, missed="catch-up")) as ticks:
            async for seq in ticks:
                event = make_event(type_, {"seq": seq, "pad": "x" * size})
                await exchange.publish(
                    aio_pika.Message(event.text.encode(), content_type="application/json"),
                    routing_key="",
                )
                published = seq
                if published % max(1, int(rate * 10)) == 0:
                    logger.info("published count=%d type=%s", published, type_)
                if published == count:
                    break
    return published


def main(argv: list[str] | None = None) -> None:
    """Run the publisher until ``--count`` events are confirmed or it is stopped by a signal."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(publish_until_signal(args))
    except KeyboardInterrupt:  # Ctrl-C before the signal handlers were installed
        logger.info("stopped signal=SIGINT")


async def publish_until_signal(args: argparse.Namespace) -> None:
    """Publish as asked; SIGINT (Ctrl-C) and SIGTERM (``docker stop``) stop it cleanly.

    The log names the signal that stopped it.
    """
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    received: list[str] = []

    def stop(signum: signal.Signals) -> None:
        received.append(signum.name)
        task.cancel()

    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stop, signum)
    try:
        published = await publish(
            args.url,
            args.type_,
            rate=args.rate,
            count=args.count,
            size=args.size,
            exchange_name=args.exchange,
        )
    except asyncio.CancelledError:
        if not received:
            raise
        logger.info("stopped signal=%s", received[0])
        return
    finally:
        for signum in STOP_SIGNALS:
            loop.remove_signal_handler(signum)
    logger.info("done published=%d", published)


if __name__ == "__main__":
    main()
