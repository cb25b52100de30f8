"""Tests for the direct fan-out's hub side: frames encoded once, batched writes, the backlog
while the transport is paused, its budget, and the ends of a session (stopped, lost)."""

import asyncio
from collections.abc import Callable, Sequence

import pytest
from websockets.frames import Opcode
from websockets.protocol import OPEN, Protocol, Side
from websockets.server import ServerProtocol

from event_service.counters import Counters
from event_service.direct_subscriber import DirectSubscriber, Write, text_frame
from event_service.events import Event, make_event
from event_service.hub import Hub


class FakeSink:
    """A connection that records each write, and can be paused or closed."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.state = Write.WRITTEN
        self.callback: Callable[[], object] | None = None

    def write_frames(self, frames: bytes, events: Sequence[Event]) -> Write:
        if self.state is Write.WRITTEN:
            self.writes.append(frames)
        return self.state

    def call_when_writable(self, callback: Callable[[], object]) -> None:
        self.callback = callback

    def resume(self, state: Write = Write.WRITTEN) -> None:
        """The transport drained (or was lost): what uvicorn's protocol reports to the hub."""
        self.state = state
        callback, self.callback = self.callback, None
        assert callback is not None, "nobody waits for the transport"
        callback()


def frames_of(*events: Event) -> bytes:
    return b"".join(text_frame(event.text) for event in events)


def parsed(data: bytes) -> list[str]:
    """The texts of the frames in ``data``, parsed by websockets as a client would."""
    client = Protocol(Side.CLIENT, max_size=None)
    client.receive_data(data)
    assert client.parser_exc is None
    return [frame.data.decode() for frame in client.events_received()]


def events(n: int, type_: str = "tick") -> list[Event]:
    return [make_event(type_, i) for i in range(n)]


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_text_frame_is_the_frame_websockets_would_send(size):
    """The frame encoded once is byte for byte what the connection's own protocol sends."""
    text = "é" * (size // 2) + "x" * (size % 2)
    server = ServerProtocol()
    server.state = OPEN
    server.send_text(text.encode())
    assert text_frame(text) == b"".join(server.data_to_send())


async def test_events_of_one_iteration_go_out_in_one_write_per_subscriber():
    counters = Counters()
    hub = Hub(counters, queue_size=16)
    sinks = [FakeSink() for _ in range(3)]
    for sink in sinks:
        hub.subscribe(None, sink)
    batch = events(3)
    for event in batch:
        hub.publish(event)
    assert all(sink.writes == [] for sink in sinks)  # not before the iteration ends
    await asyncio.sleep(0)
    assert all(sink.writes == [frames_of(*batch)] for sink in sinks)
    assert counters.events_delivered == 9 and counters.events_received == 3
    assert counters.fanout_batches == 1


async def test_every_subscriber_gets_the_same_bytes_object():
    """Encoded once: the subscribers of a batch share its frames, not copies."""
    hub = Hub(Counters(), queue_size=16)
    sinks = [FakeSink() for _ in range(3)]
    for sink in sinks:
        hub.subscribe(None, sink)
    hub.publish(make_event("tick", 1))
    hub.flush()
    assert sinks[0].writes[0] is sinks[1].writes[0] is sinks[2].writes[0]


async def test_subscribers_get_only_their_types_in_publish_order():
    hub = Hub(Counters(), queue_size=16)
    orders, ticks, both = FakeSink(), FakeSink(), FakeSink()
    hub.subscribe(frozenset({"order"}), orders)
    hub.subscribe(frozenset({"tick"}), ticks)
    hub.subscribe(frozenset({"order", "tick"}), both)
    published = [make_event(t, n) for n, t in enumerate(["order", "tick", "tick", "order"])]
    for event in published:
        hub.publish(event)
    hub.flush()
    assert orders.writes == [frames_of(published[0], published[3])]
    assert ticks.writes == [frames_of(published[1], published[2])]
    assert both.writes == [frames_of(*published)]


async def test_a_subscriber_with_nothing_due_gets_no_write():
    hub = Hub(Counters(), queue_size=16)
    sink = FakeSink()
    hub.subscribe(frozenset({"order"}), sink)
    hub.publish(make_event("tick", 1))
    hub.flush()
    assert sink.writes == []


async def test_an_event_after_a_quiet_spell_goes_out_at_once():
    """Events far apart cost no latency: the window only separates batches."""
    hub = Hub(Counters(), queue_size=16, window_s=0.05)
    sink = FakeSink()
    hub.subscribe(None, sink)
    event = make_event("tick", 1)
    hub.publish(event)
    await asyncio.sleep(0)
    assert sink.writes == [frames_of(event)]


async def test_events_within_the_window_after_a_batch_go_out_together():
    hub = Hub(Counters(), queue_size=16, window_s=0.05)
    sink = FakeSink()
    hub.subscribe(None, sink)
    first, second, third = events(3)
    hub.publish(first)
    await asyncio.sleep(0)
    hub.publish(second)
    await asyncio.sleep(0.01)
    hub.publish(third)
    await asyncio.sleep(0.01)
    assert sink.writes == [frames_of(first)]  # the window after the first batch is not over
    await asyncio.sleep(0.1)
    assert sink.writes == [frames_of(first), frames_of(second, third)]


async def test_pending_events_are_bounded_by_the_queue_size():
    hub = Hub(Counters(), queue_size=4, window_s=0.05)
    sink = FakeSink()
    hub.subscribe(None, sink)
    batch = events(4)
    for event in batch:
        hub.publish(event)
    assert sink.writes == [frames_of(*batch)]  # the fourth filled the batch: written at once


async def test_without_direct_subscribers_nothing_is_pending():
    hub = Hub(Counters(), queue_size=4)
    hub.subscribe(None)
    hub.publish(make_event("tick", 1))
    assert hub._pending == [] and hub._flush is None


async def test_a_paused_transport_keeps_batches_and_writes_them_in_order_when_it_drains():
    counters = Counters()
    hub = Hub(counters, queue_size=16)
    sink = FakeSink()
    subscriber = hub.subscribe(None, sink)
    first, second, third = events(3)
    hub.publish(first)
    hub.flush()
    sink.state = Write.PAUSED
    hub.publish(second)
    hub.flush()
    hub.publish(third)
    hub.flush()
    assert sink.writes == [frames_of(first)] and len(subscriber) == 2
    assert counters.events_delivered == 1  # delivered means written to the transport
    sink.resume()
    assert sink.writes == [frames_of(first), frames_of(second), frames_of(third)]
    assert len(subscriber) == 0 and counters.events_delivered == 3
    fourth = make_event("tick", 4)
    hub.publish(fourth)
    hub.flush()
    assert sink.writes[-1] == frames_of(fourth)  # written straight again


async def test_a_transport_that_pauses_again_while_draining_keeps_the_rest():
    hub = Hub(Counters(), queue_size=16)
    sink = FakeSink()
    subscriber = hub.subscribe(None, sink)
    sink.state = Write.PAUSED
    for event in events(3):
        hub.publish(event)
        hub.flush()
    calls = []

    def write_one_then_pause(frames: bytes, batch: Sequence[Event]) -> Write:
        calls.append(frames)
        sink.write_frames = FakeSink.write_frames.__get__(sink)  # type: ignore[method-assign]
        sink.state = Write.PAUSED
        return Write.WRITTEN

    sink.write_frames = write_one_then_pause  # type: ignore[method-assign]
    sink.resume()
    assert len(calls) == 1 and len(subscriber) == 2
    assert sink.callback is not None  # waiting for the transport again
    sink.resume()
    assert len(subscriber) == 0 and len(sink.writes) == 2


async def test_the_budget_counts_the_backlog_and_the_unsent_bytes():
    counters = Counters()
    hub = Hub(counters, queue_size=100, budget_bytes=1000)
    sink = FakeSink()
    subscriber = hub.subscribe(None, sink)
    slow_calls = []
    subscriber.on_slow(lambda: slow_calls.append(True))
    unsent = [0]
    subscriber.unsent = lambda: unsent[0]
    sink.state = Write.PAUSED
    event = make_event("tick", "x" * 200)  # a frame of about 270 bytes
    for _ in range(3):
        hub.publish(event)
        hub.flush()
    assert not subscriber.is_slow and len(subscriber) == 3
    unsent[0] = 300  # the transport and the kernel hold 300 more: a fourth would pass 1000
    hub.publish(event)
    hub.flush()
    assert subscriber.is_slow and slow_calls == [True]
    assert len(subscriber) == 0  # its session is closing: nothing more is kept for it
    hub.publish(event)
    hub.flush()
    assert (counters.slow_consumers, counters.events_dropped) == (1, 2)
    assert slow_calls == [True]


async def test_the_budget_is_not_checked_while_the_transport_takes_writes():
    hub = Hub(Counters(), queue_size=2, budget_bytes=1000)
    sink = FakeSink()
    subscriber = hub.subscribe(None, sink)
    calls = []
    subscriber.unsent = lambda: calls.append(1) or 10**9
    for n in range(50):
        hub.publish(make_event("tick", n))
        hub.flush()
    assert calls == [] and not subscriber.is_slow and len(sink.writes) == 50


async def test_a_backlog_of_queue_size_batches_marks_the_subscriber_slow():
    counters = Counters()
    hub = Hub(counters, queue_size=2)
    sink = FakeSink()
    subscriber = hub.subscribe(None, sink)
    sink.state = Write.PAUSED
    for event in events(3):
        hub.publish(event)
        hub.flush()
    assert subscriber.is_slow and counters.slow_consumers == 1 and counters.events_dropped == 1


async def test_a_lost_connection_ends_the_session_at_the_next_write():
    counters = Counters()
    hub = Hub(counters, queue_size=4)
    sink = FakeSink()
    subscriber = hub.subscribe(None, sink)
    assert isinstance(subscriber, DirectSubscriber)
    ended = asyncio.create_task(subscriber.ended())
    await asyncio.sleep(0)
    assert not ended.done()  # a lost connection is noticed only by writing, as over ASGI
    sink.state = Write.CLOSED
    hub.publish(make_event("tick", 1))
    hub.flush()
    assert await asyncio.wait_for(ended, 1) == "lost"
    assert counters.events_dropped == 0 and counters.slow_consumers == 0


async def test_a_connection_lost_while_a_backlog_waits_ends_the_session_at_once():
    hub = Hub(Counters(), queue_size=4)
    sink = FakeSink()
    subscriber = hub.subscribe(None, sink)
    assert isinstance(subscriber, DirectSubscriber)
    sink.state = Write.PAUSED
    hub.publish(make_event("tick", 1))
    hub.flush()
    sink.resume(Write.CLOSED)
    assert await asyncio.wait_for(subscriber.ended(), 1) == "lost"
    assert len(subscriber) == 0


async def test_deliveries_wake_nobody():
    """No task step per delivery: the writer parked in ended() stays parked."""
    hub = Hub(Counters(), queue_size=4)
    subscriber = hub.subscribe(None, FakeSink())
    assert isinstance(subscriber, DirectSubscriber)
    ended = asyncio.create_task(subscriber.ended())
    await asyncio.sleep(0)
    waiter = subscriber._waiter
    assert waiter is not None
    for n in range(10):
        hub.publish(make_event("tick", n))
        await asyncio.sleep(0)
    assert subscriber._waiter is waiter and not waiter.done() and not ended.done()
    ended.cancel()


async def test_stop_ends_an_idle_session_at_once():
    hub = Hub(Counters(), queue_size=4)
    subscriber = hub.subscribe(None, FakeSink())
    assert isinstance(subscriber, DirectSubscriber)
    ended = asyncio.create_task(subscriber.ended())
    await asyncio.sleep(0)
    hub.stop_all()
    assert await asyncio.wait_for(ended, 1) == "stopped"


async def test_stop_waits_for_the_backlog_and_takes_the_oldest_place_when_full():
    counters = Counters()
    hub = Hub(counters, queue_size=2)
    sink = FakeSink()
    subscriber = hub.subscribe(None, sink)
    assert isinstance(subscriber, DirectSubscriber)
    sink.state = Write.PAUSED
    first, second = events(2)
    for event in (first, second):
        hub.publish(event)
        hub.flush()
    hub.stop_all()
    ended = asyncio.create_task(subscriber.ended())
    await asyncio.sleep(0)
    assert not ended.done() and len(subscriber) == 2  # still bounded: [second, stop mark]
    sink.resume()
    assert await asyncio.wait_for(ended, 1) == "stopped"
    assert sink.writes == [frames_of(second)]


async def test_stop_all_writes_what_was_published_before_it():
    hub = Hub(Counters(), queue_size=4, window_s=0.05)
    sink = FakeSink()
    subscriber = hub.subscribe(None, sink)
    assert isinstance(subscriber, DirectSubscriber)
    event = make_event("tick", 1)
    hub.publish(event)
    hub.stop_all()
    assert sink.writes == [frames_of(event)]
    assert await asyncio.wait_for(subscriber.ended(), 1) == "stopped"
    hub.publish(make_event("tick", 2))
    hub.flush()
    assert len(sink.writes) == 1  # nothing after the stop


async def test_a_late_direct_subscriber_is_stopped_at_once():
    hub = Hub(Counters(), queue_size=4)
    hub.stop_all()
    late = hub.subscribe(None, FakeSink())
    assert isinstance(late, DirectSubscriber)
    assert await asyncio.wait_for(late.ended(), 1) == "stopped"


async def test_unsubscribed_direct_subscribers_get_nothing_and_count_once():
    counters = Counters()
    hub = Hub(counters, queue_size=4)
    sink = FakeSink()
    subscriber = hub.subscribe(None, sink)
    hub.unsubscribe(subscriber)
    hub.unsubscribe(subscriber)
    hub.publish(make_event("tick", 1))
    hub.flush()
    assert sink.writes == [] and len(hub) == 0
    assert (counters.connections_opened, counters.connections_closed) == (1, 1)


async def test_an_unsubscribed_backlog_is_dropped_and_never_written():
    hub = Hub(Counters(), queue_size=4)
    sink = FakeSink()
    subscriber = hub.subscribe(None, sink)
    sink.state = Write.PAUSED
    hub.publish(make_event("tick", 1))
    hub.flush()
    hub.unsubscribe(subscriber)
    assert len(subscriber) == 0
    sink.resume()  # the transport drains after the session ended
    assert sink.writes == []


async def test_a_second_waiter_is_refused():
    subscriber = DirectSubscriber(None, FakeSink(), Counters(), queue_size=2)
    first = asyncio.create_task(subscriber.ended())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="already has a waiter"):
        await subscriber.ended()
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert subscriber._waiter is None


def test_frames_parse_back_to_the_texts():
    batch = [make_event("t", "x" * size) for size in (0, 100, 70_000)]
    data = frames_of(*batch)
    assert parsed(data) == [event.text for event in batch]
    assert Opcode.TEXT == data[0] & 0x0F
