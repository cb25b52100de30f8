"""Tests for ping_client.lab.matrix: which cells run, what each predicts, how each configures."""

import pytest

from event_service.settings import settings_from_env
from ping_client.lab.matrix import (
    KEEPALIVE_DEFAULT,
    KEEPALIVE_OFF,
    KEEPALIVE_SHORT,
    WS_IMPLS,
    Cell,
    build_matrix,
    demo_matrix,
    expected_verdict,
    parse_axis,
)

ALL_CELLS = build_matrix(full=True) + build_matrix(quick=True)


def test_default_matrix_is_read_handler_by_keepalive():
    cells = build_matrix()
    assert {(c.read_handler, c.keepalive) for c in cells} == {
        ("off", KEEPALIVE_OFF), ("off", KEEPALIVE_DEFAULT),
        ("on", KEEPALIVE_OFF), ("on", KEEPALIVE_DEFAULT),
    }  # fmt: skip
    assert len(cells) == 4
    assert {(c.ws_impl, c.ping_kind) for c in cells} == {("websockets-sansio", "message")}
    assert (KEEPALIVE_DEFAULT.interval_s, KEEPALIVE_DEFAULT.timeout_s) == (20.0, 20.0)


def test_quick_matrix_uses_one_second_keepalive():
    keepalives = {c.keepalive for c in build_matrix(quick=True)}
    assert keepalives == {KEEPALIVE_OFF, KEEPALIVE_SHORT}
    assert (KEEPALIVE_SHORT.interval_s, KEEPALIVE_SHORT.timeout_s) == (2.0, 2.0)


def test_full_matrix_has_every_combination_once():
    cells = build_matrix(full=True)
    assert len(cells) == 3 * 2 * 4 == len({c.name for c in cells})
    assert {c.ws_impl for c in cells} == {"websockets-sansio", "wsproto", "websockets"}
    assert {c.ping_kind for c in cells} == {"message", "control"}
    assert all("/" not in c.name for c in cells)  # names are file names


@pytest.mark.parametrize(
    ("cell", "verdict"),
    [
        (Cell("off", KEEPALIVE_OFF), "leak"),
        (Cell("off", KEEPALIVE_DEFAULT), "masked"),
        (Cell("off", KEEPALIVE_SHORT), "masked"),
        (Cell("on", KEEPALIVE_OFF), "healthy"),
        (Cell("on", KEEPALIVE_DEFAULT), "healthy"),
        (Cell("off", KEEPALIVE_OFF, "wsproto"), "leak"),
        (Cell("off", KEEPALIVE_OFF, ping_kind="control"), "healthy"),
        (Cell("off", KEEPALIVE_DEFAULT, "websockets", "control"), "healthy"),
    ],
    ids=lambda v: v.name if isinstance(v, Cell) else v,
)
def test_expected_verdict(cell, verdict):
    assert expected_verdict(cell) == verdict


@pytest.mark.parametrize("cell", ALL_CELLS, ids=lambda c: c.name)
def test_cell_env_configures_the_service(cell):
    """Every cell's env is valid service configuration and means what the cell says."""
    settings = settings_from_env(cell.env())
    assert settings.read_handler is (cell.read_handler == "on")
    assert settings.ws_impl == cell.ws_impl
    assert settings.ws_ping_interval_s == cell.keepalive.interval_s
    assert settings.ws_ping_timeout_s == cell.keepalive.timeout_s


def test_settings_are_the_cell_axes():
    cell = Cell("on", KEEPALIVE_SHORT, "wsproto", "control")
    assert cell.settings() == {
        "read_handler": "on", "keepalive": "2s/2s", "ws_impl": "wsproto", "ping_kind": "control",
    }  # fmt: skip


def test_demo_runs_the_quick_default_matrix():
    """The README's main command: leak, masked by short keepalive, and the fix with both."""
    assert demo_matrix() == build_matrix(quick=True)
    assert [(c.read_handler, c.keepalive) for c in demo_matrix()] == [
        ("off", KEEPALIVE_OFF), ("off", KEEPALIVE_SHORT),
        ("on", KEEPALIVE_OFF), ("on", KEEPALIVE_SHORT),
    ]  # fmt: skip
    assert [expected_verdict(c) for c in demo_matrix()] == ["leak", "masked", "healthy", "healthy"]


def test_axes_can_be_chosen_one_by_one():
    """--ws-impl and --ping-kind pick those axes; READ_HANDLER x keepalive stays whole."""
    cells = build_matrix(quick=True, ws_impls=("wsproto",), ping_kinds=("message", "control"))
    assert len(cells) == 8
    assert {c.ws_impl for c in cells} == {"wsproto"}
    assert [c.ping_kind for c in cells[::4]] == ["message", "control"]
    assert build_matrix(full=True, ws_impls=("websockets",)) == [
        c for c in build_matrix(full=True) if c.ws_impl == "websockets"
    ]


def test_axis_lists_are_parsed_in_order_without_repeats():
    assert parse_axis("wsproto, websockets,wsproto", WS_IMPLS, "--ws-impl") == (
        "wsproto", "websockets",
    )  # fmt: skip
    for bad in ("h2", "", " , ", "wsproto,h2"):
        with pytest.raises(ValueError, match="--ws-impl takes a comma-separated list"):
            parse_axis(bad, WS_IMPLS, "--ws-impl")
