"""Static checks of the container files that a real ``docker compose up`` cannot make.

``tests/containers/`` (``make test-compose``) runs the stack under a real engine and checks
what a user sees. What stays here is what no run shows: the variables the containers set are
ones the service reads, the services wait for a healthy broker (a run only shows that they
got lucky), keepalive is off (a short run never reaches uvicorn's 40 s), the defaults a run
here moves (host ports, ``NOFILE``), the build context and the layer order, Grafana's
provisioning (Grafana has no image here), and the README parser that the real run relies on.
Compose resolves the file (``docker-compose config``, ``make compose-tool``).
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from event_service.settings import ENV_VARS, settings_from_env
from tests.containers import readme
from tests.containers.conftest import DEFAULT_PORTS, NOFILE_DEFAULT

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_TOOL = "docker-compose"
PROFILES = ("--profile", "swarm", "--profile", "observability")
MODES = ("event-service-missing", "event-service-fixed")
BROKER_CLIENTS = (*MODES, "publisher")
DASHBOARD = ROOT / "deploy/grafana/dashboards/ws-leak.json"
MIN_NOFILE = 10_000

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
    services: Services = yaml.safe_load(result.stdout)["services"]
    return services


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


def published(service: dict[str, Any]) -> set[tuple[str, str]]:
    """(host IP, host port) of the service's ``ports:``, short or long Compose syntax."""
    ports = set()
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            ports.add((entry.get("host_ip", ""), str(entry["published"])))
        else:
            *host_ip, port, _ = entry.split("/")[0].split(":")
            ports.add((":".join(host_ip), port))
    return ports


def readme_section() -> str:
    """The README's "With Docker" section."""
    return readme.docker_section((ROOT / "README.md").read_text())


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


def test_event_services_run_with_keepalive_off(
    services: Services, dockerfile: Instructions
) -> None:
    """Keepalive off on both services: with it on, the leak is cut after about 40 s."""
    for name in MODES:
        settings = settings_from_env({**image_env(dockerfile), **services[name]["environment"]})
        assert settings.ws_ping_interval_s is None and settings.ws_ping_timeout_s is None, name


def test_broker_clients_wait_for_a_healthy_rabbitmq(services: Services) -> None:
    """Both event services, the publisher and anything else with AMQP_URL wait for the broker."""
    amqp_users = {n for n, s in services.items() if "AMQP_URL" in s.get("environment", {})}
    assert set(BROKER_CLIENTS) <= amqp_users
    for name in amqp_users:
        condition = services[name].get("depends_on", {}).get("rabbitmq", {}).get("condition")
        assert condition == "service_healthy", f"{name}: depends_on rabbitmq {condition}"


def test_defaults_publish_the_readme_ports_and_a_high_nofile(services: Services) -> None:
    """Without variables: the README table's ports on loopback, NOFILE 65536 soft and hard.

    A run here moves the ports that are taken and lowers NOFILE to the engine's limit.
    """
    by_service: dict[str, set[tuple[str, str]]] = {}
    for row in readme.port_table(readme_section()):
        assert DEFAULT_PORTS[row.variable] == row.port, row
        by_service.setdefault(row.service, set()).add(("127.0.0.1", str(row.port)))
    assert {name: published(services[name]) for name in by_service} == by_service
    for name in (*MODES, "ping-swarm"):
        nofile = services[name]["ulimits"]["nofile"]
        assert int(nofile["soft"]) == int(nofile["hard"]) == NOFILE_DEFAULT > MIN_NOFILE, name


def test_port_and_nofile_variables_move_what_they_name() -> None:
    """Each port variable moves its service's host port; NOFILE sets every lab limit."""
    moved = {name: str(port + 20_000) for name, port in DEFAULT_PORTS.items()}
    services = resolved_services(**moved, NOFILE="20000")
    for row in readme.port_table(readme_section()):
        assert ("127.0.0.1", moved[row.variable]) in published(services[row.service]), row
    for name in (*MODES, "ping-swarm"):
        nofile = services[name]["ulimits"]["nofile"]
        assert (int(nofile["soft"]), int(nofile["hard"])) == (20000, 20000), name


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


def test_build_context_leaves_out_local_state(dockerfile: Instructions) -> None:
    """venv, git, caches and reports stay out of the build context; COPY sources stay in."""
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    ignored = {line.strip() for line in lines if line.strip() and not line.startswith("#")}
    assert {".git", ".venv", "lab-reports", "**/__pycache__"} <= ignored
    for kw, args in dockerfile:
        for source in args.split()[:-1] if kw == "COPY" else []:
            assert not any(fnmatch.fnmatch(source, pattern) for pattern in ignored), source


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


# The README parser of the compose test.

SECTION = """## With Docker

Text `docker compose nothing` in prose is not a command.

```sh
docker compose up -d --build       # rabbitmq, both services
curl -s 127.0.0.1:8001/healthz     # {"status":"ok"}
SWARM_CLIENTS=10 SWARM_DURATION=600 \\
  docker compose --profile swarm run --rm ping-swarm
docker compose exec event-service-missing ss -tn sport = :8000   # Recv-Q climbs
FIXED_PORT=8002-8004 docker compose up -d --scale event-service-fixed=3
```

| host port | variable | service | what |
| --- | --- | --- | --- |
| 8001 | `MISSING_PORT` | `event-service-missing` | the bug |

## Development
```sh
make test
```
"""


def test_section_commands_join_continuations_and_keep_comments() -> None:
    """Only the section's sh blocks count; continuation lines are one command."""
    commands = readme.section_commands(readme.docker_section("# T\n" + SECTION))
    assert [c.text for c in commands] == [
        "docker compose up -d --build",
        "curl -s 127.0.0.1:8001/healthz",
        "SWARM_CLIENTS=10 SWARM_DURATION=600 docker compose --profile swarm run --rm ping-swarm",
        "docker compose exec event-service-missing ss -tn sport = :8000",
        "FIXED_PORT=8002-8004 docker compose up -d --scale event-service-fixed=3",
    ]
    assert commands[1].comment == '{"status":"ok"}'
    assert readme.port_table(SECTION) == [
        readme.PortRow(8001, "MISSING_PORT", "event-service-missing")
    ]


def test_invocation_maps_compose_ports_and_variables() -> None:
    """v1 Compose with -T for exec and run, moved ports, the command's variables overridden."""
    ports = {"8001": "18001", "8002-8004": "18002-18004"}
    swarm = readme.invocation(
        "SWARM_CLIENTS=10 SWARM_DURATION=600 docker compose --profile swarm run --rm ping-swarm",
        compose=["docker-compose"], python="py", ports=ports, env={"SWARM_DURATION": "5"},
    )  # fmt: skip
    assert swarm.argv == ["docker-compose", "--profile", "swarm", "run", "-T", "--rm", "ping-swarm"]
    assert swarm.env == {"SWARM_CLIENTS": "10", "SWARM_DURATION": "5"}
    curl = readme.invocation("curl -s 127.0.0.1:8001/healthz", compose=["docker", "compose"],
                             python="py", ports=ports)  # fmt: skip
    assert curl.argv == ["curl", "-s", "127.0.0.1:18001/healthz"]
    scale = readme.invocation(
        "FIXED_PORT=8002-8004 docker compose exec x ss", compose=["docker", "compose"],
        python="py", ports=ports,
    )  # fmt: skip
    assert scale == readme.Invocation(["docker", "compose", "exec", "x", "ss"],
                                      {"FIXED_PORT": "18002-18004"})  # fmt: skip
    host = readme.invocation("ping-swarm --url ws://127.0.0.1:8001/ws", compose=["docker-compose"],
                             python="py", ports=ports)  # fmt: skip
    assert host.argv == ["py", "-m", "ping_client", "--url", "ws://127.0.0.1:18001/ws"]


def test_every_readme_docker_command_is_one_the_compose_test_can_run() -> None:
    """The section's commands are Compose, curl or the swarm, with NAME=value prefixes only."""
    commands = readme.section_commands(readme_section())
    assert len(commands) >= 15
    for command in commands:
        words = [w for w in command.text.split() if not readme.ASSIGNMENT.match(w)]
        assert words[:2] == ["docker", "compose"] or words[0] in ("curl", "ping-swarm"), command
