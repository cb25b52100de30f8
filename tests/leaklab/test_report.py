"""Tests for leaklab.report (and charts): every file of the report folder, offline."""

import base64
import html
import json
import re

import pytest

from event_service.settings import render_env
from leaklab.cli import run_info
from leaklab.report import table_rows, write_report
from leaklab.runner import summarize
from leaklab.stories.ws_read_handler import STORY
from leaklab.stories.ws_read_handler.cell import service_settings, swarm_settings, without_password
from leaklab.stories.ws_read_handler.matrix import KEEPALIVE_DEFAULT, KEEPALIVE_OFF, Cell
from leaklab.stories.ws_read_handler.verdict import RULES
from leaklab.story import LabOptions

PNG = b"\x89PNG\r\n\x1a\n"
FILES = ["report.md", "index.html", "summary.json", "samples.jsonl", "settings.json"]
CHARTS = [f"ws-read-handler_{name}.png" for name in (
    "dead_sessions", "sessions", "recv_q", "skmem_r", "sockets_established", "sockets_closing",
    "kernel_tcp_mem", "rss", "closes",
)]  # fmt: skip


def samples(recv_q_step_bytes):
    """Ten seconds of one cell: per-socket Recv-Q rising by ``recv_q_step_bytes`` a second."""
    return [
        {"t_s": float(t), "client_send_q_bytes": 0, "events_received": 4 * t, "closes": {},
         "first_close": None,
         "server": {"recv_q_bytes": 4 * recv_q_step_bytes * t,
                    "recv_q_max_bytes": recv_q_step_bytes * t, "kernel_tcp_mem_bytes": 50_000_000,
                    "rss_bytes": 80_000_000, "connections": 4, "events_received": t}}
        for t in range(1, 11)
    ]  # fmt: skip


def entry(cell, cell_samples):
    """A summary entry as the runner builds it."""
    options = LabOptions()
    run = {
        "samples": cell_samples,
        "processes": {
            "service_env": render_env(service_settings(cell, options)),
            "swarm": swarm_settings(cell, options),
        },
    }
    return summarize(STORY, cell, run)


# A leak where one is expected, and a healthy cell where keepalive should have masked a leak.
CELLS = [
    (Cell("missing", KEEPALIVE_OFF), samples(16_384)),
    (Cell("missing", KEEPALIVE_DEFAULT), samples(64)),
]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    run = run_info("python -m leaklab run ws-read-handler", LabOptions(), "2025-01-02 03:04:05")
    cells = [(entry(*c), c[1]) for c in CELLS]
    written = write_report(out, {**run, "interrupted": False}, [(STORY, cells)])
    return out, written


def test_every_file_is_written(report):
    out, written = report
    assert sorted(written) == sorted(out / name for name in FILES + CHARTS)
    assert all(path.stat().st_size > 0 for path in written)
    assert all((out / name).read_bytes().startswith(PNG) for name in CHARTS)


def test_summary_has_settings_verdict_and_figures_per_cell(report):
    cells = json.loads((report[0] / "summary.json").read_text())["cells"]
    assert [c["name"] for c in cells] == [cell.name for cell, _ in CELLS]
    for cell in cells:
        assert set(cell["settings"]) == {
            "read_handler",
            "keepalive",
            "ws_impl",
            "ping_kind",
            "shape",
        }
        assert cell["story"] == "ws-read-handler"
        assert cell["verdict"] in ("leak", "masked", "healthy")
        assert cell["figures"]["samples"] == 10 and "held_growth_mb_per_min" in cell["figures"]
    assert [c["verdict"] for c in cells] == ["leak", "healthy"]


def test_samples_jsonl_has_one_line_per_sample_tagged_with_its_cell(report):
    lines = [json.loads(line) for line in (report[0] / "samples.jsonl").read_text().splitlines()]
    assert [line["cell"] for line in lines] == [cell.name for cell, s in CELLS for _ in s]
    assert lines[0]["server"]["recv_q_max_bytes"] == 16_384
    assert {line["story"] for line in lines} == {"ws-read-handler"}


def test_settings_json_has_what_it_takes_to_repeat_each_cell(report):
    """Per cell: its axes, the service's exact environment and the swarm's settings."""
    settings = json.loads((report[0] / "settings.json").read_text())
    assert settings["run"]["clients"] == LabOptions.clients
    assert list(settings["cells"]) == [cell.name for cell, _ in CELLS]
    for cell, _ in CELLS:
        written = settings["cells"][cell.name]
        assert written["settings"] == cell.settings()
        assert written["service_env"]["READ_HANDLER"] == cell.read_handler
        assert written["service_env"]["EVENT_RATE"] == "5.0"
        assert written["swarm"]["ping_kind"] == cell.ping_kind
        assert written["swarm"]["clients"] == LabOptions.clients
        assert written["swarm"]["compression"] is False
        assert "url" not in written["swarm"]


def test_report_states_the_rules_the_verdicts_follow(report):
    """report.md and index.html quote the rules from verdict.py, thresholds included."""
    assert RULES in (report[0] / "report.md").read_text()
    assert "64 KiB" in RULES and "1011" in RULES
    assert html.escape(RULES.replace("**", "")) in (report[0] / "index.html").read_text()
    assert "Interrupted" not in (report[0] / "report.md").read_text()


def test_an_interrupted_run_says_so(tmp_path):
    run = run_info("python -m leaklab run ws-read-handler", LabOptions(), "2025-01-02 03:04:05")
    write_report(
        tmp_path, {**run, "interrupted": True}, [(STORY, [(entry(*CELLS[0]), CELLS[0][1])])]
    )
    assert "**Interrupted:**" in (tmp_path / "report.md").read_text()
    assert "Interrupted:" in (tmp_path / "index.html").read_text()
    assert json.loads((tmp_path / "summary.json").read_text())["run"]["interrupted"] is True


def test_broker_password_is_masked_in_reports():
    env = {"READ_HANDLER": "missing", "AMQP_URL": "amqp://guest:s3cret@127.0.0.1:5672/"}
    assert without_password(env) == {**env, "AMQP_URL": "amqp://guest:***@127.0.0.1:5672/"}
    assert without_password({"AMQP_URL": "amqp://127.0.0.1/"}) == {"AMQP_URL": "amqp://127.0.0.1/"}


def test_markdown_has_a_row_per_cell_with_verdict_expected_and_surprise(report):
    rows = [
        r
        for r in (report[0] / "report.md").read_text().splitlines()
        if r.startswith("| READ_HANDLER")
    ]
    assert len(rows) == 2
    leak_row, surprise_row = rows
    assert "leaks: kernel memory grows" in leak_row and leak_row.endswith("| leak |")
    assert "healthy: client messages are read" in surprise_row
    assert surprise_row.endswith("| masked **(surprise)** |") and "surprise" not in leak_row


def test_html_is_self_contained(report):
    page = (report[0] / "index.html").read_text()
    assert not re.search(r"""(?:src|href)=["']?(?:https?:)?//""", page)
    images = re.findall(r'<img [^>]*src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == len(CHARTS)
    assert all(base64.b64decode(image).startswith(PNG) for image in images)
    assert "masked (surprise)" in page


def test_cells_task_groups_and_notes_are_quoted_under_the_table(tmp_path):
    """The last task dump a cell sampled, and its notes, follow the story's table."""
    groups = ["tasks: total 45", "40 @ run_asgi > ... > write_events > _send_events > next"]
    leaky = [*samples(16_384)]
    leaky[-1] = {**leaky[-1], "task_groups": groups}
    summary = entry(CELLS[0][0], leaky)
    assert summary["figures"]["task_groups"] == groups
    summary["figures"]["notes"] = ["service log: nothing past start-up"]
    plain = entry(*CELLS[1])
    assert plain["figures"]["task_groups"] is None
    run = run_info("python -m leaklab run ws-read-handler", LabOptions(), "2025-01-02 03:04:05")
    write_report(tmp_path, {**run, "interrupted": False}, [(STORY, [(summary, leaky)])])
    text = (tmp_path / "report.md").read_text()
    table_end = text.index("\n\n", text.index("| READ_HANDLER"))
    quoted = text.index("```\ntasks: total 45\n40 @ run_asgi > ... > write_events")
    assert table_end < quoted < text.index("Verdicts come from the samples")
    assert "- service log: nothing past start-up" in text
    page = (tmp_path / "index.html").read_text()
    assert "<pre>tasks: total 45\n40 @ run_asgi &gt; ... &gt; write_events" in page
    assert "<li>service log: nothing past start-up</li>" in page


def test_a_cell_that_could_not_run_is_a_row_of_dashes():
    """The runner's entry for a cell that failed to start has no figures: its row says the
    reason instead of failing on the story's columns."""
    cell = Cell("missing", KEEPALIVE_OFF)
    failed = {
        "story": STORY.name, "name": cell.name, "label": cell.label,
        "settings": cell.settings(), "processes": {}, "figures": {}, "verdict": "unknown",
        "reason": "unknown: the cell could not run (no netns)", "expected": "leak",
        "surprise": True,
    }  # fmt: skip
    _, dashes, ran = table_rows(STORY, [failed, entry(*CELLS[0])])
    columns = len(STORY.columns)
    assert dashes == [cell.label, *["-"] * columns, failed["reason"], "leak **(surprise)**"]
    assert ran[-2].startswith("leaks:") and ran[1 : 1 + columns] != ["-"] * columns
