"""Settings of the event service, read once from the environment and validated.

Parsing is pure: :func:`settings_from_env` takes a mapping and returns a frozen
:class:`Settings` or raises :class:`SettingsError` naming the variable and the valid
values. The entry point calls it once; nothing here reads ``os.environ`` at import.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Mapping

from event_service.errors import SettingsError

__all__ = [
    "ENV_VARS",
    "FANOUTS",
    "HTTP_IMPLS",
    "LOG_LEVELS",
    "READ_HANDLERS",
    "WS_IMPLS",
    "Settings",
    "render_env",
    "session_cap",
    "settings_from_env",
]

ENV_VARS = (
    "HOST", "PORT", "LISTEN_FD", "READ_HANDLER", "AMQP_URL", "EVENT_RATE", "WS_IMPL",
    "WS_PING_INTERVAL", "WS_PING_TIMEOUT", "QUEUE_SIZE", "AMQP_PREFETCH", "LOG_LEVEL",
    "MAX_SESSIONS", "SLOW_CONSUMER_BYTES", "EVENT_MAX_BYTES", "PUBLISH_RATE", "ADMIN_TOKEN",
    "WS_TOKEN", "WS_ORIGINS", "WS_MAX_SIZE", "HANDSHAKE_TIMEOUT", "HTTP_IMPL", "AMQP_EXCHANGE",
    "AMQP_QUEUE_EXPIRES", "FANOUT", "FANOUT_WINDOW",
)  # fmt: skip
WS_IMPLS = ("websockets-sansio", "wsproto", "websockets")
HTTP_IMPLS = ("httptools", "h11")
# How the hub hands events to sessions: through ASGI (a writer task per session, the plain
# FastAPI way) or below it, written straight to each connection (event_service/direct_fanout.py).
FANOUTS = ("asgi", "direct")
# The batching window is a few milliseconds at most: an event may wait that long.
FANOUT_WINDOW_MAX_S = 0.02
LOG_LEVELS = ("debug", "info", "warning", "error")
# AMQP names of our own: a short string of safe characters; "amq." is reserved by the broker.
_EXCHANGE_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,127}$")

READ_HANDLERS = ("missing", "fixed")
# The toggle has one name everywhere (missing / fixed); these spellings are accepted in the
# environment only.
_READ_HANDLER_ALIASES = {
    "missing": "missing", "off": "missing", "false": "missing", "0": "missing", "no": "missing",
    "fixed": "fixed", "on": "fixed", "true": "fixed", "1": "fixed", "yes": "fixed",
}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything the service needs to start, in plain values with units in the names."""

    host: str = "127.0.0.1"
    port: int = 8000
    # An fd already listening (a launcher that chose the port itself); None: bind host:port.
    listen_fd: int | None = None
    read_handler: str = "missing"
    amqp_url: str | None = None
    event_rate: float = 1.0
    ws_impl: str = "websockets-sansio"
    ws_ping_interval_s: float | None = None
    ws_ping_timeout_s: float | None = None
    queue_size: int = 256
    amqp_prefetch: int = 64
    log_level: str = "info"
    # None: derived from the fd limit at start-up (see :func:`session_cap`).
    max_sessions: int | None = None
    slow_consumer_bytes: int = 1 << 20
    event_max_bytes: int = 65536
    publish_rate_per_s: float = 50.0
    # Secrets stay out of reprs and logs.
    admin_token: str | None = dataclasses.field(default=None, repr=False)
    ws_token: str | None = dataclasses.field(default=None, repr=False)
    # None: any Origin (and none) may open /ws.
    ws_origins: frozenset[str] | None = None
    # Client messages are read only to be discarded: 64 KiB is plenty (uvicorn's is 16 MiB).
    ws_max_size_bytes: int = 65536
    handshake_timeout_s: float = 10.0
    http_impl: str = "httptools"
    amqp_exchange: str = "events"
    amqp_queue_expires_s: int = 300
    fanout: str = "direct"
    # The direct fan-out writes a batch at least this long after the previous one: events
    # closer together, or piling up behind a long write, share one write per subscriber
    # (0: only those published in the same loop iteration). Events far apart never wait.
    fanout_window_s: float = 0.001

    @property
    def source_name(self) -> str:
        """Which event source runs: ``rabbitmq`` or ``embedded``."""
        return "rabbitmq" if self.amqp_url else "embedded"


def settings_from_env(env: Mapping[str, str]) -> Settings:
    """Build :class:`Settings` from environment variables; raise :class:`SettingsError`."""
    defaults = Settings()
    return Settings(
        host=_host(env.get("HOST") or defaults.host),
        port=_int(env, "PORT", defaults.port, low=0, high=65535),
        listen_fd=_int_or_auto(env, "LISTEN_FD", low=0, high=1_000_000),
        read_handler=_read_handler(env.get("READ_HANDLER") or defaults.read_handler),
        amqp_url=_amqp_url(env.get("AMQP_URL", "")),
        event_rate=_float(env, "EVENT_RATE", defaults.event_rate, low=0.0, high=100_000.0),
        ws_impl=_choice(env, "WS_IMPL", defaults.ws_impl, WS_IMPLS),
        ws_ping_interval_s=_seconds_or_off(env, "WS_PING_INTERVAL"),
        ws_ping_timeout_s=_seconds_or_off(env, "WS_PING_TIMEOUT"),
        queue_size=_int(env, "QUEUE_SIZE", defaults.queue_size, low=1, high=1_000_000),
        amqp_prefetch=_int(env, "AMQP_PREFETCH", defaults.amqp_prefetch, low=1, high=65535),
        log_level=_choice(env, "LOG_LEVEL", defaults.log_level, LOG_LEVELS),
        max_sessions=_int_or_auto(env, "MAX_SESSIONS", low=1, high=10_000_000),
        slow_consumer_bytes=_int(
            env, "SLOW_CONSUMER_BYTES", defaults.slow_consumer_bytes, low=1024, high=1 << 30
        ),
        event_max_bytes=_int(
            env, "EVENT_MAX_BYTES", defaults.event_max_bytes, low=256, high=16 << 20
        ),
        publish_rate_per_s=_float(
            env, "PUBLISH_RATE", defaults.publish_rate_per_s, low=0.0, high=1_000_000.0
        ),
        admin_token=_token(env, "ADMIN_TOKEN"),
        ws_token=_token(env, "WS_TOKEN"),
        ws_origins=_origins(env.get("WS_ORIGINS", "")),
        ws_max_size_bytes=_int(
            env, "WS_MAX_SIZE", defaults.ws_max_size_bytes, low=1024, high=16 << 20
        ),
        handshake_timeout_s=_float(
            env, "HANDSHAKE_TIMEOUT", defaults.handshake_timeout_s, low=0.1, high=3600.0
        ),
        http_impl=_choice(env, "HTTP_IMPL", defaults.http_impl, HTTP_IMPLS),
        amqp_exchange=_exchange(env.get("AMQP_EXCHANGE") or defaults.amqp_exchange),
        amqp_queue_expires_s=_int(
            env, "AMQP_QUEUE_EXPIRES", defaults.amqp_queue_expires_s, low=10, high=86_400
        ),
        fanout=_choice(env, "FANOUT", defaults.fanout, FANOUTS),
        fanout_window_s=_float(
            env, "FANOUT_WINDOW", defaults.fanout_window_s, low=0.0, high=FANOUT_WINDOW_MAX_S
        ),
    )


def render_env(settings: Settings) -> dict[str, str]:
    """The environment that :func:`settings_from_env` turns back into ``settings``.

    A launcher builds :class:`Settings` for its child and renders them once, here; nothing
    else spells the service's variables.
    """

    def seconds(value: float | None) -> str:
        return "off" if value is None else repr(value)

    env = {
        "HOST": settings.host,
        "PORT": str(settings.port),
        "LISTEN_FD": "" if settings.listen_fd is None else str(settings.listen_fd),
        "READ_HANDLER": settings.read_handler,
        "AMQP_URL": settings.amqp_url or "",
        "EVENT_RATE": repr(settings.event_rate),
        "WS_IMPL": settings.ws_impl,
        "WS_PING_INTERVAL": seconds(settings.ws_ping_interval_s),
        "WS_PING_TIMEOUT": seconds(settings.ws_ping_timeout_s),
        "QUEUE_SIZE": str(settings.queue_size),
        "AMQP_PREFETCH": str(settings.amqp_prefetch),
        "LOG_LEVEL": settings.log_level,
        "MAX_SESSIONS": "auto" if settings.max_sessions is None else str(settings.max_sessions),
        "SLOW_CONSUMER_BYTES": str(settings.slow_consumer_bytes),
        "EVENT_MAX_BYTES": str(settings.event_max_bytes),
        "PUBLISH_RATE": repr(settings.publish_rate_per_s),
        "ADMIN_TOKEN": settings.admin_token or "",
        "WS_TOKEN": settings.ws_token or "",
        "WS_ORIGINS": ",".join(sorted(settings.ws_origins or ())),
        "WS_MAX_SIZE": str(settings.ws_max_size_bytes),
        "HANDSHAKE_TIMEOUT": repr(settings.handshake_timeout_s),
        "HTTP_IMPL": settings.http_impl,
        "AMQP_EXCHANGE": settings.amqp_exchange,
        "AMQP_QUEUE_EXPIRES": str(settings.amqp_queue_expires_s),
        "FANOUT": settings.fanout,
        "FANOUT_WINDOW": repr(settings.fanout_window_s),
    }
    return {name: value for name, value in env.items() if value != ""}


# Room kept for what is not a session: the listening socket, HTTP requests, the broker,
# logs, /proc reads. A fifth of the limit, at least 32 fds.
_FD_RESERVE_FRACTION = 0.2
_FD_RESERVE_MIN = 32


def session_cap(settings: Settings, fd_limit: int) -> int:
    """Most WebSocket sessions at once: ``MAX_SESSIONS``, or what the fd limit leaves room for.

    Each session holds one fd; the rest of the limit is kept so that ``/healthz``, ``/stats``
    and ``/metrics`` still answer when the sessions are at their cap.
    """
    if settings.max_sessions is not None:
        return settings.max_sessions
    reserve = max(_FD_RESERVE_MIN, int(fd_limit * _FD_RESERVE_FRACTION))
    return max(1, fd_limit - reserve)


def _fail(name: str, value: str, valid: str) -> SettingsError:
    return SettingsError(f"invalid {name}={value!r}: expected {valid}")


def _host(value: str) -> str:
    value = value.strip()
    if value.lower() == "localhost":
        return "localhost"
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise _fail("HOST", value, "an IP address such as 127.0.0.1, ::1 or 0.0.0.0") from None
    return value


def _read_handler(value: str) -> str:
    try:
        return _READ_HANDLER_ALIASES[value.strip().lower()]
    except KeyError:
        spellings = {
            name: ", ".join(k for k, v in _READ_HANDLER_ALIASES.items() if v == name)
            for name in READ_HANDLERS
        }
        raise _fail(
            "READ_HANDLER", value, f"{spellings['missing']} (no reader) or {spellings['fixed']}"
        ) from None


def _amqp_url(value: str) -> str | None:
    value = value.strip()
    if not value:
        return None
    if not value.startswith(("amqp://", "amqps://")):
        raise _fail(
            "AMQP_URL", value, "an amqp:// or amqps:// URL, or unset for the embedded source"
        )
    return value


def _exchange(value: str) -> str:
    name = value.strip()
    if not _EXCHANGE_RE.match(name) or name.startswith("amq."):
        raise _fail(
            "AMQP_EXCHANGE",
            value,
            "1-127 characters of letters, digits and _ . : -, not starting with amq.",
        )
    return name


def _int(env: Mapping[str, str], name: str, default: int, *, low: int, high: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise _fail(name, raw, f"an integer from {low} to {high}") from None
    if not low <= value <= high:
        raise _fail(name, raw, f"an integer from {low} to {high}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, *, low: float, high: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw.strip())
    except ValueError:
        raise _fail(name, raw, f"a number from {low:g} to {high:g}") from None
    if not low <= value <= high:
        raise _fail(name, raw, f"a number from {low:g} to {high:g}")
    return value


def _int_or_auto(env: Mapping[str, str], name: str, *, low: int, high: int) -> int | None:
    raw = env.get(name, "")
    if raw.strip().lower() in ("", "auto"):
        return None
    return _int(env, name, 0, low=low, high=high)


def _token(env: Mapping[str, str], name: str) -> str | None:
    raw = env.get(name, "")
    if raw == "":
        return None
    if len(raw) < 16 or not raw.isprintable() or raw != raw.strip():
        # The value is a secret: the error names the rule, never the value.
        raise SettingsError(
            f"invalid {name}: expected at least 16 printable characters without spaces "
            "at either end, or unset"
        )
    return raw


def _origins(value: str) -> frozenset[str] | None:
    origins = [part.strip().rstrip("/").lower() for part in value.split(",") if part.strip()]
    if not origins:
        return None
    for origin in origins:
        scheme, sep, rest = origin.partition("://")
        if origin != "null" and (not sep or scheme not in ("http", "https") or not rest):
            raise _fail(
                "WS_ORIGINS", value, "comma-separated origins such as https://app.example.com"
            )
    return frozenset(origins)


def _seconds_or_off(env: Mapping[str, str], name: str) -> float | None:
    """Keepalive seconds; ``0`` or ``off`` (the default) disables keepalive."""
    raw = env.get(name, "off")
    if raw.strip().lower() in ("", "0", "off", "none"):
        return None
    try:
        value = float(raw.strip())
    except ValueError:
        raise _fail(name, raw, "a number of seconds > 0, or 0 / off to disable keepalive") from None
    if not 0 < value <= 86_400:
        raise _fail(name, raw, "a number of seconds > 0, or 0 / off to disable keepalive")
    return value


def _choice(env: Mapping[str, str], name: str, default: str, valid: tuple[str, ...]) -> str:
    raw = env.get(name) or default
    value = raw.strip().lower()
    if value not in valid:
        raise _fail(name, raw, ", ".join(valid))
    return value
