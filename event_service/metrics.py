"""Prometheus text format of a ``/stats`` snapshot, named in node_exporter's style.

Kernel figures keep node_exporter's names (``node_sockstat_TCP_mem_bytes``...), the
process ones follow prometheus-client's ``process_*``, and the service's own are prefixed
``event_service_``. A fresh registry per scrape renders exactly one snapshot: no global state.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from event_service.snapshot import ServiceSnapshot
from event_service.sources import READY_STATES

__all__ = ["CONTENT_TYPE", "render_metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_GAUGES = (
    ("event_service_connections", "connections", "WebSocket sessions registered in the hub."),
    ("event_service_sockets", "sockets",
     "Connected TCP sockets the service holds on its port, by the inodes of its fds "
     "(HTTP ones, this scrape's included)."),
    ("event_service_recv_queue_bytes", "recv_q_bytes",
     "Sum of Recv-Q over the service's connected sockets (unread client bytes in the kernel)."),
    ("event_service_recv_queue_max_bytes", "recv_q_max_bytes", "Largest Recv-Q of one socket."),
    ("event_service_recv_queue_p99_bytes", "recv_q_p99_bytes",
     "99th percentile of Recv-Q over the service's connected sockets."),
    ("event_service_send_queue_bytes", "send_q_bytes",
     "Sum of Send-Q over the service's connected sockets."),
    ("event_service_send_queue_max_bytes", "send_q_max_bytes", "Largest Send-Q of one socket."),
    ("event_service_socket_receive_memory_bytes", "skmem_r_bytes",
     "Kernel memory holding received, unread data, summed over the service's sockets "
     "(skmem r, rmem_alloc: truesize, overhead included)."),
    ("event_service_socket_receive_memory_max_bytes", "skmem_r_max_bytes",
     "Largest receive memory of one socket (skmem r)."),
    ("event_service_socket_receive_buffer_bytes", "skmem_rb_bytes",
     "Receive buffer limits summed over the service's sockets (skmem rb, rcvbuf)."),
    ("event_service_socket_receive_buffer_max_bytes", "skmem_rb_max_bytes",
     "Largest receive buffer limit of one socket (skmem rb)."),
    ("event_service_socket_send_memory_bytes", "skmem_w_bytes",
     "Kernel memory of the send queues summed over the service's sockets "
     "(skmem w, wmem_queued: unsent and unacknowledged data)."),
    ("event_service_socket_send_memory_max_bytes", "skmem_w_max_bytes",
     "Largest send queue memory of one socket (skmem w)."),
    ("event_service_sockets_read_seconds", "sockets_read_s",
     "Time this scrape's reading of the service's sockets took (netlink and fds)."),
    ("process_resident_memory_bytes", "rss_bytes", "Resident memory size in bytes."),
    ("process_open_fds", "open_fds", "Number of open file descriptors."),
    ("process_threads", "threads", "Number of OS threads."),
    ("event_service_asyncio_tasks", "asyncio_tasks", "asyncio tasks alive in the service."),
    ("event_service_sessions_max", "max_sessions",
     "Session cap: handshakes past it are refused with 503."),
)  # fmt: skip

_SOCKSTAT = ("inuse", "orphan", "tw", "alloc")
# Host-wide figures: no service labels, as node_exporter exports them.
_HOST_GAUGES = (
    ("node_sockstat_TCP_mem", "kernel_tcp_mem_pages", "Host TCP memory in pages (sockstat)."),
    ("node_sockstat_TCP_mem_bytes", "kernel_tcp_mem_bytes", "Host TCP memory in bytes (sockstat)."),
)

_COUNTERS = (
    ("event_service_connections_opened", "connections_opened", "Sessions opened."),
    ("event_service_connections_closed", "connections_closed", "Sessions closed."),
    ("event_service_events_received", "events_received", "Events received from the source."),
    ("event_service_events_delivered", "events_delivered", "Events sent to subscribers."),
    ("event_service_events_dropped", "events_dropped",
     "Events dropped because a subscriber's queue was full."),
    ("event_service_events_rejected", "events_rejected",
     "Broker messages rejected (invalid or unroutable events), dead-lettered."),
    ("event_service_events_duplicates", "events_duplicates",
     "Broker redeliveries dropped: their event had reached the hub before a reconnect."),
    ("event_service_broker_reconnects", "broker_reconnects",
     "Connections to the broker re-established after a loss."),
    ("event_service_client_messages", "client_messages", "Client messages drained and discarded."),
    ("event_service_client_bytes", "client_bytes", "Bytes of client messages drained."),
    ("event_service_slow_consumers", "slow_consumers",
     "Sessions closed with 4008 for falling behind their budget of unsent bytes."),
    ("event_service_sessions_refused", "sessions_refused",
     "WebSocket handshakes refused (session cap, token or Origin)."),
    ("event_service_publish_refused", "publish_refused",
     "POST /events requests refused by the rate limit."),
    ("event_service_fanout_batches", "fanout_batches",
     "Batches of events the direct fan-out wrote, each in one write per subscriber."),
)  # fmt: skip


class _SnapshotCollector:
    def __init__(self, snapshot: ServiceSnapshot) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot
        # The tables name figures by string: read them from the snapshot's numbers.
        numbers = _numbers(snap)
        labels = ["read_handler", "ws_impl"]
        values = [snap["read_handler"], snap["ws_impl"]]
        for name, key, doc in _GAUGES:
            gauge = GaugeMetricFamily(name, doc, labels=labels)
            gauge.add_metric(values, numbers[key])
            yield gauge
        broker_up = GaugeMetricFamily(
            "event_service_broker_up",
            "1 while the event source can deliver (broker connected, or embedded), else 0.",
            labels=labels,
        )
        broker_up.add_metric(values, 1 if snap["broker"] in READY_STATES else 0)
        yield broker_up
        for name, key, doc in _HOST_GAUGES:
            gauge = GaugeMetricFamily(name, doc)
            gauge.add_metric([], numbers[key])
            yield gauge
        kernel_tcp = _numbers(snap["kernel_tcp"])
        for key in _SOCKSTAT:
            gauge = GaugeMetricFamily(f"node_sockstat_TCP_{key}", f"TCP sockets: {key} (sockstat).")
            gauge.add_metric([], kernel_tcp.get(key, 0))
            yield gauge
        states = GaugeMetricFamily(
            "event_service_socket_states", "Service sockets by TCP state.", labels=["state"]
        )
        for state, count in sorted(snap["socket_states"].items()):
            states.add_metric([state], count)
        yield states
        for name, key, doc in _COUNTERS:
            counter = CounterMetricFamily(name, doc, labels=labels)
            counter.add_metric(values, numbers[key])
            yield counter


def _numbers(figures: Mapping[str, object]) -> dict[str, float]:
    """The numeric figures of a snapshot (or of a part of it), by name."""
    return {
        key: value
        for key, value in figures.items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }


def render_metrics(snapshot: ServiceSnapshot) -> bytes:
    """Render one snapshot in the Prometheus text exposition format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_SnapshotCollector(snapshot))
    return generate_latest(registry)
