"""The ws-unclosed matrix: which cells run, what each predicts, how each configures its
processes."""

from __future__ import annotations

from pathlib import Path

import pytest

from event_service.settings import render_env, session_cap, settings_from_env
from leaklab.cli import parse_only
from leaklab.stories.ws_unclosed import STORY
from leaklab.stories.ws_unclosed.cell import (
    cell_duration_s,
    client_argv,
    client_run_s,
    service_settings,
)
from leaklab.stories.ws_unclosed.client import parser
from leaklab.stories.ws_unclosed.matrix import Cell, build_matrix, expected_verdict
from leaklab.story import STORIES, LabOptions, load_story


def test_the_story_is_registered():
    assert STORIES["ws-unclosed"] == "leaklab.stories.ws_unclosed"
    assert load_story("ws-unclosed") is STORY


def test_default_matrix_is_the_leak_without_and_with_the_cap_then_both_fixes():
    cells = build_matrix()
    assert [(c.client, c.max_sessions) for c in cells] == [
        ("unclosed", "100000"), ("unclosed", "auto"), ("closed", "auto"), ("reused", "auto"),
    ]  # fmt: skip
    assert [expected_verdict(c) for c in cells] == ["leak", "masked", "healthy", "healthy"]
    assert {(c.fd_limit, c.rate_per_s, c.max_duration_s) for c in cells} == {(512, 20.0, None)}


def test_quick_cells_are_short_under_a_low_fd_limit():
    cells = build_matrix(quick=True)
    assert len(cells) == 4
    assert {(c.fd_limit, c.rate_per_s, c.max_duration_s) for c in cells} == {(256, 150.0, 6.0)}
    assert cell_duration_s(cells[0], LabOptions(duration_s=15)) == 6.0
    assert cell_duration_s(cells[0], LabOptions(duration_s=3)) == 3.0
    assert cell_duration_s(build_matrix()[0], LabOptions(duration_s=60)) == 60.0


def test_full_matrix_has_every_pair_once():
    cells = build_matrix(full=True)
    assert len(cells) == 6 == len({c.name for c in cells})
    assert all("/" not in c.name and " " not in c.name for c in cells)


def test_only_narrows_the_axes():
    only = parse_only(["client=unclosed", "max_sessions=auto,100000"], [STORY])
    cells = STORY.matrix("quick", only)
    assert [(c.client, c.max_sessions) for c in cells] == [
        ("unclosed", "auto"), ("unclosed", "100000")
    ]  # fmt: skip
    with pytest.raises(ValueError, match="values among unclosed"):
        parse_only(["client=forgetful"], [STORY])


def test_the_client_stops_before_the_end_for_the_recovery():
    assert client_run_s(6.0) == 4.5
    assert client_run_s(60.0) == 50.5
    assert client_run_s(3.0) == 1.5 and client_run_s(2.0) == 1.5


@pytest.mark.parametrize("cell", build_matrix(full=True), ids=lambda c: c.name)
def test_cell_settings_configure_the_service(cell: Cell):
    """The fixed read handler, no events, and the cell's cap, through the env and back."""
    settings = settings_from_env(render_env(service_settings(cell)))
    assert (settings.read_handler, settings.event_rate) == ("fixed", 0.0)
    assert settings.max_sessions == cell.session_cap
    cap = session_cap(settings, cell.fd_limit)
    assert cap < cell.fd_limit if cell.max_sessions == "auto" else cap > cell.fd_limit


def test_client_command_line_parses_to_the_cell():
    cell = Cell("reused", "auto", rate_per_s=150.0)
    argv = client_argv(cell, "ws://127.0.0.1:9/ws", 4.5, Path("/tmp/x.jsonl"))
    assert argv[1:3] == ["-m", "leaklab.stories.ws_unclosed.client"]
    args = parser().parse_args(argv[3:])
    assert (args.client, args.rate, args.duration) == ("reused", 150.0, 9.5)
    assert args.stats_out == "/tmp/x.jsonl"


def test_settings_are_the_cell_axes():
    assert Cell("closed", "auto", fd_limit=256, rate_per_s=150.0).settings() == {
        "client": "closed", "max_sessions": "auto", "fd_limit": "256", "rate_per_s": "150",
    }  # fmt: skip
