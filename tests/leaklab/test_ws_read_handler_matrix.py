"""Tests of the read-handler story's matrix: which cells run, what each predicts, how each
configures its service."""

import pytest

from event_service.settings import render_env, settings_from_env
from leaklab.cli import parse_only
from leaklab.stories.ws_read_handler import STORY
from leaklab.stories.ws_read_handler.cell import service_settings, swarm_config
from leaklab.stories.ws_read_handler.matrix import (
    CHURN_DEFAULT,
    CHURN_QUICK,
    KEEPALIVE_DEFAULT,
    KEEPALIVE_OFF,
    KEEPALIVE_SHORT,
    LARGE,
    NEVER_PUBLISHED,
    Cell,
    Large,
    build_matrix,
    expected_verdict,
)
from leaklab.story import LabOptions

ALL_CELLS = build_matrix(full=True) + build_matrix(quick=True)


def static(cells):
    return [c for c in cells if c.shape == "static"]


def test_default_matrix_is_churn_then_read_handler_by_keepalive():
    everything = build_matrix()
    assert [(c.shape, c.read_handler, c.churn) for c in everything[:2]] == [
        ("churn", "missing", CHURN_DEFAULT), ("churn", "fixed", CHURN_DEFAULT),
    ]  # fmt: skip
    assert (CHURN_DEFAULT.every_s, CHURN_DEFAULT.batch, CHURN_DEFAULT.lifetime_s) == (5, 20, 5)
    cells = everything[2:]
    assert cells == static(everything)
    assert {(c.read_handler, c.keepalive) for c in cells} == {
        ("missing", KEEPALIVE_OFF), ("missing", KEEPALIVE_DEFAULT),
        ("fixed", KEEPALIVE_OFF), ("fixed", KEEPALIVE_DEFAULT),
    }  # fmt: skip
    assert len(cells) == 4
    assert {(c.ws_impl, c.ping_kind) for c in cells} == {("websockets-sansio", "message")}
    assert (KEEPALIVE_DEFAULT.interval_s, KEEPALIVE_DEFAULT.timeout_s) == (20.0, 20.0)


def test_quick_matrix_uses_one_second_keepalive():
    keepalives = {c.keepalive for c in static(build_matrix(quick=True))}
    assert keepalives == {KEEPALIVE_OFF, KEEPALIVE_SHORT}
    assert (KEEPALIVE_SHORT.interval_s, KEEPALIVE_SHORT.timeout_s) == (2.0, 2.0)


def test_full_matrix_has_every_combination_once():
    cells = build_matrix(full=True)
    assert len(cells) == 3 * 2 * 2 + 3 * 2 * 4 + 2 + 2 == len({c.name for c in cells})
    assert len(static(cells)) == 3 * 2 * 4
    assert {c.ws_impl for c in cells} == {"websockets-sansio", "wsproto", "websockets"}
    assert {c.ping_kind for c in cells} == {"message", "control"}
    assert [c.shape for c in cells[:12]] == ["churn"] * 12  # churn first
    assert {c.keepalive for c in cells[:12]} == {KEEPALIVE_OFF, KEEPALIVE_DEFAULT}
    vanished = [c for c in cells if c.shape == "vanished"]
    assert [(c.read_handler, c.keepalive) for c in vanished] == [
        ("fixed", KEEPALIVE_OFF), ("fixed", KEEPALIVE_SHORT),
    ]  # fmt: skip
    assert all("/" not in c.name for c in cells)  # names are file names


def test_large_cells_are_in_the_full_matrix_only():
    """READ_HANDLER missing and fixed at LARGE's size, keepalive off, last; never in the
    quick or default matrix, even when --only shape=large names them."""
    large = [c for c in build_matrix(full=True) if c.shape == "large"]
    assert build_matrix(full=True)[-2:] == large
    assert [(c.read_handler, c.keepalive, c.large) for c in large] == [
        ("missing", KEEPALIVE_OFF, LARGE), ("fixed", KEEPALIVE_OFF, LARGE),
    ]  # fmt: skip
    assert {(c.ws_impl, c.ping_kind) for c in large} == {("websockets-sansio", "message")}
    for scope in ("quick", "default"):
        assert all(c.shape != "large" for c in STORY.matrix(scope))
        assert STORY.matrix(scope, {"shape": ("large",)}) == []
    assert STORY.matrix("full", parse_only(["shape=large"], [STORY])) == large
    assert build_matrix(full=True, shapes=("large",), ping_kinds=("control",)) == []


def test_large_size_is_bounded():
    """10,000 clients sending 1 KiB every 2 s each, a ramp of 50 s, 20 s past it; what the
    missing handler leaves unread stays well under 1 GB, also with a ramp twice as long."""
    assert (LARGE.clients, LARGE.size_bytes, LARGE.interval_s) == (10_000, 1024, 2.0)
    assert (LARGE.ramp_s, LARGE.duration_s, LARGE.max_duration_s) == (50.0, 70.0, 120.0)
    assert LARGE.sent_bytes == 10_000 * 512 * (50 + 20)
    assert LARGE.sent_bytes < 0.4e9
    small = Large(clients=100, ramp_per_s=50, steady_s=10, size_bytes=10)
    assert small.sent_bytes == 100 * 10 * (2 + 10)


def test_large_cells_swarm_has_their_size_not_the_labs_load():
    cell = Cell("fixed", KEEPALIVE_OFF, shape="large", large=LARGE)
    options = LabOptions(duration_s=10, clients=20, interval_s=0.1, size_bytes=4096)
    config = swarm_config(cell, options, "ws://127.0.0.1:8000/ws")
    assert (config.clients, config.ramp_per_s, config.interval_s, config.size_bytes) == (
        10_000, 200.0, 2.0, 1024,
    )  # fmt: skip
    assert config.duration_s == LARGE.max_duration_s  # the lab stops it 20 s after the ramp
    assert config.client_keepalive_s is None and not config.compression
    assert config.churn_every_s is None and config.subscribe == (NEVER_PUBLISHED,)


def test_large_cells_name_their_size():
    cell = Cell("missing", KEEPALIVE_OFF, shape="large", large=LARGE)
    assert cell.name == "large_missing_keepalive-off_websockets-sansio_message"
    assert cell.label.startswith("large: 10,000 clients x 1024 B every 2 s, READ_HANDLER=missing")
    assert cell.settings()["shape"] == "large" and cell.settings()["large"] == "10000x1024B-2s"


@pytest.mark.parametrize(
    ("cell", "verdict"),
    [
        (Cell("missing", KEEPALIVE_OFF), "leak"),
        (Cell("missing", KEEPALIVE_DEFAULT), "masked"),
        (Cell("missing", KEEPALIVE_SHORT), "masked"),
        (Cell("fixed", KEEPALIVE_OFF), "healthy"),
        (Cell("fixed", KEEPALIVE_DEFAULT), "healthy"),
        (Cell("missing", KEEPALIVE_OFF, "wsproto"), "leak"),
        (Cell("missing", KEEPALIVE_OFF, ping_kind="control"), "healthy"),
        (Cell("missing", KEEPALIVE_DEFAULT, "websockets", "control"), "healthy"),
        (Cell("missing", KEEPALIVE_OFF, shape="churn", churn=CHURN_QUICK), "leak"),
        (Cell("fixed", KEEPALIVE_OFF, shape="churn", churn=CHURN_QUICK), "healthy"),
        # Keepalive resets the departed clients' sockets; their sessions stay registered.
        (Cell("missing", KEEPALIVE_DEFAULT, shape="churn", churn=CHURN_DEFAULT), "leak"),
        (Cell("fixed", KEEPALIVE_DEFAULT, shape="churn", churn=CHURN_DEFAULT), "healthy"),
        (Cell("missing", KEEPALIVE_OFF, shape="large", large=LARGE), "leak"),
        (Cell("fixed", KEEPALIVE_OFF, shape="large", large=LARGE), "healthy"),
    ],
    ids=lambda v: v.name if isinstance(v, Cell) else v,
)
def test_expected_verdict(cell, verdict):
    assert expected_verdict(cell) == verdict


@pytest.mark.parametrize("cell", ALL_CELLS, ids=lambda c: c.name)
def test_cell_settings_configure_the_service(cell):
    """Every cell's settings survive the trip through the env and mean what the cell says."""
    settings = settings_from_env(render_env(service_settings(cell, LabOptions())))
    assert settings.read_handler == cell.read_handler
    assert settings.ws_impl == cell.ws_impl
    assert settings.ws_ping_interval_s == cell.keepalive.interval_s
    assert settings.ws_ping_timeout_s == cell.keepalive.timeout_s


def test_vanished_clients_leak_unless_keepalive_finds_them(monkeypatch):
    """A reader cannot see a client that sends nothing; where root is missing: unknown."""
    off, on = (
        Cell("fixed", KEEPALIVE_OFF, shape="vanished"),
        Cell("fixed", KEEPALIVE_SHORT, shape="vanished"),
    )
    monkeypatch.setattr("os.geteuid", lambda: 0)
    assert (expected_verdict(off), expected_verdict(on)) == ("leak", "healthy")
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    assert (expected_verdict(off), expected_verdict(on)) == ("unknown", "unknown")


def test_settings_are_the_cell_axes():
    cell = Cell("fixed", KEEPALIVE_SHORT, "wsproto", "control")
    assert cell.settings() == {
        "read_handler": "fixed", "keepalive": "2s/2s", "ws_impl": "wsproto", "ping_kind": "control",
        "shape": "static",
    }  # fmt: skip
    churn = Cell("missing", KEEPALIVE_OFF, shape="churn", churn=CHURN_QUICK)
    assert churn.settings()["shape"] == "churn" and churn.settings()["churn"] == "4/1s-4s"
    assert churn.name.startswith("churn_") and churn.label.startswith("churn 4 every 1 s for 4 s")


def test_demo_runs_the_quick_default_matrix():
    """The README's main command: churn first, then leak, masked by short keepalive, and the
    fix with both."""
    assert STORY.matrix("quick") == build_matrix(quick=True)
    assert [(c.shape, c.read_handler, c.keepalive) for c in STORY.matrix("quick")] == [
        ("churn", "missing", KEEPALIVE_OFF), ("churn", "fixed", KEEPALIVE_OFF),
        ("static", "missing", KEEPALIVE_OFF), ("static", "missing", KEEPALIVE_SHORT),
        ("static", "fixed", KEEPALIVE_OFF), ("static", "fixed", KEEPALIVE_SHORT),
    ]  # fmt: skip
    assert {c.churn for c in STORY.matrix("quick")} == {CHURN_QUICK, None}
    assert [STORY.expected(c) for c in STORY.matrix("quick")] == [
        "leak", "healthy", "leak", "masked", "healthy", "healthy"
    ]  # fmt: skip


def test_axes_can_be_chosen_one_by_one():
    """--only ws_impl= and ping_kind= pick those axes; READ_HANDLER x keepalive stays whole."""
    cells = build_matrix(quick=True, ws_impls=("wsproto",), ping_kinds=("message", "control"))
    assert len(cells) == 2 + 8
    assert {c.ws_impl for c in cells} == {"wsproto"}
    assert [c.ping_kind for c in static(cells)[::4]] == ["message", "control"]
    assert build_matrix(quick=True, ping_kinds=("control",)) == static(
        build_matrix(quick=True, ping_kinds=("control",))
    )  # control pings never pile up: no churn cell
    assert [c.shape for c in build_matrix(shapes=("vanished", "churn"))] == ["churn"] * 2 + [
        "vanished"
    ] * 2
    legacy = build_matrix(full=True, ws_impls=("websockets",))
    # Vanished and large cells run on the first WebSocket implementation chosen.
    assert [c for c in legacy if c.shape not in ("vanished", "large")] == [
        c for c in build_matrix(full=True) if c.ws_impl == "websockets"
    ]
    assert {c.ws_impl for c in legacy if c.shape in ("vanished", "large")} == {"websockets"}


def test_only_options_are_parsed_in_order_without_repeats():
    only = parse_only(["ws_impl=wsproto, websockets,wsproto"], [STORY])
    assert only == {"ws_impl": ("wsproto", "websockets")}
    cells = static(STORY.matrix("quick", only))
    assert [c.ws_impl for c in cells][::4] == ["wsproto", "websockets"]
    assert parse_only(["shape=churn"], [STORY]) == {"shape": ("churn",)}
    assert {c.shape for c in STORY.matrix("quick", {"shape": ("churn",)})} == {"churn"}
    for bad in ("ws_impl=h2", "ws_impl=", "ws_impl= , ", "colour=red", "ws_impl"):
        with pytest.raises(ValueError, match="--only"):
            parse_only([bad], [STORY])
