"""Tests for ping_client.server_stats: the server's figures from its /stats answer."""

import pytest
from websockets.uri import parse_uri

from ping_client.server_stats import server_figures, stats_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ws://event-service-missing:8000/ws", "http://event-service-missing:8000/stats"),
        ("ws://10.0.0.5/ws?events=tick", "http://10.0.0.5:80/stats"),
        ("ws://[fd00::5]:8001/ws", "http://[fd00::5]:8001/stats"),
    ],
)
def test_stats_url_is_next_to_the_websocket_endpoint(url, expected):
    assert stats_url(parse_uri(url)) == expected


def test_server_figures_are_the_queue_figures_of_stats():
    stats = {"recv_q_bytes": 250_000, "recv_q_max_bytes": 2_600, "connections": 100}
    assert server_figures(stats) == {
        "server_recv_q_bytes": 250_000,
        "server_recv_q_max_bytes": 2_600,
    }


def test_server_figures_leave_out_what_stats_lacks_or_gives_as_non_numbers():
    assert server_figures({"recv_q_bytes": 7, "recv_q_max_bytes": None}) == {
        "server_recv_q_bytes": 7
    }
    assert server_figures({"recv_q_bytes": True, "status": "ok"}) == {}
