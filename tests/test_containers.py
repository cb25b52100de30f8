"""Static checks of the container files: Dockerfile, docker-compose.yml and deploy/.

There is no Docker engine here, so nothing is built or started. Compose itself validates
and resolves the compose file (``docker-compose config``), and everything the files name
(modules, options, settings, routes, metrics) is checked against the packages.
"""

from __future__ import annotations

import fnmatch
import importlib
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import asdict
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml
from starlette.routing import Match

from event_service import publish
from event_service.app import create_app
from event_service.settings import ENV_VARS, Settings, settings_from_env
from ping_client.cli import config_from_args, swarm_parser
from ping_client.swarm import SwarmConfig
from tests.conftest import Launch

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_TOOL = "docker-compose"
PROFILES = ("--profile", "swarm", "--profile", "observability")
MODES = {"event-service-missing": "missing", "event-service-fixed": "fixed"}
PUBLISHED = {"event-service-missing": "8001", "event-service-fixed": "8002-8004"}
STORY_METRICS = {
    "event_service_recv_queue_bytes",
    "node_sockstat_TCP_mem_bytes",
    "process_resident_memory_bytes",
    "event_service_connections",
}
COMMAND_PARSERS = {
    "event_service.publish": publish.parse_args,
    "ping_client": lambda argv: config_from_args(swarm_parser().parse_args(argv)).validate(),
}
DASHBOARD = ROOT / "deploy/grafana/dashboards/ws-leak.json"
BROKER_CLIENTS = (*MODES, "publisher")
DEFAULT_SERVICES = {"rabbitmq", *BROKER_CLIENTS}
SERVICE_PROFILES = {
    "ping-swarm": ["swarm"],
    "prometheus": ["observability"],
    "grafana": ["observability"],
}
MIN_NOFILE = 10_000
# Each SWARM_* variable of the compose file: a non-default value, the ping_client option
# whose argument must carry it, and the SwarmConfig field that must come out of it.
SWARM_VARIABLES = {
    "SWARM_TARGET": ("event-service-fixed", "--url", "url", "ws://event-service-fixed:8000/ws"),
    "SWARM_CLIENTS": ("7", "--clients", "clients", 7),
    "SWARM_INTERVAL": ("0.25", "--interval", "interval_s", 0.25),
    "SWARM_SIZE": ("333", "--size", "size_bytes", 333),
    "SWARM_DURATION": ("42", "--duration", "duration_s", 42.0),
}

Instructions = list[tuple[str, str]]
Services = dict[str, dict[str, Any]]

pytestmark = pytest.mark.timeout(120)


def run_compose(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the Compose CLI on the project's file, in a clean environment plus ``env``."""
    tool = shutil.which(COMPOSE_TOOL)
    if tool is None:
        pytest.fail(f"{COMPOSE_TOOL} not found: run `make compose-tool` to install it")
    clean = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), **env}
    argv = [tool, "--project-directory", str(ROOT), "-f", str(ROOT / "docker-compose.yml")]
    return subprocess.run(
        [*argv, *args], capture_output=True, text=True, env=clean, timeout=60, check=False
    )


def resolved_services(**env: str) -> Services:
    """Services as Compose resolves them, with every profile and ``env`` interpolated."""
    result = run_compose(*PROFILES, "config", **env)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)["services"]


def parse_dockerfile(text: str) -> Instructions:
    """Instructions as (KEYWORD, arguments), continuation lines joined, comments dropped."""
    instructions, pending = [], ""
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
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
def services() -> Services:
    """Services of the resolved compose file, interpolation defaults applied."""
    return resolved_services()


@pytest.fixture(scope="module")
def dockerfile() -> Instructions:
    """The parsed Dockerfile."""
    return parse_dockerfile((ROOT / "Dockerfile").read_text())


def image_env(instructions: Instructions) -> dict[str, str]:
    """Variables set by ENV instructions (``KEY=value`` form)."""
    pairs = (p for kw, args in instructions if kw == "ENV" for p in args.split())
    return dict(pair.split("=", 1) for pair in pairs)


def listening_port(service: dict[str, Any], instructions: Instructions) -> int:
    """The port the service listens on: its PORT, else the image's."""
    return int(service.get("environment", {}).get("PORT") or image_env(instructions)["PORT"])


def published_ports(service: dict[str, Any]) -> list[tuple[str, str, int]]:
    """(host IP, published port or range, container port), short or long Compose syntax."""
    ports = []
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            ports.append((entry.get("host_ip", ""), str(entry["published"]), int(entry["target"])))
        else:
            *host_ip, published, target = entry.split("/")[0].split(":")
            ports.append((":".join(host_ip), published, int(target)))
    return ports


def command_argv(service: dict[str, Any]) -> list[str]:
    """The service's command as an argument list (Compose v1 keeps strings, v2 splits)."""
    command = service["command"]
    return shlex.split(command) if isinstance(command, str) else list(command)


def has_healthcheck(service: dict[str, Any], instructions: Instructions) -> bool:
    """Whether Compose or the image gives the service a healthcheck that is not disabled."""
    check = service.get("healthcheck")
    if check is not None:  # v1 writes `disable: true` as `test: [NONE]`
        return not check.get("disable") and check.get("test") not in (["NONE"], None)
    return "build" in service and any(kw == "HEALTHCHECK" for kw, _ in instructions)


def swarm_config(service: dict[str, Any]) -> SwarmConfig:
    """The swarm config the service's ``python -m ping_client`` command describes, validated."""
    python, flag, module, *argv = command_argv(service)
    assert (python, flag, module) == ("python", "-m", "ping_client")
    config = config_from_args(swarm_parser().parse_args(argv))
    config.validate()
    return config


def nofile_limits(service: dict[str, Any]) -> tuple[int, int]:
    """(soft, hard) of the service's ``ulimits.nofile``; a single number sets both."""
    nofile = service["ulimits"]["nofile"]
    if isinstance(nofile, dict):
        return int(nofile["soft"]), int(nofile["hard"])
    return int(nofile), int(nofile)


def serves_get(path: str) -> bool:
    """Whether the app answers GET ``path`` (a full route match, method included)."""
    scope = {"type": "http", "path": path, "method": "GET", "root_path": "", "headers": []}
    return any(route.matches(scope)[0] is Match.FULL for route in create_app(Settings()).routes)


def test_compose_file_is_valid() -> None:
    """Compose accepts the file, with the default services and with every profile."""
    for args in ((), PROFILES):
        result = run_compose(*args, "config", "-q")
        assert result.returncode == 0, f"config -q {' '.join(args)}:\n{result.stderr}"
    assert "version" not in yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_env_vars_lists_what_settings_read() -> None:
    """ENV_VARS names exactly the variables settings_from_env looks up."""
    seen: set[str] = set()

    class RecordingEnv(dict[str, str]):
        def get(self, key: str, default: Any = None) -> Any:
            seen.add(key)
            return super().get(key, default)

    settings_from_env(RecordingEnv())
    assert seen == set(ENV_VARS)


def test_containers_set_only_variables_the_code_reads(
    services: Services, dockerfile: Instructions
) -> None:
    """Every variable set on a lab container, or by the image, is one the service reads."""
    for name, service in services.items():
        if "build" in service:
            assert set(service.get("environment", {})) <= set(ENV_VARS), name
    own = {key for key in image_env(dockerfile) if not key.startswith(("PYTHON", "PIP_"))}
    assert own <= set(ENV_VARS)


def test_event_services_have_valid_settings_in_their_mode(
    services: Services, dockerfile: Instructions
) -> None:
    """Both services start with valid settings, in their mode, on the broker, keepalive off."""
    for name, read_handler in MODES.items():
        settings = settings_from_env({**image_env(dockerfile), **services[name]["environment"]})
        assert settings.read_handler == read_handler, name
        assert (settings.source_name, settings.ws_impl) == ("rabbitmq", "websockets-sansio")
        assert settings.ws_ping_interval_s is None and settings.ws_ping_timeout_s is None
        assert settings.host == "0.0.0.0", name


def test_read_handler_in_the_shell_does_not_flip_the_modes() -> None:
    """The service name is the mode: READ_HANDLER in the shell is not interpolated."""
    services = resolved_services(READ_HANDLER="on")
    assert services["event-service-missing"]["environment"]["READ_HANDLER"] == "off"
    assert services["event-service-fixed"]["environment"]["READ_HANDLER"] == "on"


def test_commands_run_modules_that_accept_their_arguments(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each command is `python -m MODULE ...` whose own parser accepts the arguments."""
    commands = {name: svc for name, svc in services.items() if "command" in svc}
    assert set(commands) == {"publisher", "ping-swarm"}
    for name, service in commands.items():
        python, flag, module, *argv = command_argv(service)
        assert (python, flag) == ("python", "-m"), name
        assert importlib.util.find_spec(module) is not None, f"{name}: no module {module}"
        assert module in COMMAND_PARSERS, f"{name}: no parser known for {module}"
        for key, value in service.get("environment", {}).items():
            monkeypatch.setenv(key, value)
        COMMAND_PARSERS[module](argv)
    assert publish.parse_args([]).url == "amqp://guest:guest@rabbitmq:5672/"


def test_swarm_targets_a_service_port(services: Services, dockerfile: Instructions) -> None:
    """The swarm's URL names a service and its port: missing by default, SWARM_TARGET else."""
    argv = command_argv(services["ping-swarm"])
    url = urlsplit(argv[argv.index("--url") + 1])
    assert url.hostname == "event-service-missing"
    assert url.port == listening_port(services[url.hostname], dockerfile)
    fixed = resolved_services(SWARM_TARGET="event-service-fixed")["ping-swarm"]
    assert "ws://event-service-fixed:8000/ws" in command_argv(fixed)


def test_published_ports_reach_the_listening_port(
    services: Services, dockerfile: Instructions
) -> None:
    """Host ports forward to the service's port, on loopback only: 8001 missing, 8002+ fixed."""
    for name, published in PUBLISHED.items():
        port = listening_port(services[name], dockerfile)
        assert published_ports(services[name]) == [("127.0.0.1", published, port)], name
    assert ("EXPOSE", image_env(dockerfile)["PORT"]) in dockerfile


def test_fixed_service_can_scale_to_three(services: Services) -> None:
    """`--scale event-service-fixed=3` finds three host ports and no fixed container name."""
    fixed = services["event-service-fixed"]
    assert "container_name" not in fixed
    ((_, published, _),) = published_ports(fixed)
    low, _, high = published.partition("-")
    assert high and int(high) - int(low) + 1 >= 3, f"{published} is not a range of 3 ports"


def test_fixed_service_resolves_with_three_instances(tmp_path: Path) -> None:
    """With `scale: 3` on the fixed service Compose resolves it: no shared name, 3 host ports."""
    override = tmp_path / "scale.yml"
    override.write_text(yaml.safe_dump({"services": {"event-service-fixed": {"scale": 3}}}))
    result = run_compose("-f", str(override), *PROFILES, "config")
    assert result.returncode == 0, result.stderr
    fixed = yaml.safe_load(result.stdout)["services"]["event-service-fixed"]
    assert fixed["scale"] == 3
    assert "container_name" not in fixed, "three containers cannot share one name"
    for _, published, _ in published_ports(fixed):
        low, _, high = published.partition("-")
        assert high and int(high) - int(low) + 1 >= fixed["scale"], published


def test_event_services_raise_the_open_file_limit(services: Services) -> None:
    """Both event services get a nofile limit far above the usual 1024, soft <= hard."""
    for name in MODES:
        soft, hard = nofile_limits(services[name])
        assert MIN_NOFILE < soft <= hard, f"{name}: nofile soft={soft} hard={hard}"


def test_rabbitmq_is_the_official_management_image(services: Services) -> None:
    """rabbitmq runs the official image with the management plugin, AMQP and UI published."""
    rabbitmq = services["rabbitmq"]
    repository, _, tag = rabbitmq["image"].rpartition(":")
    assert repository in ("rabbitmq", "library/rabbitmq", "docker.io/library/rabbitmq")
    assert "management" in tag, rabbitmq["image"]
    ports = {(published, target) for _, published, target in published_ports(rabbitmq)}
    assert {("5672", 5672), ("15672", 15672)} <= ports
    check = rabbitmq["healthcheck"]
    assert check["test"][0] in ("CMD", "CMD-SHELL") and not check.get("disable"), check


def test_broker_clients_wait_for_a_healthy_rabbitmq(services: Services) -> None:
    """Both event services, the publisher and anything else with AMQP_URL wait for the broker."""
    amqp_users = {n for n, s in services.items() if "AMQP_URL" in s.get("environment", {})}
    assert set(BROKER_CLIENTS) <= amqp_users
    for name in amqp_users:
        condition = services[name].get("depends_on", {}).get("rabbitmq", {}).get("condition")
        assert condition == "service_healthy", f"{name}: depends_on rabbitmq {condition}"


def test_plain_up_starts_the_broker_both_services_and_the_publisher(services: Services) -> None:
    """Only the swarm (swarm) and Prometheus and Grafana (observability) are behind profiles."""
    profiles = {
        name: service["profiles"] for name, service in services.items() if "profiles" in service
    }
    assert profiles == SERVICE_PROFILES
    assert set(services) - set(profiles) == DEFAULT_SERVICES
    for name in DEFAULT_SERVICES:  # `up` without profiles must not need a profiled service
        assert set(services[name].get("depends_on", {})) <= DEFAULT_SERVICES, name


def test_swarm_variables_set_real_ping_client_options() -> None:
    """Each SWARM_* variable the compose file reads lands in the swarm command as one option."""
    used = set(re.findall(r"\$\{?(SWARM_\w+)", (ROOT / "docker-compose.yml").read_text()))
    assert used == set(SWARM_VARIABLES), "SWARM_VARIABLES is out of date"
    env = {variable: value for variable, (value, *_) in SWARM_VARIABLES.items()}
    default = asdict(swarm_config(resolved_services()["ping-swarm"]))
    swarm = resolved_services(**env)["ping-swarm"]
    argv = command_argv(swarm)
    config = asdict(swarm_config(swarm))
    for variable, (value, option, field, expected) in SWARM_VARIABLES.items():
        assert option in argv and value in argv[argv.index(option) + 1], f"{variable}: {argv}"
        assert config[field] == expected, f"{variable} -> {field}"
    changed = {field for field, value in config.items() if value != default[field]}
    assert changed == {field for _, _, field, _ in SWARM_VARIABLES.values()}


def test_health_gated_dependencies_have_healthchecks(
    services: Services, dockerfile: Instructions
) -> None:
    """rabbitmq and both services have healthchecks, and every service_healthy waits on one."""
    assert "rabbitmq-diagnostics" in services["rabbitmq"]["healthcheck"]["test"]
    assert all(has_healthcheck(services[name], dockerfile) for name in MODES)
    for name, service in services.items():
        for dep, how in service.get("depends_on", {}).items():
            if how.get("condition") == "service_healthy":
                assert has_healthcheck(services[dep], dockerfile), f"{name} -> {dep}"
    for name in ("publisher", "ping-swarm"):  # nothing listens there: the image's check fails
        assert not has_healthcheck(services[name], dockerfile), name


def test_dockerfile_builds_on_slim_python_311(dockerfile: Instructions) -> None:
    """The Dockerfile parses into known instructions on an official slim Python 3.11 image."""
    known = {"FROM", "ENV", "RUN", "WORKDIR", "COPY", "USER", "EXPOSE", "HEALTHCHECK", "CMD"}
    assert {kw for kw, _ in dockerfile} <= known
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", dockerfile[0][1]), dockerfile[0]


def test_dockerfile_installs_dependencies_before_the_code(dockerfile: Instructions) -> None:
    """pyproject.toml alone is copied and its dependencies installed before any package code."""
    copies = [(i, args.split()[:-1]) for i, (kw, args) in enumerate(dockerfile) if kw == "COPY"]
    assert copies[0][1] == ["pyproject.toml"]
    deps = next(i for i, (kw, args) in enumerate(dockerfile) if kw == "RUN" and "-r " in args)
    assert copies[0][0] < deps < copies[1][0]


def test_build_context_has_the_copied_files_and_no_local_state(dockerfile: Instructions) -> None:
    """Every COPY source exists and is not ignored; venv, git and reports stay out."""
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    ignored = {line.strip() for line in lines if line.strip() and not line.startswith("#")}
    assert {".git", ".venv", "lab-reports", "**/__pycache__"} <= ignored
    for kw, args in dockerfile:
        for source in args.split()[:-1] if kw == "COPY" else []:
            assert (ROOT / source).exists(), source
            assert not any(fnmatch.fnmatch(source, pattern) for pattern in ignored), source


def test_dockerfile_runs_as_non_root_before_cmd(dockerfile: Instructions) -> None:
    """The last USER is neither root nor 0, and it comes before CMD."""
    keywords = [kw for kw, _ in dockerfile]
    users = [args for kw, args in dockerfile if kw == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert max(i for i, kw in enumerate(keywords) if kw == "USER") < keywords.index("CMD")


def test_dockerfile_cmd_starts_the_service(dockerfile: Instructions) -> None:
    """CMD runs `python -m event_service` in exec form, a module with a main()."""
    cmd = json.loads(next(args for kw, args in dockerfile if kw == "CMD"))
    assert cmd == ["python", "-m", "event_service"]
    assert importlib.util.find_spec("event_service.__main__") is not None
    assert callable(importlib.import_module("event_service.__main__").main)


def test_dockerfile_healthcheck_fetches_a_route(dockerfile: Instructions) -> None:
    """The one HEALTHCHECK asks the service's own port for a route the app serves."""
    (check,) = [args for kw, args in dockerfile if kw == "HEALTHCHECK"]
    match = re.search(r"http://[^\s\"']+", check)
    assert match, check
    url = urlsplit(match.group(0).replace("${PORT:-8000}", image_env(dockerfile)["PORT"]))
    assert (url.hostname, url.port) == ("127.0.0.1", 8000)
    assert serves_get(url.path), url.path


@pytest.fixture
def exported_metrics(launch: Launch) -> set[str]:
    """Metric names a real service process exports on /metrics."""
    text = httpx.get(f"{launch().base_url}/metrics", timeout=5).text
    return {re.split(r"[{ ]", line)[0] for line in text.splitlines() if line[:1].isalpha()}


def test_dashboard_shows_the_story_metrics_per_service(exported_metrics: set[str]) -> None:
    """Panels query exported metrics per service, the four of the story among them."""
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = {m for e in exprs for m in re.findall(r"\b(?:event_service|node|process)_\w+", e)}
    assert used <= exported_metrics, used - exported_metrics
    assert STORY_METRICS <= used
    assert all('job="$service"' in e for e in exprs)
    (variable,) = [v for v in dashboard["templating"]["list"] if v["name"] == "service"]
    assert set(variable["query"].split(",")) == set(MODES)


def test_prometheus_scrapes_every_instance_of_both_services(
    services: Services, dockerfile: Instructions
) -> None:
    """One job per service, named like it, finding instances by DNS, on an app route and port."""
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == set(MODES)
    for name, job in jobs.items():
        assert serves_get(job.get("metrics_path", "/metrics")), name
        (sd,) = job["dns_sd_configs"]
        assert (sd["names"], sd["type"]) == ([name], "A")
        assert sd["port"] == listening_port(services[name], dockerfile)


def test_grafana_provisioning_is_wired(services: Services) -> None:
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
    assert mounts["/etc/prometheus/prometheus.yml"] == ROOT / "deploy/prometheus/prometheus.yml"
    provisioning = mounts["/etc/grafana/provisioning"]
    sources = yaml.safe_load((provisioning / "datasources/prometheus.yml").read_text())
    (datasource,) = sources["datasources"]
    assert datasource["url"] == "http://prometheus:9090"
    panels = json.loads(DASHBOARD.read_text())["panels"]
    assert {t["datasource"]["uid"] for p in panels for t in p["targets"]} == {datasource["uid"]}
    (provider,) = yaml.safe_load((provisioning / "dashboards/ws-leak.yml").read_text())["providers"]
    assert mounts[provider["options"]["path"]] == DASHBOARD.parent
