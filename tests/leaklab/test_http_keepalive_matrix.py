"""Tests of the http-keepalive story's matrix and of its programs' settings."""

from __future__ import annotations

import pytest

from leaklab.cli import parse_only
from leaklab.stories.http_keepalive import STORY
from leaklab.stories.http_keepalive.matrix import (
    DRIVE_DEFAULT,
    DRIVE_QUICK,
    KEEP_ALIVE_DEFAULT,
    KEEP_ALIVE_LONG,
    KEEP_ALIVE_QUICK,
    Cell,
    build_matrix,
    expected_verdict,
)
from leaklab.stories.http_keepalive.settings import (
    CalleeSettings,
    CallerSettings,
    SettingsError,
    callee_from_env,
    caller_from_env,
    render_env,
)
from leaklab.story import STORIES, load_story


def test_story_is_registered_by_name():
    assert STORIES["http-keepalive"] == "leaklab.stories.http_keepalive"
    assert load_story("http-keepalive") is STORY


def test_quick_matrix_is_leak_mask_and_both_fixes():
    cells = STORY.matrix("quick")
    assert [(c.client, c.keep_alive, c.connection) for c in cells] == [
        ("unclosed", KEEP_ALIVE_LONG, "keep-alive"),
        ("unclosed", KEEP_ALIVE_QUICK, "keep-alive"),
        ("closed", KEEP_ALIVE_LONG, "keep-alive"),
        ("shared", KEEP_ALIVE_LONG, "keep-alive"),
    ]
    assert [STORY.expected(c) for c in cells] == ["leak", "masked", "healthy", "healthy"]
    assert {c.drive for c in cells} == {DRIVE_QUICK}
    assert KEEP_ALIVE_QUICK.seconds == 2 < DRIVE_QUICK.hold_s


def test_quick_matrix_fits_its_time_budget():
    """Four cells of drive and hold, plus about 1 s each to start and stop two processes."""
    assert sum(c.drive.duration_s + 1.0 for c in STORY.matrix("quick")) <= 30


def test_default_matrix_has_uvicorns_keep_alive_and_connection_close():
    cells = build_matrix("default")
    assert KEEP_ALIVE_DEFAULT.seconds == 5  # uvicorn's timeout_keep_alive default
    assert {c.keep_alive for c in cells} == {KEEP_ALIVE_DEFAULT, KEEP_ALIVE_LONG}
    assert {c.client for c in cells} == {"unclosed", "closed", "shared"}
    assert {(c.client, c.connection) for c in cells if c.connection == "close"} == {
        ("unclosed", "close")
    }
    assert len(cells) == 8 and {c.drive for c in cells} == {DRIVE_DEFAULT}
    assert DRIVE_DEFAULT.requests == 400  # the seed's curl loop


def test_full_matrix_has_every_combination_once():
    cells = build_matrix("full")
    assert len(cells) == 4 * 2 * 2 == len({c.name for c in cells})
    assert all("/" not in c.name and " " not in c.name for c in cells)


@pytest.mark.parametrize(
    ("cell", "verdict"),
    [
        (Cell("unclosed", KEEP_ALIVE_LONG), "leak"),
        (Cell("unclosed", KEEP_ALIVE_DEFAULT), "masked"),
        (Cell("unclosed", KEEP_ALIVE_QUICK), "masked"),
        (Cell("unclosed", KEEP_ALIVE_LONG, "close"), "healthy"),
        (Cell("unclosed", KEEP_ALIVE_DEFAULT, "close"), "healthy"),
        (Cell("closed", KEEP_ALIVE_LONG), "healthy"),
        (Cell("shared", KEEP_ALIVE_DEFAULT), "healthy"),
        (Cell("dropped", KEEP_ALIVE_LONG), "healthy"),
    ],
    ids=lambda v: v.name if isinstance(v, Cell) else v,
)
def test_expected_verdict(cell, verdict):
    assert expected_verdict(cell) == verdict


def test_only_chooses_axis_values_and_keeps_the_others_whole():
    only = parse_only(["connection=close", "client=unclosed,shared"], [STORY])
    cells = STORY.matrix("quick", only)
    assert {(c.client, c.keep_alive.seconds) for c in cells} == {
        ("unclosed", 2), ("unclosed", 3600), ("shared", 2), ("shared", 3600)
    }  # fmt: skip
    assert {c.connection for c in cells} == {"close"}
    with pytest.raises(ValueError, match="--only"):
        parse_only(["keep_alive=5s"], [STORY])


def test_settings_are_the_cell_axes():
    cell = Cell("unclosed", KEEP_ALIVE_QUICK, "close")
    assert cell.settings() == {"client": "unclosed", "keep_alive": "2s", "connection": "close"}
    assert cell.label == "client per request, unclosed, keep-alive 2 s, Connection: close"


def test_program_settings_survive_the_trip_through_the_env():
    callee = CalleeSettings(listen_fd=7, keep_alive_s=3600, connection="close", log_level="debug")
    caller = CallerSettings(listen_fd=8, callee_url="http://127.0.0.1:9/", client="shared",
                            upstream_timeout_s=2.5)  # fmt: skip
    assert callee_from_env(render_env(callee)) == callee
    assert caller_from_env(render_env(caller)) == caller
    by_hand = CalleeSettings(port=9001)  # no LISTEN_FD: the program binds 127.0.0.1:PORT
    assert callee_from_env(render_env(by_hand)) == by_hand


def test_by_hand_the_caller_calls_the_callee_on_its_default_port():
    callee, caller = callee_from_env({}), caller_from_env({})
    assert (callee.listen_fd, callee.port, callee.keep_alive_s) == (None, 8001, 5)
    assert caller.callee_url == f"http://127.0.0.1:{callee.port}" and caller.port == 8002


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LISTEN_FD": "x"}, "LISTEN_FD"),
        ({"LISTEN_FD": "3", "KEEP_ALIVE": "0"}, "KEEP_ALIVE"),
        ({"LISTEN_FD": "3", "KEEP_ALIVE": "1.5"}, "whole number"),
        ({"LISTEN_FD": "3", "CONNECTION": "upgrade"}, "CONNECTION must be one of"),
    ],
)
def test_bad_callee_settings_name_the_variable(env, message):
    with pytest.raises(SettingsError, match=message):
        callee_from_env(env)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CALLEE_URL": "ws://127.0.0.1:8001"}, "CALLEE_URL"),
        ({"PORT": "70000"}, "PORT"),
        ({"LISTEN_FD": "3", "CALLEE_URL": "http://h:1", "CLIENT": "pooled"}, "CLIENT"),
        ({"LISTEN_FD": "3", "CALLEE_URL": "http://h:1", "UPSTREAM_TIMEOUT": "-1"}, "UPSTREAM"),
    ],
)
def test_bad_caller_settings_name_the_variable(env, message):
    with pytest.raises(SettingsError, match=message):
        caller_from_env(env)
