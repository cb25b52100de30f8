"""Tests for leakguard.options: which tests are guarded and how, from literal values."""

import pytest

from leakguard.allow import AllowList
from leakguard.options import GuardOptions, allow_from_ini, normalize_args, resolve

BASE = AllowList(threads=("ini-*",))


def test_off_without_option_marker_or_fixture() -> None:
    """Nothing asked: not guarded."""
    assert resolve(None, None, requested=False, allow=BASE) is None


def test_session_mode_applies_to_every_test() -> None:
    """--leak-guard=warn guards an unmarked test in warn mode."""
    assert resolve("warn", None, requested=False, allow=BASE) == GuardOptions("warn", BASE)


def test_marker_or_fixture_turns_it_on_in_fail_mode() -> None:
    """A bare marker, or the fixture, guards one test and fails it on a leak."""
    assert resolve(None, {}, requested=False, allow=BASE) == GuardOptions("fail", BASE)
    assert resolve(None, None, requested=True, allow=BASE) == GuardOptions("fail", BASE)


def test_marker_switches_off_sets_mode_ignores_and_allows() -> None:
    """off=True wins; mode overrides the session's; allow_* add to the ini's."""
    assert resolve("fail", {"off": True}, requested=True, allow=BASE) is None
    options = resolve(
        "fail", {"mode": "warn", "ignore": ["threads"], "allow_fds": "/dev/shm/*"}, False, BASE
    )
    assert options == GuardOptions(
        "warn", BASE + AllowList(fds=("/dev/shm/*",)), frozenset({"threads"})
    )


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        ({"allow_everything": True}, "unknown argument"),
        ({"mode": "loud"}, "mode must be"),
        ({"ignore": ["sockets"]}, "ignore takes kinds"),
        ({"allow_threads": 3}, "takes a string or a list"),
    ],
)
def test_bad_marker_arguments_are_refused(marker: dict[str, object], message: str) -> None:
    """Typos do not silently switch the guard off."""
    with pytest.raises(ValueError, match=message):
        resolve(None, marker, requested=False, allow=BASE)


def test_allow_from_ini_reads_each_kind() -> None:
    """leak_guard_allow_<kind> lines become that kind's patterns."""
    ini = {"leak_guard_allow_tasks": ["serve"], "leak_guard_allow_sockets": ["*:5672"]}
    allow = allow_from_ini(lambda name: ini.get(name, []))
    assert (allow.tasks, allow.sockets, allow.threads) == (("serve",), ("*:5672",), ())


def test_a_bare_option_is_spelled_with_its_value() -> None:
    """So that argparse does not take the next argument as the mode."""
    assert normalize_args(["--leak-guard", "tests/"]) == ["--leak-guard=fail", "tests/"]
    assert normalize_args(["--leak-guard=warn", "-q"]) == ["--leak-guard=warn", "-q"]
