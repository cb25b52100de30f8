"""Tests of the grpc-unclosed story's matrix: which cells run, what each predicts, how each
configures its processes."""

from __future__ import annotations

from pathlib import Path

import pytest

from leaklab.cli import parse_only
from leaklab.stories.grpc_unclosed import STORY
from leaklab.stories.grpc_unclosed.cell import client_argv
from leaklab.stories.grpc_unclosed.matrix import LEAK, QUICK_LOAD_S, Cell, build_matrix
from leaklab.story import load_story


def test_the_story_is_registered_by_name():
    assert load_story("grpc-unclosed") is STORY


def test_quick_matrix_is_the_leak_the_trap_and_the_two_fixes_in_short_cells():
    cells = STORY.matrix("quick")
    assert [(c.client, c.pool) for c in cells] == [
        (LEAK, "local"), (LEAK, "shared"), ("close-each", "local"), ("reuse-one", "local"),
    ]  # fmt: skip
    assert [STORY.expected(c) for c in cells] == ["leak", "masked", "healthy", "healthy"]
    assert {(c.server_idle, c.connect_timeout) for c in cells} == {("off", "1s")}
    assert sum(QUICK_LOAD_S.values()) <= 22  # plus 2 s of recovery: the quick run stays < 35 s


def test_default_matrix_is_client_by_pool_plus_the_idle_timeout_mitigation():
    cells = build_matrix("default")
    assert len(cells) == 3 * 2 + 1
    assert cells[-1] == Cell(LEAK, "local", "1s")
    assert STORY.expected(cells[-1]) == "masked"
    assert all(c.load_s is None for c in cells)


def test_full_matrix_has_every_client_pool_and_idle_timeout_and_the_long_connect_timeout():
    cells = build_matrix("full")
    assert len(cells) == 3 * 2 * 2 + 1 == len({c.name for c in cells})
    assert {c.server_idle for c in cells} == {"off", "1s"}
    assert [c for c in cells if c.connect_timeout == "20s"] == [
        Cell(LEAK, "local", connect_timeout="20s")
    ]
    assert all("/" not in c.name and " " not in c.name for c in cells)


@pytest.mark.parametrize(
    ("cell", "verdict"),
    [
        (Cell(LEAK, "local"), "leak"),
        (Cell(LEAK, "local", connect_timeout="20s"), "leak"),
        (Cell(LEAK, "shared"), "masked"),
        (Cell(LEAK, "local", "1s"), "masked"),
        (Cell(LEAK, "shared", "1s"), "masked"),
        (Cell("close-each", "local"), "healthy"),
        (Cell("close-each", "shared", "1s"), "healthy"),
        (Cell("reuse-one", "local"), "healthy"),
        (Cell("reuse-one", "shared"), "healthy"),
    ],
    ids=lambda v: v.name if isinstance(v, Cell) else v,
)
def test_expected_verdict(cell, verdict):
    assert STORY.expected(cell) == verdict


def test_settings_are_the_cell_axes():
    cell = Cell("close-each", "shared", "1s", "20s")
    assert cell.settings() == {
        "client": "close-each", "pool": "shared", "server_idle": "1s", "connect_timeout": "20s",
    }  # fmt: skip
    assert (cell.max_connection_idle_ms, cell.connect_timeout_ms) == (1000, 0)
    assert set(cell.settings()) == set(STORY.axes)


def test_client_argv_carries_the_cell():
    argv = client_argv(Cell(LEAK, "local"), "127.0.0.1:1", Path("/tmp/stats.jsonl"))
    assert argv[1:3] == ["-m", "leaklab.stories.grpc_unclosed.client"]
    for option, value in [
        ("--client", LEAK), ("--pool", "local"), ("--connect-timeout-ms", "1000"),
        ("--target", "127.0.0.1:1"), ("--stats", "/tmp/stats.jsonl"),
    ]:  # fmt: skip
        assert argv[argv.index(option) + 1] == value


def test_only_narrows_the_axes():
    only = parse_only(["pool=local", "client=leak-per-call-held,close-each"], [STORY])
    cells = STORY.matrix("full", only)
    assert {c.pool for c in cells} == {"local"}
    assert {c.client for c in cells} == {LEAK, "close-each"}
    assert len(cells) == 2 * 2 + 1
    assert STORY.matrix("quick", parse_only(["pool=shared"], [STORY])) == [
        Cell(LEAK, "shared", load_s=QUICK_LOAD_S[(LEAK, "shared")])
    ]
    with pytest.raises(ValueError, match="--only"):
        parse_only(["pool=global"], [STORY])
