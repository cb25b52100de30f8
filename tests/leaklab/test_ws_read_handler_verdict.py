"""Tests of the read-handler story's verdict: figures and verdicts from literal samples.

The literals below are written flat for brevity; :func:`nested` puts the server's figures
where the lab's samples keep them, under ``server`` with their ``/stats`` names.
"""

import copy
import functools
import random

import pytest

from leaklab.stories.ws_read_handler import verdict
from leaklab.stories.ws_read_handler.verdict import slope_per_min

SERVER = {
    "server_recv_q_bytes": "recv_q_bytes", "server_recv_q_max_bytes": "recv_q_max_bytes",
    "kernel_tcp_mem_bytes": "kernel_tcp_mem_bytes", "rss_bytes": "rss_bytes",
    "connections": "connections", "events_published": "events_received",
    "messages_drained": "client_messages",
}  # fmt: skip


def nested(samples):
    """The flat literal samples in the lab's shape."""
    out = []
    for flat in copy.deepcopy(list(samples)):
        server = {SERVER[key]: flat.pop(key) for key in list(flat) if key in SERVER}
        if any(value is not None for value in server.values()):
            flat["server"] = server
        out.append(flat)
    return out


def events_lost(samples):
    return verdict.events_lost(nested(samples))


def summarize_cell(settings, expected, samples):
    """What the runner writes for a cell: the story's judgement and the expectation."""
    data_messages = settings.get("ping_kind", "message") == "message"
    result = verdict.judge_cell(nested(samples), data_messages=data_messages)
    return {**result, "expected": expected, "surprise": result["verdict"] != expected}


KIB, SOCKETS, EVENT_RATE = 1024, 50, 5  # bytes, connections per cell, events per second
STATS_KEYS = ("server_recv_q_bytes", "server_recv_q_max_bytes", "kernel_tcp_mem_bytes",
              "rss_bytes", "connections", "events_published")  # fmt: skip


def sample(t_s, recv_q, *, send_q=0, connections=SOCKETS, received=None, **closed):
    """One sample as runner.take_sample writes it, ``recv_q`` bytes in every server socket."""
    published = EVENT_RATE * (t_s - 1)  # counted from the first sample, at 1 s
    return {
        "t_s": float(t_s), "server_recv_q_bytes": recv_q * connections,
        "server_recv_q_max_bytes": recv_q, "client_send_q_bytes": send_q,
        "kernel_tcp_mem_bytes": 50_000_000 + recv_q * connections + send_q,
        "rss_bytes": 80_000_000, "connections": connections, "events_published": published,
        "events_received": published * connections if received is None else received,
        "clients": SOCKETS, "closes": {}, "first_close": None, "first_close_s": {}, **closed,
    }  # fmt: skip


def leak():
    """Recv-Q per socket climbs to 128 KiB and stays; the clients' Send-Q keeps growing."""
    return [sample(t, min(128 * KIB, 4 * KIB * t), send_q=160 * KIB * t) for t in range(1, 61)]


def healthy():
    return [sample(t, (t % 3) * KIB, send_q=KIB) for t in range(1, 61)]


def noise(seed=7):
    """Every figure fluctuates by up to 1 KiB around a constant."""
    jitter = functools.partial(random.Random(seed).randint, -KIB, KIB)
    samples = [sample(t, 2 * KIB + jitter(), send_q=2 * KIB + jitter()) for t in range(1, 61)]
    for s in samples:
        s.update(kernel_tcp_mem_bytes=5e7 + jitter(), rss_bytes=8e7 + jitter())
    return samples


def with_gaps(samples):
    """Drop every 7th second, strip /stats from every 5th sample left, None in every 3rd."""
    kept = [s for i, s in enumerate(samples) if i % 7 != 6]
    for i, s in enumerate(kept):
        if i % 5 == 4:  # /stats did not answer
            kept[i] = {k: v for k, v in s.items() if k not in STATS_KEYS}
        elif i % 3 == 2:
            s.update(dict.fromkeys(("server_recv_q_max_bytes", "client_send_q_bytes", "rss_bytes")))
    return kept


def summarize(samples, expected="leak"):
    return summarize_cell({"read_handler": "missing", "keepalive": "off"}, expected, samples)


@pytest.mark.parametrize("samples", [leak, lambda: with_gaps(leak())], ids=["whole", "gaps"])
def test_leak_holds_growing_kernel_memory(samples):
    result = summarize(samples())
    figures = result["figures"]
    assert result["verdict"] == "leak" and "128 KiB" in result["reason"]
    assert figures["recv_q_peak_bytes"] == 128 * KIB
    assert figures["held_growth_mb_per_min"] > 9  # 160 KiB/s of Send-Q alone is 9.8 MB/min
    assert figures["held_end_bytes"] == figures["held_peak_bytes"]
    assert figures["closes"] == {} and figures["first_close"] is None


def test_keepalive_masks_the_leak_and_loses_events():
    """Backlog grows until keepalive closes every connection with 1011 at 40.3 s."""
    before = [sample(t, 3 * KIB * t, send_q=16 * KIB * t) for t in range(1, 41)]
    closed = {
        "closes": {"1011": SOCKETS}, "first_close": {"code": 1011, "after_s": 40.3},
        "first_close_s": {"1011": 40.3},
    }  # fmt: skip
    received = EVENT_RATE * 39 * SOCKETS  # everything published until the close, no more
    after = [sample(t, 0, connections=0, received=received, **closed) for t in range(41, 61)]
    result = summarize(before + after, expected="masked")
    figures = result["figures"]
    assert result["verdict"] == "masked"
    assert figures["first_close"] == {"code": 1011, "after_s": 40.3}
    assert figures["held_end_bytes"] == 0 and figures["held_peak_bytes"] > 0
    assert figures["events_lost"] == EVENT_RATE * 20 * SOCKETS  # every event after the kill
    assert "1011" in result["reason"] and "~40 s" in result["reason"]


@pytest.mark.parametrize(
    "samples", [healthy, noise, lambda: with_gaps(healthy())], ids=["small", "noise", "gaps"]
)
def test_small_or_noisy_recv_q_is_healthy_with_no_growth(samples):
    result = summarize(samples(), expected="healthy")
    figures = result["figures"]
    assert result["verdict"] == "healthy" and not result["surprise"]
    assert figures["recv_q_peak_bytes"] <= 3 * KIB and figures["events_lost"] == 0
    assert figures["recv_q_sum_peak_bytes"] > 64 * KIB  # many small queues: not a backlog
    assert abs(figures["held_growth_mb_per_min"]) < 0.05  # the leak grows > 9 MB/min
    assert abs(figures["kernel_mem_growth_mb_per_min"]) < 0.05


@pytest.mark.parametrize(
    "samples",
    [[], [{k: v for k, v in s.items() if k not in STATS_KEYS} for s in healthy()]],
    ids=["no-samples", "no-server-figures"],
)
def test_nothing_to_judge_is_unknown(samples):
    """The module docstring: unknown when no sample carried the figures needed to judge."""
    assert summarize(samples)["verdict"] == "unknown"


@pytest.mark.parametrize(
    ("points", "per_min"),
    [
        ([(t, t * 1_000_000) for t in range(10)], 60_000_000),  # 1 MB/s
        ([(t, 5 - 2 * t) for t in range(10)], -120), ([(t, 7) for t in range(10)], 0),
        ([(3, 1), (3, 9)], 0), ([(1, 5)], 0), ([], 0),  # one instant, one point, none
    ],
)  # fmt: skip
def test_slope_per_min(points, per_min):
    assert slope_per_min(points) == pytest.approx(per_min)


def test_events_lost_expects_every_client_to_get_every_event_in_the_window():
    """Killed clients still count: each of the swarm's clients should have had each event."""
    samples = [
        {"events_published": 10, "clients": 2, "connections": 2, "events_received": 0},
        {"events_published": 14, "clients": 2, "connections": 2, "events_received": 6},  # +4 x 2
        {"events_received": 9},  # no /stats this second: skipped
        {"events_published": 20, "clients": 2, "connections": 1, "events_received": 14},  # +6 x 2
        {"events_published": 25, "clients": 2, "connections": 0, "events_received": 17},  # +5 x 2
    ]
    assert events_lost(samples) == 8 + 12 + 10 - 17


@pytest.mark.parametrize(("expected", "surprise"), [("leak", False), ("healthy", True)])
def test_surprise_when_verdict_differs_from_expected(expected, surprise):
    assert summarize(leak(), expected=expected)["surprise"] is surprise


def test_events_lost_counts_received_events_over_the_same_window_as_expected():
    """Events the clients had before the first sample must not hide later losses."""
    samples = [
        {"events_published": 10, "connections": 2, "events_received": 20},  # all delivered
        {"events_published": 14, "connections": 2, "events_received": 26},  # 8 due, 6 came
    ]
    assert events_lost(samples) == 2


def test_skmem_peak_is_the_largest_receive_memory_sampled():
    """skmem r (what the kernel charges, overhead included) peaks where the samples say."""
    samples = leak()
    for s in samples:
        s["skmem_r_bytes"] = 2 * s["server_recv_q_bytes"]  # truesize: about twice the payload
    samples[10].pop("skmem_r_bytes")  # ss failed once
    figures = summarize(samples)["figures"]
    assert figures["skmem_r_peak_bytes"] == 2 * 128 * KIB * SOCKETS
    assert summarize(healthy())["figures"]["skmem_r_peak_bytes"] == 0  # never sampled


def test_kernel_read_cost_is_summarized_over_the_samples_that_read():
    """Median and largest of each sample's kernel read, wall and CPU; None without any."""
    samples = leak()[:5]
    walls, cpus = (30.0, 10.0, 50.0, 20.0), (9.0, 8.0, 12.0, 7.0)
    for s, wall, cpu in zip(samples[:4], walls, cpus, strict=True):
        s.update(kernel_read_ms=wall, kernel_read_cpu_ms=cpu)  # the fifth could not read
    figures = summarize(samples)["figures"]
    assert figures["kernel_read"] == {
        "samples": 4, "p50_ms": 20.0, "max_ms": 50.0, "cpu_p50_ms": 8.0, "cpu_max_ms": 12.0,
    }  # fmt: skip
    assert summarize(healthy())["figures"]["kernel_read"] is None


def test_kernel_tcp_memory_peak_is_the_hosts_largest_sampled():
    assert summarize(leak())["figures"]["kernel_tcp_mem_peak_bytes"] == (
        50_000_000 + 128 * KIB * SOCKETS + 160 * KIB * 60
    )


def unread_in_user_space():
    """No kernel backlog yet, but the app read none of the messages (legacy websockets)."""
    samples = [sample(t, 2 * KIB) for t in range(1, 7)]
    for s in samples:
        s.update(pings_sent=50 * int(s["t_s"]), messages_drained=0)
    return samples


def test_unread_messages_without_a_backlog_are_called_out():
    """Healthy by the kernel's numbers, but the reason says nothing was read."""
    result = summarize(unread_in_user_space())
    assert result["verdict"] == "healthy"
    assert "none of the 300 client messages was read" in result["reason"]
    control = summarize_cell({"ping_kind": "control"}, "healthy", unread_in_user_space())
    assert control["reason"] == (
        "healthy: control frames are answered by the server, nothing piles up"
    )


def killed_at(samples, t_s):
    """Every connection closed with 1011 from ``t_s`` on."""
    for s in samples:
        if s["t_s"] >= t_s:
            s.update(closes={"1011": SOCKETS}, first_close={"code": 1011, "after_s": t_s},
                     first_close_s={"1011": t_s})  # fmt: skip
    return samples


def test_keepalive_close_of_a_server_buffering_in_user_space_is_masked():
    """No kernel backlog (legacy websockets buffers first), none read, then 1011: masked."""
    result = summarize(killed_at(unread_in_user_space(), 5.0), expected="masked")
    assert result["verdict"] == "masked" and "~5 s" in result["reason"]


def test_keepalive_close_of_a_reading_server_is_healthy_and_said():
    """Messages were read and no backlog: a 1011 close means slow pongs, not the leak."""
    samples = killed_at(unread_in_user_space(), 5.0)
    for s in samples:
        s["messages_drained"] = s["pings_sent"]
    result = summarize(samples, expected="healthy")
    assert result["verdict"] == "healthy"
    assert "closed with 1011" in result["reason"] and "too slow" in result["reason"]
