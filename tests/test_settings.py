"""Tests for event_service.settings: defaults, spellings, and errors that name the variable."""

import pytest

from event_service.settings import Settings, SettingsError, settings_from_env


def test_empty_environment_gives_the_defaults():
    settings = settings_from_env({})
    assert settings == Settings()
    assert (settings.host, settings.port, settings.read_handler) == ("127.0.0.1", 8000, False)
    assert settings.amqp_url is None and settings.source_name == "embedded"
    assert settings.ws_ping_interval_s is None and settings.ws_ping_timeout_s is None


@pytest.mark.parametrize("value", ["off", "missing", "false", "0", "no", "OFF", " Missing "])
def test_read_handler_off_spellings_mean_no_reader(value):
    settings = settings_from_env({"READ_HANDLER": value})
    assert settings.read_handler is False and settings.read_handler_name == "missing"


@pytest.mark.parametrize("value", ["on", "fixed", "true", "1", "yes", "ON", "Fixed", "TRUE"])
def test_read_handler_on_spellings_mean_a_reader(value):
    settings = settings_from_env({"READ_HANDLER": value})
    assert settings.read_handler is True and settings.read_handler_name == "fixed"


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
        ("READ_HANDLER", "maybe", "off, missing"),
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
        ("AMQP_EXCHANGE", "has space", "1-127 characters of letters, digits"),
        ("AMQP_EXCHANGE", "amq.fanout", "not starting with amq."),
        ("AMQP_EXCHANGE", "x" * 128, "1-127 characters"),
        ("AMQP_QUEUE_EXPIRES", "5", "an integer from 10 to 86400"),
        ("AMQP_QUEUE_EXPIRES", "5m", "an integer from 10 to 86400"),
        ("EVENT_MAX_BYTES", "100", "an integer from 256 to 16777216"),
        ("EVENT_MAX_BYTES", "64KiB", "an integer from 256 to 16777216"),
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
