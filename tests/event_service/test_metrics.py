"""Tests for event_service.metrics: one literal snapshot rendered as Prometheus text."""

from prometheus_client.parser import text_string_to_metric_families

from event_service.counters import Counters
from event_service.metrics import render_metrics

LABELS = 'read_handler="missing",ws_impl="websockets-sansio"'
SNAPSHOT = {
    "read_handler": "missing",
    "ws_impl": "websockets-sansio",
    "source": "embedded",
    "fanout": "direct",
    "time": 1700000000.0,
    "port": 8000,
    "connections": 3,
    "sockets": 3,
    "socket_states": {"ESTABLISHED": 2, "CLOSE_WAIT": 1},
    "recv_q_bytes": 136292,
    "recv_q_max_bytes": 128000,
    "recv_q_p99_bytes": 128000,
    "send_q_bytes": 512,
    "send_q_max_bytes": 512,
    "skmem_r_bytes": 270_000,
    "skmem_r_max_bytes": 260_000,
    "skmem_rb_bytes": 3 * 131072,
    "skmem_rb_max_bytes": 131072,
    "skmem_w_bytes": 4608,
    "skmem_w_max_bytes": 4608,
    "sockets_read_s": 0.0012,
    "kernel_tcp_mem_pages": 87,
    "kernel_tcp_mem_bytes": 87 * 4096,
    "kernel_tcp": {"inuse": 11, "orphan": 0, "tw": 4, "alloc": 14},
    "rss_bytes": 50_000_000,
    "open_fds": 20,
    "threads": 2,
    "asyncio_tasks": 9,
    "max_sessions": 819,
    "broker": "embedded",
    **Counters(connections_opened=5, connections_closed=2, events_dropped=7).as_dict(),
}


def test_render_labels_service_gauges_but_not_host_wide_ones():
    text = render_metrics(SNAPSHOT).decode()
    assert "node_sockstat_TCP_mem_bytes 356352.0" in text  # host-wide: no service labels
    assert f"event_service_recv_queue_bytes{{{LABELS}}} 136292.0" in text
    assert "node_sockstat_TCP_tw 4.0" in text
    assert 'event_service_socket_states{state="CLOSE_WAIT"} 1.0' in text


def test_counters_get_the_total_suffix():
    text = render_metrics(SNAPSHOT).decode()
    assert f"event_service_connections_opened_total{{{LABELS}}} 5.0" in text
    assert f"event_service_events_dropped_total{{{LABELS}}} 7.0" in text


def test_rendered_text_parses_as_prometheus_exposition():
    families = {
        f.name: f for f in text_string_to_metric_families(render_metrics(SNAPSHOT).decode())
    }
    assert families["event_service_connections_closed"].type == "counter"
    [sample] = families["event_service_connections_closed"].samples
    assert (sample.name, sample.value) == ("event_service_connections_closed_total", 2.0)
    assert families["node_sockstat_TCP_mem_bytes"].samples[0].value == 87 * 4096


def test_percentile_and_largest_queues_are_exported_too():
    """/metrics carries Recv-Q p99 and the largest Send-Q, as /stats does."""
    snapshot = {**SNAPSHOT, "recv_q_p99_bytes": 120_001, "send_q_max_bytes": 300}
    families = {
        f.name: f for f in text_string_to_metric_families(render_metrics(snapshot).decode())
    }
    assert families["event_service_recv_queue_p99_bytes"].samples[0].value == 120_001
    assert families["event_service_send_queue_max_bytes"].samples[0].value == 300


def test_broker_state_is_a_gauge_and_reconnects_a_counter():
    """event_service_broker_up is 1 while events can flow (up, embedded), 0 otherwise."""
    for broker, up in (("up", 1.0), ("embedded", 1.0), ("down", 0.0), ("connecting", 0.0)):
        snapshot = {**SNAPSHOT, "broker": broker, "broker_reconnects": 3}
        text = render_metrics(snapshot).decode()
        assert f"event_service_broker_up{{{LABELS}}} {up}" in text, broker
        assert f"event_service_broker_reconnects_total{{{LABELS}}} 3.0" in text


def test_socket_kernel_memory_is_exported_as_sum_and_largest():
    """skmem r, rb and w of /stats become receive memory, receive buffer and send memory."""
    families = {
        f.name: f for f in text_string_to_metric_families(render_metrics(SNAPSHOT).decode())
    }
    expected = {
        "event_service_socket_receive_memory_bytes": 270_000,
        "event_service_socket_receive_memory_max_bytes": 260_000,
        "event_service_socket_receive_buffer_bytes": 3 * 131072,
        "event_service_socket_receive_buffer_max_bytes": 131072,
        "event_service_socket_send_memory_bytes": 4608,
        "event_service_socket_send_memory_max_bytes": 4608,
        "event_service_sockets_read_seconds": 0.0012,
    }
    for name, value in expected.items():
        [sample] = families[name].samples
        assert (sample.value, sample.labels["read_handler"]) == (value, "missing"), name
