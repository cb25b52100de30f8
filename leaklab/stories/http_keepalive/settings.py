"""Settings of the story's two programs, the callee and the caller, rendered and parsed here.

Both serve on loopback only: on ``LISTEN_FD`` (a socket the launcher bound, as the lab does)
or else on ``127.0.0.1:PORT`` (8001 for the callee, 8002 for the caller, for trying them by
hand). The lab builds a :class:`CalleeSettings` or :class:`CallerSettings` for each child
and renders it once (:func:`render_env`); the child parses its environment once
(:func:`callee_from_env`, :func:`caller_from_env`). Parsing is pure and raises
:class:`SettingsError` naming the variable.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

__all__ = [
    "CLIENTS",
    "CONNECTIONS",
    "CalleeSettings",
    "CallerSettings",
    "SettingsError",
    "callee_from_env",
    "caller_from_env",
    "render_env",
]

# How the caller makes its upstream client (see :mod:`.upstream`).
CLIENTS = ("unclosed", "closed", "shared", "dropped")
# What the callee's /hello answers in its Connection header.
CONNECTIONS = ("keep-alive", "close")
LOG_LEVELS = ("debug", "info", "warning", "error")


class SettingsError(ValueError):
    """A setting has a value the program cannot run with."""


@dataclasses.dataclass(frozen=True)
class CalleeSettings:
    """The callee: /hello on a socket the launcher bound, uvicorn's keep-alive timeout."""

    listen_fd: int | None = None  # None: bind 127.0.0.1:port
    port: int = 8001
    keep_alive_s: int = 5  # uvicorn's default timeout_keep_alive (whole seconds, as uvicorn)
    connection: str = "keep-alive"
    log_level: str = "info"


@dataclasses.dataclass(frozen=True)
class CallerSettings:
    """The caller: /forward to the callee's /hello with a client made the ``client`` way."""

    listen_fd: int | None = None  # None: bind 127.0.0.1:port
    port: int = 8002
    callee_url: str = "http://127.0.0.1:8001"
    client: str = "unclosed"
    upstream_timeout_s: float = 5.0
    log_level: str = "info"


def render_env(settings: CalleeSettings | CallerSettings) -> dict[str, str]:
    """The environment that the matching ``*_from_env`` turns back into ``settings``."""
    env = {"PORT": str(settings.port), "LOG_LEVEL": settings.log_level}
    if settings.listen_fd is not None:
        env["LISTEN_FD"] = str(settings.listen_fd)
    if isinstance(settings, CalleeSettings):
        env |= {"KEEP_ALIVE": str(settings.keep_alive_s), "CONNECTION": settings.connection}
    else:
        env |= {
            "CALLEE_URL": settings.callee_url,
            "CLIENT": settings.client,
            "UPSTREAM_TIMEOUT": repr(settings.upstream_timeout_s),
        }
    return env


def callee_from_env(env: Mapping[str, str]) -> CalleeSettings:
    """The callee's settings from ``LISTEN_FD`` or ``PORT``, ``KEEP_ALIVE``, ``CONNECTION``."""
    return CalleeSettings(
        listen_fd=_fd(env),
        port=_port(env, CalleeSettings.port),
        keep_alive_s=_whole_seconds(env, "KEEP_ALIVE", CalleeSettings.keep_alive_s),
        connection=_choice(env, "CONNECTION", CONNECTIONS, CalleeSettings.connection),
        log_level=_choice(env, "LOG_LEVEL", LOG_LEVELS, CalleeSettings.log_level),
    )


def caller_from_env(env: Mapping[str, str]) -> CallerSettings:
    """The caller's settings from ``LISTEN_FD`` or ``PORT``, ``CALLEE_URL``, ``CLIENT``..."""
    url = env.get("CALLEE_URL", CallerSettings.callee_url)
    if not url.startswith("http://"):
        raise SettingsError(f"CALLEE_URL must be an http:// URL, not {url!r}")
    return CallerSettings(
        listen_fd=_fd(env),
        port=_port(env, CallerSettings.port),
        callee_url=url,
        client=_choice(env, "CLIENT", CLIENTS, CallerSettings.client),
        upstream_timeout_s=_seconds(env, "UPSTREAM_TIMEOUT", CallerSettings.upstream_timeout_s),
        log_level=_choice(env, "LOG_LEVEL", LOG_LEVELS, CallerSettings.log_level),
    )


def _fd(env: Mapping[str, str]) -> int | None:
    text = env.get("LISTEN_FD")
    if text is None:
        return None
    if not text.isdigit():
        raise SettingsError(f"LISTEN_FD must be the number of a listening socket, not {text!r}")
    return int(text)


def _port(env: Mapping[str, str], default: int) -> int:
    text = env.get("PORT")
    if text is None:
        return default
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise SettingsError(f"PORT must be a TCP port number, not {text!r}")
    return int(text)


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    text = env.get(name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        raise SettingsError(f"{name} must be seconds, not {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise SettingsError(f"{name} must be a positive number of seconds, not {text!r}")
    return value


def _whole_seconds(env: Mapping[str, str], name: str, default: int) -> int:
    text = env.get(name)
    if text is None:
        return default
    if not text.isdigit() or int(text) == 0:
        raise SettingsError(f"{name} must be a positive whole number of seconds, not {text!r}")
    return int(text)


def _choice(env: Mapping[str, str], name: str, valid: tuple[str, ...], default: str) -> str:
    value = env.get(name, default)
    if value not in valid:
        raise SettingsError(f"{name} must be one of {', '.join(valid)}, not {value!r}")
    return value
