"""Tests for event_service.sources.amqp: the topology's names and arguments, the backoff."""

from __future__ import annotations

import itertools

from event_service.sources.amqp import DEAD_LETTER_MAX, INSTANCE_QUEUE_MAX, Topology, backoff_delays


def test_instance_queue_is_named_after_exchange_host_pid_and_token() -> None:
    topology = Topology.for_instance(
        "events", hostname="web-1.example", pid=42, token="beef", queue_expires_s=300
    )
    assert topology.queue == "events.web-1-example.42.beef"
    assert (topology.dead_letter_exchange, topology.dead_letter_queue) == (
        "events.dead",
        "events.dead",
    )


def test_instance_queue_expires_dead_letters_and_is_bounded() -> None:
    topology = Topology.for_instance("ex", hostname="h", pid=1, token="t", queue_expires_s=90)
    assert topology.queue_arguments() == {
        "x-expires": 90_000,
        "x-dead-letter-exchange": "ex.dead",
        "x-max-length": INSTANCE_QUEUE_MAX,
        "x-queue-type": "classic",
    }
    assert Topology.dead_letter_arguments()["x-max-length"] == DEAD_LETTER_MAX


def test_long_host_names_are_cut_so_the_queue_name_stays_short() -> None:
    topology = Topology.for_instance("e", hostname="h" * 300, pid=1, token="t", queue_expires_s=9)
    assert len(topology.queue.encode()) < 255  # AMQP's short-string limit


def test_backoff_doubles_up_to_its_cap() -> None:
    delays = backoff_delays(0.25, 2.0, rand=lambda: 0.0)
    assert list(itertools.islice(delays, 6)) == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0]


def test_backoff_jitter_only_shortens_the_delay() -> None:
    delays = backoff_delays(1.0, 2.0, jitter=0.2, rand=lambda: 1.0)
    assert list(itertools.islice(delays, 3)) == [0.8, 1.6, 1.6]
