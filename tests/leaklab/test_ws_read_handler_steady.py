"""Tests of the large cells' rule: judged on the steady part after the ramp, from literal
samples of 1,000 clients that connect over 10 s and send 1 KiB a second each."""

from __future__ import annotations

import pytest

from leaklab.report import table_rows
from leaklab.stories.ws_read_handler import STORY
from leaklab.stories.ws_read_handler.matrix import KEEPALIVE_OFF, Cell, Large
from leaklab.stories.ws_read_handler.steady import (
    MIN_STEADY_SAMPLES,
    judge_large_cell,
    large_figures,
    steady_part,
)

CLIENTS, RAMP_PER_S, SIZE, FRAME = 1_000, 100, 1024, 1032
RAMP_S = CLIENTS // RAMP_PER_S


def large_samples(kept_share, *, seconds=40, ramp_per_s=RAMP_PER_S, reach=CLIENTS, failed=0):
    """One sample a second; ``kept_share`` of each second's frames stays in Recv-Q (the rest
    is read), plus a second's frames in flight. The ramp connects ``reach`` clients, then
    ``failed`` more fail to connect."""
    samples, sent, kept = [], 0, 0.0
    for t in range(1, seconds + 1):
        connected = min(reach, ramp_per_s * t)
        done = connected + (failed if connected == reach else 0)
        sent += connected * SIZE
        kept += connected * FRAME * kept_share
        recv_q = int(kept + (connected * FRAME * 0.2 if kept_share == 0 else 0))
        samples.append({
            "t_s": float(t), "connected": connected, "opened": connected, "target": CLIENTS,
            "connect_failures": done - connected, "bytes_sent": sent, "pings_sent": sent // SIZE,
            "swarm_closing": False, "closes": {}, "first_close": None, "first_close_s": {},
            "sockets_recv_q_bytes": recv_q, "skmem_sockets": connected + 1,
            "kernel_read_ms": 12.0 + t % 3, "kernel_read_cpu_ms": 9.0,
            "server": {
                "recv_q_bytes": recv_q, "recv_q_max_bytes": recv_q // max(connected, 1),
                "kernel_tcp_mem_bytes": 50_000_000 + recv_q, "rss_bytes": 90_000_000,
                "connections": connected, "events_received": 0,
                "client_messages": 0 if kept_share == 1 else sent // SIZE,
            },
        })  # fmt: skip
    return samples


def judged(samples):
    result = judge_large_cell(samples)
    return result["verdict"], result["reason"], result["figures"]


def test_a_ramp_then_growth_is_a_leak():
    """Nothing read: the queues keep what is sent, about a frame a second per connection."""
    verdict, reason, figures = judged(large_samples(1.0))
    assert verdict == "leak", reason
    assert figures["ramp_end_s"] == RAMP_S and figures["connected_at_ramp_end"] == CLIENTS
    assert figures["steady_samples"] == 40 - RAMP_S + 1
    assert figures["kept_share"] == pytest.approx(FRAME / SIZE, abs=0.001)
    assert figures["recv_q_per_connection_growth_bytes_per_s"] == pytest.approx(
        FRAME * CLIENTS / (CLIENTS + 1), abs=0.1
    )
    assert "kept 101% of what 1,000 clients sent" in reason


def test_a_ramp_then_flat_is_healthy():
    """Everything read: the queues hold only what is in flight, which grew with the ramp."""
    samples = large_samples(0.0)
    assert samples[RAMP_S - 1]["sockets_recv_q_bytes"] == 10 * samples[0]["sockets_recv_q_bytes"]
    samples[-1]["sockets_recv_q_bytes"] -= 200_000  # queues drained a little: a hair below 0
    verdict, reason, figures = judged(samples)
    assert verdict == "healthy", reason
    assert -0.005 < figures["kept_share"] < 0
    assert "kept 0% of what 1,000 clients sent after the ramp (+0 of 59 MiB/min)" in reason
    assert figures["steady_sent_mib_per_min"] == round(CLIENTS * SIZE * 60 / 2**20, 2)


def test_the_ramp_alone_does_not_make_a_leak():
    """A backlog that grows only while clients arrive, then stays, is no leak: the lines are
    fitted after the ramp."""
    samples = large_samples(0.0)
    for s in samples[:RAMP_S]:
        s["sockets_recv_q_bytes"] = s["connected"] * 4096  # grows with the clients
    for s in samples[RAMP_S:]:
        s["sockets_recv_q_bytes"] = CLIENTS * 4096
    verdict, reason, figures = judged(samples)
    assert verdict == "healthy", reason
    assert figures["steady_recv_q_growth_mib_per_min"] == 0.0


def test_a_reader_slower_than_its_clients_is_unknown():
    verdict, reason, figures = judged(large_samples(0.2))
    assert verdict == "unknown"
    assert figures["kept_share"] == pytest.approx(0.2 * FRAME / SIZE, abs=0.001)
    assert "slower than its clients" in reason


def test_a_ramp_that_never_ends_is_unknown():
    verdict, reason, figures = judged(large_samples(1.0, ramp_per_s=20))
    assert verdict == "unknown" and figures["ramp_end_s"] is None
    assert "never ended" in reason


def test_a_ramp_the_service_could_not_take_is_unknown():
    """Fewer than 90% of the clients connected: not the large cell, whatever the queues do."""
    verdict, reason, _ = judged(large_samples(1.0, reach=800, failed=200))
    assert verdict == "unknown"
    assert "only 800 of 1,000 clients connected (200 failed)" in reason
    assert judged(large_samples(1.0, reach=950, failed=50))[0] == "leak"


def test_too_short_a_steady_part_is_unknown():
    seconds = RAMP_S + MIN_STEADY_SAMPLES - 2
    verdict, reason, figures = judged(large_samples(1.0, seconds=seconds))
    assert verdict == "unknown"
    assert figures["steady_samples"] == MIN_STEADY_SAMPLES - 1
    assert f"{MIN_STEADY_SAMPLES} needed" in reason
    assert judged(large_samples(1.0, seconds=seconds + 1))[0] == "leak"


def test_samples_while_the_swarm_closes_or_without_kernel_figures_are_left_out():
    samples = large_samples(1.0)
    samples[-1]["swarm_closing"] = True
    samples[-1]["sockets_recv_q_bytes"] = 0  # the connections are being closed
    del samples[20]["sockets_recv_q_bytes"]  # the kernel could not be asked
    steady = steady_part(samples)
    assert samples[-1] not in steady and samples[20] not in steady
    assert len(steady) == 40 - RAMP_S + 1 - 2
    assert large_figures(samples)["steady_recv_q_r2"] > 0.99
    assert judged(samples)[0] == "leak"


def test_no_server_figures_is_unknown():
    samples = large_samples(1.0)
    for s in samples:
        del s["server"]
    assert judged(samples)[0] == "unknown"


def test_the_story_judges_large_cells_by_this_rule():
    cell = Cell("missing", KEEPALIVE_OFF, shape="large", large=Large(CLIENTS, RAMP_PER_S, 30))
    result = STORY.judge(cell, large_samples(1.0))
    assert result["verdict"] == "leak"
    assert result["figures"]["kernel_read"] == {
        "samples": 40, "p50_ms": 13.0, "max_ms": 14.0, "cpu_p50_ms": 9.0, "cpu_max_ms": 9.0,
    }  # fmt: skip
    assert "Large cells: a large cell is judged on its steady part only" in STORY.rules


def test_the_live_line_shows_the_ramp_against_its_target():
    samples = large_samples(1.0)
    assert STORY.live(samples[2]).startswith("connected=300/1000 recv_q=")
    assert STORY.live(samples[-1]).startswith("connected=1000/1000 ")
    assert STORY.live(samples[-1]).endswith(" closes=- read=13ms")  # the sample's kernel read


def test_the_report_row_says_what_the_steady_part_kept():
    header, row = table_rows(
        STORY,
        [
            {
                "label": "large",
                "reason": "-",
                "expected": "leak",
                "surprise": False,
                **judge_large_cell(large_samples(1.0)),
            }
        ],
    )
    assert row[header.index("large: after the ramp (Recv-Q kept of sent)")] == (
        "1,000 connected at 10 s; 30 s: Recv-Q +59 of 59 MiB/min sent (101%; +1031 B/s per "
        "connection)"
    )
    assert row[header.index("kernel read per sample, p50 wall / CPU")] == "13 / 9 ms (max 14 / 9)"
