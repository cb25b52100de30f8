"""Static checks of the container files: Dockerfile, docker-compose.yml and deploy/.

There is no Docker engine here, so nothing is built or started. Compose itself validates
and resolves the compose file (``docker-compose config``), and everything the files name
(modules, options, settings, routes, metrics) is checked against the packages.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from event_service import publish
from event_service.app import create_app
from event_service.settings import ENV_VARS, Settings, settings_from_env
from ping_client.cli import config_from_args, swarm_parser

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_TOOL = "docker-compose"
PROFILES = ("--profile", "swarm", "--profile", "observability")
MODES = {"event-service-missing": False, "event-service-fixed": True}  # read handler on?
PUBLISHED = {"event-service-missing": "8001", "event-service-fixed": "8002-8004"}
DASHBOARD_METRICS = {
    "event_service_recv_queue_bytes",
    "node_sockstat_TCP_mem_bytes",
    "process_resident_memory_bytes",
    "event_service_connections",
}
COMMAND_PARSERS = {
    "event_service.publish": publish.parse_args,
    "ping_client": lambda argv: config_from_args(swarm_parser().parse_args(argv)).validate(),
}


def run_compose(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the Compose CLI on the project's file, in a clean environment plus ``env``."""
    tool = shutil.which(COMPOSE_TOOL)
    if tool is None:
        pytest.fail(f"{COMPOSE_TOOL} not found: run `make compose-tool` to install it")
    clean = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), **env}
    return subprocess.run(
        [tool, "--project-directory", str(ROOT), "-f", str(ROOT / "docker-compose.yml"), *args],
        capture_output=True, text=True, env=clean, timeout=60, check=False,
    )  # fmt: skip


def resolved_config(**env: str) -> dict:
    """The compose file as Compose resolves it, with every profile and ``env`` interpolated."""
    result = run_compose(*PROFILES, "config", **env)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


@pytest.fixture(scope="module")
def services() -> dict[str, dict]:
    """Services of the resolved compose file, interpolation defaults applied."""
    return resolved_config()["services"]


@pytest.fixture(scope="module")
def lab_services(services: dict[str, dict]) -> dict[str, dict]:
    """Services that run the image built from the Dockerfile."""
    return {name: svc for name, svc in services.items() if "build" in svc}


def parse_dockerfile(text: str) -> list[tuple[str, str]]:
    """Instructions as (KEYWORD, arguments), continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if pending and line.lstrip().startswith("#"):
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        keyword, _, args = pending.strip().partition(" ")
        instructions.append((keyword.upper(), " ".join(args.split())))
        pending = ""
    assert not pending, "Dockerfile ends inside a continuation line"
    return instructions


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    """The parsed Dockerfile."""
    return parse_dockerfile((ROOT / "Dockerfile").read_text())


def dockerfile_env(instructions: list[tuple[str, str]]) -> dict[str, str]:
    """Variables set by ENV instructions (``KEY=value`` form)."""
    return dict(pair.split("=", 1) for kw, args in instructions if kw == "ENV" for pair in args.split())


def healthcheck_url(instructions: list[tuple[str, str]]) -> str:
    """The URL the Dockerfile's HEALTHCHECK fetches."""
    checks = [args for kw, args in instructions if kw == "HEALTHCHECK"]
    assert len(checks) == 1, "expected exactly one HEALTHCHECK"
    match = re.search(r"http://[^\s\"']+", checks[0])
    assert match, f"no http:// URL in HEALTHCHECK {checks[0]!r}"
    return match.group(0)


def published_ports(service: dict) -> list[tuple[str, str, int]]:
    """(host IP, published port or range, container port), short or long Compose syntax."""
    ports = []
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            ports.append((entry.get("host_ip", ""), str(entry["published"]), int(entry["target"])))
        else:
            host_ip, published, target = entry.split("/")[0].rsplit(":", 2)
            ports.append((host_ip, published, int(target)))
    return ports


def container_port(service: dict, instructions: list[tuple[str, str]]) -> int:
    """The port the service listens on: its PORT, else the Dockerfile's."""
    return int(service.get("environment", {}).get("PORT") or dockerfile_env(instructions)["PORT"])


def command_argv(service: dict) -> list[str]:
    """The service's command as an argument list."""
    command = service["command"]
    return shlex.split(command) if isinstance(command, str) else list(command)


def has_healthcheck(service: dict, instructions: list[tuple[str, str]]) -> bool:
    """Whether Compose or the image gives the service a healthcheck that is not disabled."""
    check = service.get("healthcheck")
    if check is not None:
        return not check.get("disable") and check.get("test") not in (["NONE"], None)
    return "build" in service and any(kw == "HEALTHCHECK" for kw, _ in instructions)


def test_compose_file_is_valid() -> None:
    """Compose accepts the file, with the default services and with every profile."""
    for args in ((), PROFILES):
        result = run_compose(*args, "config", "-q")
        assert result.returncode == 0, f"{COMPOSE_TOOL} {' '.join(args)} config -q:\n{result.stderr}"


def test_compose_file_has_no_version_key() -> None:
    """The file follows the Compose specification, which has no top-level version."""
    assert "version" not in yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_env_vars_constant_lists_what_settings_read() -> None:
    """ENV_VARS names exactly the variables settings_from_env looks up."""

    class RecordingEnv(dict):
        seen: set[str] = set()

        def get(self, key, default=None):  # type: ignore[override]
            self.seen.add(key)
            return super().get(key, default)

    settings_from_env(RecordingEnv())
    assert RecordingEnv.seen == set(ENV_VARS)


def test_service_environments_name_only_read_variables(
    lab_services: dict[str, dict], dockerfile: list[tuple[str, str]]
) -> None:
    """Every variable set on a lab container, or by the Dockerfile, is one the code reads."""
    for name, service in lab_services.items():
        assert set(service.get("environment", {})) <= set(ENV_VARS), name
    own = {key for key in dockerfile_env(dockerfile) if not key.startswith(("PYTHON", "PIP_"))}
    assert own <= set(ENV_VARS)


def test_event_service_environments_are_valid_settings(
    lab_services: dict[str, dict], dockerfile: list[tuple[str, str]]
) -> None:
    """Both services start with valid settings, in their mode, on the broker, keepalive off."""
    for name, read_handler in MODES.items():
        env = {**dockerfile_env(dockerfile), **lab_services[name]["environment"]}
        settings = settings_from_env(env)
        assert settings.read_handler is read_handler, name
        assert settings.source_name == "rabbitmq", name
        assert settings.ws_impl == "websockets-sansio", name
        assert settings.ws_ping_interval_s is None and settings.ws_ping_timeout_s is None, name
        assert settings.host == "0.0.0.0", name


def test_read_handler_from_the_shell_does_not_flip_the_modes() -> None:
    """The service name is the mode: READ_HANDLER in the shell is not interpolated."""
    services = resolved_config(READ_HANDLER="on")["services"]
    assert services["event-service-missing"]["environment"]["READ_HANDLER"] == "off"
    assert services["event-service-fixed"]["environment"]["READ_HANDLER"] == "on"


def test_commands_run_modules_that_accept_their_arguments(
    lab_services: dict[str, dict], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each command is `python -m MODULE ...` whose own parser accepts the arguments."""
    commands = {name: svc for name, svc in lab_services.items() if "command" in svc}
    assert {"publisher", "ping-swarm"} <= set(commands)
    for name, service in commands.items():
        python, flag, module, *argv = command_argv(service)
        assert (python, flag) == ("python", "-m"), name
        assert importlib.util.find_spec(module) is not None, f"{name}: no module {module}"
        assert module in COMMAND_PARSERS, f"{name}: no parser known for {module}"
        for key, value in service.get("environment", {}).items():
            monkeypatch.setenv(key, value)
        COMMAND_PARSERS[module](argv)
    publisher_env = lab_services["publisher"]["environment"]
    assert publish.parse_args([]).url == publisher_env["AMQP_URL"] == "amqp://guest:guest@rabbitmq:5672/"


def test_swarm_targets_a_service_port(
    services: dict[str, dict], dockerfile: list[tuple[str, str]]
) -> None:
    """The swarm's URL names a compose service and the port it listens on, by default missing."""
    argv = command_argv(services["ping-swarm"])
    url = urlsplit(argv[argv.index("--url") + 1])
    assert url.hostname == "event-service-missing"
    assert url.port == container_port(services[url.hostname], dockerfile)
    fixed = resolved_config(SWARM_TARGET="event-service-fixed")["services"]["ping-swarm"]
    assert "ws://event-service-fixed:8000/ws" in command_argv(fixed)


def test_published_ports_reach_the_listening_port(
    lab_services: dict[str, dict], dockerfile: list[tuple[str, str]]
) -> None:
    """Host ports forward to the service's port, on loopback only, 8001 missing, 8002+ fixed."""
    for name, published in PUBLISHED.items():
        ports = published_ports(lab_services[name])
        assert ports == [("127.0.0.1", published, container_port(lab_services[name], dockerfile))]
    assert f"EXPOSE {dockerfile_env(dockerfile)['PORT']}" in [f"{kw} {a}" for kw, a in dockerfile]


def test_fixed_service_can_scale_to_three(services: dict[str, dict]) -> None:
    """`--scale event-service-fixed=3` finds three host ports and no fixed container name."""
    fixed = services["event-service-fixed"]
    assert "container_name" not in fixed
    (_, published, _), = published_ports(fixed)
    low, _, high = published.partition("-")
    assert high and int(high) - int(low) + 1 >= 3, f"{published} is not a range of 3 ports"


def test_health_gated_dependencies_have_healthchecks(
    services: dict[str, dict], dockerfile: list[tuple[str, str]]
) -> None:
    """rabbitmq and both services have healthchecks, and every service_healthy waits on one."""
    assert "rabbitmq-diagnostics" in services["rabbitmq"]["healthcheck"]["test"]
    for name in MODES:
        assert has_healthcheck(services[name], dockerfile), name
    for name, service in services.items():
        for dep, how in service.get("depends_on", {}).items():
            if how.get("condition") == "service_healthy":
                assert has_healthcheck(services[dep], dockerfile), f"{name} -> {dep}"
    for name in ("publisher", "ping-swarm"):  # nothing listens there: the image's check fails
        assert not has_healthcheck(services[name], dockerfile), name


def test_dockerfile_uses_slim_python_311_and_known_instructions(
    dockerfile: list[tuple[str, str]],
) -> None:
    """The Dockerfile parses into known instructions on an official slim Python 3.11 image."""
    known = {"FROM", "ENV", "RUN", "WORKDIR", "COPY", "USER", "EXPOSE", "HEALTHCHECK", "CMD", "ARG"}
    assert {kw for kw, _ in dockerfile} <= known
    assert re.fullmatch(r"FROM python:3\.11-slim(-\w+)?", " ".join(dockerfile[0]))


def test_dockerfile_installs_dependencies_before_the_code(dockerfile: list[tuple[str, str]]) -> None:
    """pyproject.toml alone is copied and its dependencies installed before any package code."""
    copies = [(i, args) for i, (kw, args) in enumerate(dockerfile) if kw == "COPY"]
    assert copies[0][1].split()[0] == "pyproject.toml"
    deps = next(i for i, (kw, a) in enumerate(dockerfile) if kw == "RUN" and "-r " in a)
    assert copies[0][0] < deps < copies[1][0]
    for _, args in copies:
        assert all((ROOT / src).exists() for src in args.split()[:-1]), args


def test_dockerfile_runs_as_non_root_before_cmd(dockerfile: list[tuple[str, str]]) -> None:
    """The last USER is neither root nor 0, and it comes before CMD."""
    keywords = [kw for kw, _ in dockerfile]
    users = [args for kw, args in dockerfile if kw == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert max(i for i, kw in enumerate(keywords) if kw == "USER") < keywords.index("CMD")


def test_dockerfile_cmd_starts_the_service(dockerfile: list[tuple[str, str]]) -> None:
    """CMD runs `python -m event_service` in exec form, a module with a main()."""
    cmd = json.loads(next(args for kw, args in dockerfile if kw == "CMD"))
    assert cmd == ["python", "-m", "event_service"]
    assert importlib.util.find_spec("event_service.__main__") is not None
    assert callable(importlib.import_module("event_service.__main__").main)


def test_dockerfile_healthcheck_fetches_a_route(dockerfile: list[tuple[str, str]]) -> None:
    """The HEALTHCHECK asks the service's own port for a route the app serves."""
    url = healthcheck_url(dockerfile).replace("${PORT:-8000}", dockerfile_env(dockerfile)["PORT"])
    parts = urlsplit(url)
    assert (parts.hostname, parts.port) == ("127.0.0.1", 8000)
    assert parts.path in {route.path for route in create_app(Settings()).routes}


@pytest.fixture(scope="module")
def exported_metrics() -> set[str]:
    """Metric names a real service process exports on /metrics."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {"PATH": os.environ["PATH"], "HOST": "127.0.0.1", "PORT": str(port)}
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "event_service"], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, "the service exited"
            try:
                urllib.request.urlopen(f"{base}/healthz", timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the service did not answer /healthz"
                time.sleep(0.1)
        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as response:
            text = response.read().decode()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return {re.split(r"[{ ]", line)[0] for line in text.splitlines() if line[:1].isalpha()}


def test_dashboard_shows_exported_metrics(exported_metrics: set[str]) -> None:
    """Every panel queries exported metrics, and the four of the story are there."""
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/ws-leak.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    used = {m for e in exprs for m in re.findall(r"\b(?:event_service|node|process)_\w+", e)}
    assert used <= exported_metrics, used - exported_metrics
    assert DASHBOARD_METRICS <= used
    assert all('job="$service"' in e for e in exprs)
    service_var = next(v for v in dashboard["templating"]["list"] if v["name"] == "service")
    assert set(service_var["query"].split(",")) == set(MODES)


def test_prometheus_scrapes_both_services(
    services: dict[str, dict], dockerfile: list[tuple[str, str]]
) -> None:
    """One job per service, named like it, scraping an app route on the service's port."""
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    routes = {route.path for route in create_app(Settings()).routes}
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == set(MODES)
    for name, job in jobs.items():
        assert job.get("metrics_path", "/metrics") in routes
        (sd,) = job["dns_sd_configs"]
        assert sd["names"] == [name] and sd["type"] == "A"
        assert sd["port"] == container_port(services[name], dockerfile)


def test_grafana_provisioning_is_wired(services: dict[str, dict]) -> None:
    """Mounted paths exist, the datasource is the dashboard's, the provider path is mounted."""
    mounts = {}
    for name in ("prometheus", "grafana"):
        for volume in services[name]["volumes"]:
            source, target = (
                (volume["source"], volume["target"]) if isinstance(volume, dict)
                else volume.split(":")[:2]
            )  # fmt: skip
            assert Path(source).exists(), source
            mounts[target] = Path(source)
    provisioning = mounts["/etc/grafana/provisioning"]
    (datasource,) = yaml.safe_load((provisioning / "datasources/prometheus.yml").read_text())[
        "datasources"
    ]
    assert datasource["url"] == "http://prometheus:9090"
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/ws-leak.json").read_text())
    uids = {t["datasource"]["uid"] for p in dashboard["panels"] for t in p["targets"]}
    assert uids == {datasource["uid"]}
    (provider,) = yaml.safe_load((provisioning / "dashboards/ws-leak.yml").read_text())["providers"]
    assert mounts[provider["options"]["path"]] == ROOT / "deploy/grafana/dashboards"
