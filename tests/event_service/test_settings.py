"""Tests for event_service.settings: defaults, spellings, and errors that name the variable."""

import pytest

from event_service.settings import (
    ENV_VARS,
    Settings,
    SettingsError,
    render_env,
    session_cap,
    settings_from_env,
)


def test_empty_environment_gives_the_defaults():
    settings = settings_from_env({})
    assert settings == Settings()
    assert (settings.host, settings.port, settings.read_handler) == ("127.0.0.1", 8000, "missing")
    assert settings.amqp_url is None and settings.source_name == "embedded"
    assert settings.ws_ping_interval_s is None and settings.ws_ping_timeout_s is None


@pytest.mark.parametrize("value", ["off", "missing", "false", "0", "no", "OFF", " Missing "])
def test_read_handler_off_spellings_mean_no_reader(value):
    settings = settings_from_env({"READ_HANDLER": value})
    assert settings.read_handler == "missing"


@pytest.mark.parametrize("value", ["on", "fixed", "true", "1", "yes", "ON", "Fixed", "TRUE"])
def test_read_handler_on_spellings_mean_a_reader(value):
    settings = settings_from_env({"READ_HANDLER": value})
    assert settings.read_handler == "fixed"


@pytest.mark.parametrize("name", ["WS_PING_INTERVAL", "WS_PING_TIMEOUT"])
@pytest.mark.parametrize(("raw", "expected"), [("0", None), ("off", None), ("1.5", 1.5)])
def test_keepalive_seconds_or_off(name, raw, expected):
    settings = settings_from_env({name: raw})
    value = (
        settings.ws_ping_interval_s if name == "WS_PING_INTERVAL" else settings.ws_ping_timeout_s
    )
    assert value == expected


@pytest.mark.parametrize(
    ("name", "raw", "valid"),
    [
        ("HOST", "example.com", "an IP address"),
        ("PORT", "65536", "an integer from 0 to 65535"),
        ("PORT", "http", "an integer from 0 to 65535"),
        ("READ_HANDLER", "maybe", "missing, off"),
        ("MAX_SESSIONS", "0", "an integer from 1 to 10000000"),
        ("SLOW_CONSUMER_BYTES", "10", "an integer from 1024"),
        ("EVENT_MAX_BYTES", "big", "an integer from 256"),
        ("PUBLISH_RATE", "-1", "a number from 0"),
        ("WS_ORIGINS", "app.example.com", "comma-separated origins"),
        ("ADMIN_TOKEN", "short", "at least 16 printable characters"),
        ("AMQP_URL", "http://127.0.0.1:5672/", "amqp://"),
        ("EVENT_RATE", "-1", "a number from 0 to 100000"),
        ("EVENT_RATE", "fast", "a number from 0 to 100000"),
        ("WS_IMPL", "uvloop", "websockets-sansio, wsproto, websockets"),
        ("WS_PING_INTERVAL", "-1", "a number of seconds > 0"),
        ("WS_PING_INTERVAL", "soon", "a number of seconds > 0"),
        ("WS_PING_TIMEOUT", "-0.5", "a number of seconds > 0"),
        ("WS_PING_TIMEOUT", "never", "a number of seconds > 0"),
        ("QUEUE_SIZE", "0", "an integer from 1 to 1000000"),
        ("AMQP_PREFETCH", "65536", "an integer from 1 to 65535"),
        ("LOG_LEVEL", "trace", "debug, info, warning, error"),
        ("WS_MAX_SIZE", "100", "an integer from 1024 to 16777216"),
        ("WS_MAX_SIZE", "64k", "an integer from 1024 to 16777216"),
        ("HANDSHAKE_TIMEOUT", "0", "a number from 0.1 to 3600"),
        ("HANDSHAKE_TIMEOUT", "soon", "a number from 0.1 to 3600"),
        ("HTTP_IMPL", "auto", "httptools, h11"),
        ("AMQP_EXCHANGE", "has space", "1-127 characters of letters, digits"),
        ("AMQP_EXCHANGE", "amq.fanout", "not starting with amq."),
        ("AMQP_EXCHANGE", "x" * 128, "1-127 characters"),
        ("AMQP_QUEUE_EXPIRES", "5", "an integer from 10 to 86400"),
        ("AMQP_QUEUE_EXPIRES", "5m", "an integer from 10 to 86400"),
        ("EVENT_MAX_BYTES", "100", "an integer from 256 to 16777216"),
        ("EVENT_MAX_BYTES", "64KiB", "an integer from 256 to 16777216"),
        ("FANOUT", "raw", "asgi, direct"),
        ("FANOUT_WINDOW", "0.5", "a number from 0 to 0.02"),
        ("FANOUT_WINDOW", "-0.001", "a number from 0 to 0.02"),
        ("FANOUT_WINDOW", "1ms", "a number from 0 to 0.02"),
    ],
)
def test_invalid_value_raises_an_error_naming_variable_and_valid_values(name, raw, valid):
    with pytest.raises(SettingsError, match=name) as excinfo:
        settings_from_env({name: raw})
    assert valid in str(excinfo.value)


def test_read_handler_error_lists_every_accepted_spelling():
    with pytest.raises(SettingsError) as excinfo:
        settings_from_env({"READ_HANDLER": "maybe"})
    for spelling in ("off", "missing", "false", "0", "no", "on", "fixed", "true", "1", "yes"):
        assert spelling in str(excinfo.value).replace(",", " ").split()


def test_empty_amqp_url_selects_the_embedded_source():
    assert settings_from_env({"AMQP_URL": ""}).amqp_url is None
    settings = settings_from_env({"AMQP_URL": "amqp://guest:guest@127.0.0.1:5672/"})
    assert settings.source_name == "rabbitmq"


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "0.0.0.0", "localhost"])
def test_host_accepts_ip_addresses_and_localhost(host):
    assert settings_from_env({"HOST": host}).host == host


def test_rendered_settings_parse_back_to_the_same_settings():
    settings = Settings(
        host="::1",
        port=0,
        listen_fd=7,
        read_handler="fixed",
        amqp_url="amqp://guest:guest@127.0.0.1:5672/",
        event_rate=12.5,
        ws_impl="wsproto",
        ws_ping_interval_s=2.0,
        ws_ping_timeout_s=1.5,
        queue_size=17,
        amqp_prefetch=3,
        log_level="warning",
        max_sessions=99,
        slow_consumer_bytes=4096,
        event_max_bytes=1024,
        publish_rate_per_s=0.5,
        admin_token="a-token-of-16-chars",
        ws_token="another-token-16+",
        ws_origins=frozenset({"https://a.example", "http://b.example:8080"}),
        ws_max_size_bytes=2048,
        handshake_timeout_s=2.5,
        http_impl="h11",
        amqp_exchange="events.test",
        amqp_queue_expires_s=60,
        fanout="asgi",
        fanout_window_s=0.0025,
    )
    assert settings_from_env(render_env(settings)) == settings
    assert settings_from_env(render_env(Settings())) == Settings()


def test_rendered_settings_name_only_the_service_variables():
    assert set(render_env(Settings())) <= set(ENV_VARS)


def test_a_bad_token_is_refused_without_echoing_it():
    with pytest.raises(SettingsError) as excinfo:
        settings_from_env({"WS_TOKEN": " padded-secret-value "})
    assert "padded-secret-value" not in str(excinfo.value)


def test_tokens_stay_out_of_the_settings_repr():
    settings = settings_from_env({"ADMIN_TOKEN": "x" * 20, "WS_TOKEN": "y" * 20})
    assert "x" * 20 not in repr(settings) and "y" * 20 not in repr(settings)


def test_session_cap_defaults_to_the_fd_limit_less_a_reserve():
    assert session_cap(Settings(), 1024) == 820
    assert session_cap(Settings(), 100) == 68
    assert session_cap(Settings(max_sessions=7), 1024) == 7


def test_handshake_and_message_limits_default_and_parse():
    defaults = settings_from_env({})
    assert defaults.ws_max_size_bytes == 65536
    assert defaults.handshake_timeout_s == 10.0
    assert defaults.http_impl == "httptools"
    settings = settings_from_env(
        {"WS_MAX_SIZE": "4096", "HANDSHAKE_TIMEOUT": "2.5", "HTTP_IMPL": " H11 "}
    )
    assert (settings.ws_max_size_bytes, settings.handshake_timeout_s) == (4096, 2.5)
    assert settings.http_impl == "h11"


def test_broker_settings_defaults():
    settings = settings_from_env({})
    assert settings.amqp_exchange == "events"
    assert settings.amqp_queue_expires_s == 300
    assert settings.event_max_bytes == 65536


def test_event_size_limit_default_is_the_parsers():
    from event_service.events import MAX_EVENT_BYTES

    assert Settings().event_max_bytes == MAX_EVENT_BYTES


@pytest.mark.parametrize(
    ("env", "field", "expected"),
    [
        ({"AMQP_EXCHANGE": " orders.v2 "}, "amqp_exchange", "orders.v2"),
        ({"AMQP_EXCHANGE": ""}, "amqp_exchange", "events"),
        ({"AMQP_QUEUE_EXPIRES": "60"}, "amqp_queue_expires_s", 60),
        ({"EVENT_MAX_BYTES": "1048576"}, "event_max_bytes", 1048576),
    ],
)
def test_broker_settings_are_parsed(env, field, expected):
    assert getattr(settings_from_env(env), field) == expected


def test_fanout_defaults_to_direct_with_a_window_of_a_millisecond():
    settings = settings_from_env({})
    assert (settings.fanout, settings.fanout_window_s) == ("direct", 0.001)
    settings = settings_from_env({"FANOUT": " ASGI ", "FANOUT_WINDOW": "0"})
    assert (settings.fanout, settings.fanout_window_s) == ("asgi", 0.0)
