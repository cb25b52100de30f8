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

ENV_VARS = (
    "HOST", "PORT", "READ_HANDLER", "AMQP_URL", "EVENT_RATE", "WS_IMPL", "WS_PING_INTERVAL",
    "WS_PING_TIMEOUT", "QUEUE_SIZE", "AMQP_PREFETCH", "LOG_LEVEL", "AMQP_EXCHANGE",
    "AMQP_QUEUE_EXPIRES", "EVENT_MAX_BYTES",
)  # fmt: skip
WS_IMPLS = ("websockets-sansio", "wsproto", "websockets")
LOG_LEVELS = ("debug", "info", "warning", "error")
# AMQP names of our own: a short string of safe characters; "amq." is reserved by the broker.
_EXCHANGE_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,127}$")

_READ_HANDLER_VALUES = {
    "off": False, "missing": False, "false": False, "0": False, "no": False,
    "on": True, "fixed": True, "true": True, "1": True, "yes": True,
}  # fmt: skip


class SettingsError(ValueError):
    """A setting has a value the service cannot run with."""


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything the service needs to start, in plain values with units in the names."""

    host: str = "127.0.0.1"
    port: int = 8000
    read_handler: bool = False
    amqp_url: str | None = None
    event_rate: float = 1.0
    ws_impl: str = "websockets-sansio"
    ws_ping_interval_s: float | None = None
    ws_ping_timeout_s: float | None = None
    queue_size: int = 256
    amqp_prefetch: int = 64
    log_level: str = "info"
    amqp_exchange: str = "events"
    amqp_queue_expires_s: int = 300
    event_max_bytes: int = 65536

    @property
    def read_handler_name(self) -> str:
        """``fixed`` when a reader drains client messages, ``missing`` when none does."""
        return "fixed" if self.read_handler else "missing"

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
        read_handler=_read_handler(env.get("READ_HANDLER") or "off"),
        amqp_url=_amqp_url(env.get("AMQP_URL", "")),
        event_rate=_float(env, "EVENT_RATE", defaults.event_rate, low=0.0, high=100_000.0),
        ws_impl=_choice(env, "WS_IMPL", defaults.ws_impl, WS_IMPLS),
        ws_ping_interval_s=_seconds_or_off(env, "WS_PING_INTERVAL"),
        ws_ping_timeout_s=_seconds_or_off(env, "WS_PING_TIMEOUT"),
        queue_size=_int(env, "QUEUE_SIZE", defaults.queue_size, low=1, high=1_000_000),
        amqp_prefetch=_int(env, "AMQP_PREFETCH", defaults.amqp_prefetch, low=1, high=65535),
        log_level=_choice(env, "LOG_LEVEL", defaults.log_level, LOG_LEVELS),
        amqp_exchange=_exchange(env.get("AMQP_EXCHANGE") or defaults.amqp_exchange),
        amqp_queue_expires_s=_int(
            env, "AMQP_QUEUE_EXPIRES", defaults.amqp_queue_expires_s, low=10, high=86_400
        ),
        event_max_bytes=_int(
            env, "EVENT_MAX_BYTES", defaults.event_max_bytes, low=256, high=16 << 20
        ),
    )


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


def _read_handler(value: str) -> bool:
    try:
        return _READ_HANDLER_VALUES[value.strip().lower()]
    except KeyError:
        without = ", ".join(k for k, reads in _READ_HANDLER_VALUES.items() if not reads)
        with_ = ", ".join(k for k, reads in _READ_HANDLER_VALUES.items() if reads)
        raise _fail("READ_HANDLER", value, f"{without} (no reader) or {with_} (reader)") from None


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
