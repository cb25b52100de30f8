"""``docker compose up`` under a real engine, checked as the README's "With Docker" section reads.

The tests run in order on one stack (``make test-compose`` stops at the first failure): up,
health and ports, which handler each service runs, events through the broker, the swarm's
load on both services, one-off containers, Prometheus and the Grafana dashboard's queries,
scaling, and ``down``. Each command of the README's section is run, word for word but for:
``docker compose`` is the Compose found here (v1: ``docker-compose``, with ``-T``), host ports
that are taken here are moved, swarms are shortened (``SWARM_DURATION``, ``--duration``), and
Prometheus is started without Grafana, which has no image without a registry.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
import subprocess
import sys
import uuid
from typing import Any

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

from tests.containers import readme
from tests.containers.conftest import (
    DEFAULT_PORTS,
    ROOT,
    SCALE,
    Stack,
    wait_for,
)

pytestmark = [pytest.mark.compose, pytest.mark.timeout(900)]

MODES = {"event-service-missing": "missing", "event-service-fixed": "fixed"}
PORT_OF = {"event-service-missing": "MISSING_PORT", "event-service-fixed": "FIXED_PORT"}
DASHBOARD = ROOT / "deploy/grafana/dashboards/ws-leak.json"
SWARM_DURATION_S = 20
BIG_SWARM_DURATION_S = 16
KIB = 1024


def get_json(url: str, **kwargs: Any) -> Any:
    """GET ``url`` as JSON, or None while it does not answer."""
    try:
        return httpx.get(url, timeout=5, trust_env=False, **kwargs).raise_for_status().json()
    except (httpx.HTTPError, ValueError):
        return None


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    """``result`` if its command succeeded; else fail with its output."""
    assert result.returncode == 0, f"{result.args}\n{result.stdout[-3000:]}\n{result.stderr}"
    return result


def ss_rows(output: str) -> list[tuple[str, int, int]]:
    """(state, Recv-Q, Send-Q) of each socket row of ``ss -tn`` output."""
    rows = []
    for line in output.splitlines():
        fields = line.split()
        if len(fields) >= 5 and fields[1].isdigit() and fields[2].isdigit():
            rows.append((fields[0], int(fields[1]), int(fields[2])))
    return rows


def established_recv_q(output: str) -> list[int]:
    """Recv-Q of each established socket in ``ss -tn`` output."""
    return [recv_q for state, recv_q, _ in ss_rows(output) if state == "ESTAB"]


def summary_value(output: str, figure: str) -> str:
    """The value of one row of the swarm's summary table."""
    match = re.search(rf"│ {re.escape(figure)}\s*│\s*(.*?)\s*│", output)
    assert match, f"no {figure!r} row in the swarm's output:\n{output[-3000:]}"
    return match.group(1)


def parse_bytes(text: str) -> float:
    """``12.3 KiB`` and the like, as bytes."""
    number, unit = text.split()[:2]
    return float(number) * {"B": 1, "KiB": KIB, "MiB": KIB**2, "GiB": KIB**3}[unit]


def receive_through_the_broker(stack: Stack, ws_urls: list[str], count: int = 5) -> list[set[str]]:
    """Subscribe a client at each URL, publish ``count`` events to the broker from the host.

    Each client first waits for a ``tick`` of the compose publisher (so it is subscribed and
    the broker's events reach it), then collects the ids of the host's events it receives.
    """
    event_type = f"probe-{uuid.uuid4().hex[:8]}"
    with contextlib.ExitStack() as opened:
        clients: list[ClientConnection] = [
            opened.enter_context(connect(f"{url}?events=tick,{event_type}", proxy=None,
                                         compression=None, ping_interval=None, open_timeout=10))
            for url in ws_urls
        ]  # fmt: skip
        for client in clients:
            assert json.loads(client.recv(timeout=15))["type"] == "tick"
        amqp = f"amqp://guest:guest@127.0.0.1:{stack.ports.chosen['RABBITMQ_PORT']}/"
        ok(subprocess.run(
            [sys.executable, "-m", "event_service.publish", "--url", amqp, "--type", event_type,
             "--rate", "20", "--count", str(count)],
            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, check=False,
        ))  # fmt: skip
        received: list[set[str]] = []
        for client in clients:
            ids: set[str] = set()
            while len(ids) < count:
                event = json.loads(client.recv(timeout=15))
                if event["type"] == event_type:
                    ids.add(event["id"])
            received.append(ids)
    return received


def published_ports(stack: Stack, service: str) -> set[tuple[str, int]]:
    """(host IP, host port) of everything the service's first container publishes."""
    (container, *_) = stack.container_ids(service)
    ports = stack.inspect(container)["NetworkSettings"]["Ports"] or {}
    return {
        (b["HostIp"], int(b["HostPort"])) for bindings in ports.values() for b in bindings or []
    }


def prometheus_targets(stack: Stack) -> dict[str, list[str]]:
    """Job -> instances Prometheus scrapes with success."""
    data = get_json(stack.ports.url("PROMETHEUS_PORT", "/api/v1/targets"))
    up: dict[str, list[str]] = {}
    for target in (data or {}).get("data", {}).get("activeTargets", []):
        if target["health"] == "up":
            up.setdefault(target["labels"]["job"], []).append(target["labels"]["instance"])
    return up


def query_result(url: str, promql: str) -> list[Any] | None:
    """The series Prometheus returns for ``promql`` now (None when none or no answer)."""
    answer = get_json(url, params={"query": promql}) or {}
    result: list[Any] | None = answer.get("data", {}).get("result") or None
    return result


def served_metric_names(url: str) -> set[str]:
    """Metric names a running service serves on ``/metrics``."""
    text = httpx.get(url, timeout=5, trust_env=False).text
    return {re.split(r"[{ ]", line)[0] for line in text.splitlines() if line[:1].isalpha()}


PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool",
                "offset", "and", "or", "unless"}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (not functions, labels or keywords)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values, $variables included
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", expr)  # label matchers, ranges
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    names = re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", expr)
    return {name for name in names if name not in PROMQL_WORDS and not name.isdigit()}


def dashboard_exprs() -> list[str]:
    """Every query expression of the dashboard's panels."""
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def stop_one_off(stack: Stack, service: str) -> None:
    """``docker stop`` the service's one-off (``run``) containers, as Ctrl-C would end them."""
    for container in stack.container_ids(service, one_off=True):
        stack.engine.docker("stop", "-t", "10", container)


# --- up ---------------------------------------------------------------------------------------


def test_up_builds_and_starts_the_broker_both_services_and_the_publisher(stack: Stack) -> None:
    """`up -d --build` builds the Dockerfile and starts the four default services, healthy."""
    ok(stack.run_readme("docker compose up -d --build", timeout_s=600))
    stack.wait_healthy("rabbitmq", *MODES)
    ps = ok(stack.run_readme("docker compose ps")).stdout
    for service in MODES:
        assert any(service in line and "(healthy)" in line for line in ps.splitlines()), ps
    running = ok(stack.compose("ps", "--services", "--filter", "status=running")).stdout.split()
    assert set(running) == {"rabbitmq", *MODES, "publisher"}
    assert stack.health("publisher") == ["none"], "nothing listens in the publisher"


@pytest.mark.parametrize("service", MODES)
def test_each_service_answers_health_on_its_documented_port(stack: Stack, service: str) -> None:
    """`curl 127.0.0.1:8001/healthz` (8002) answers what the README's comment says."""
    command = f"curl -s 127.0.0.1:{DEFAULT_PORTS[PORT_OF[service]]}/healthz"
    expected = json.loads(stack.readme.take(command).comment)
    assert json.loads(ok(stack.run_readme(command)).stdout) == expected
    assert expected["read_handler"] == MODES[service]


def port_rows() -> list[readme.PortRow]:
    """The README's table of host ports."""
    return readme.port_table(readme.docker_section((ROOT / "README.md").read_text()))


def expected_ports(stack: Stack, service: str) -> set[tuple[str, int]]:
    """What the README's table says ``service`` publishes, as moved here, on loopback."""
    return {("127.0.0.1", stack.ports.chosen[row.variable]) for row in port_rows()
            if row.service == service}  # fmt: skip


def test_published_ports_are_the_readme_table_on_loopback(stack: Stack) -> None:
    """Each running service publishes exactly its rows of the port table, on 127.0.0.1 only.

    The variables that move them are unset here where the default port is free, so the
    engine shows the compose file's defaults, which the table states.
    """
    rows = port_rows()
    assert {row.variable: row.port for row in rows} == {
        name: port for name, port in DEFAULT_PORTS.items() if name != "EXTRA_PORT"
    }
    for service in ("rabbitmq", *MODES):
        assert published_ports(stack, service) == expected_ports(stack, service), service
    overview = get_json(
        stack.ports.url("RABBITMQ_UI_PORT", "/api/overview"), auth=("guest", "guest")
    )
    assert overview and "rabbitmq_version" in overview, "management UI"


@pytest.mark.parametrize("service", MODES)
def test_stats_say_which_handler_each_service_runs(stack: Stack, service: str) -> None:
    """/stats: the mode of the service name (READ_HANDLER=on in the shell changes nothing)."""
    assert stack.env["READ_HANDLER"] == "on"
    stats = get_json(stack.ports.url(PORT_OF[service], "/stats"))
    assert stats["read_handler"] == MODES[service]
    assert (stats["source"], stats["ws_impl"]) == ("rabbitmq", "websockets-sansio")
    assert stack.exec_out(service, "id", "-u").strip() not in ("", "0"), "runs as root"
    nofile = stack.exec_out(service, "sh", "-c", "ulimit -Sn; ulimit -Hn").split()
    assert nofile == [stack.env.get("NOFILE", "65536")] * 2


def test_events_through_the_broker_reach_a_client_of_each_service(stack: Stack) -> None:
    """The compose publisher's ticks and the host's events reach a subscriber of each service."""
    urls = [f"ws://127.0.0.1:{stack.ports.chosen[PORT_OF[s]]}/ws" for s in MODES]
    missing, fixed = receive_through_the_broker(stack, urls)
    assert missing == fixed and len(missing) == 5


def test_fixed_service_keeps_its_host_port_when_recreated(stack: Stack) -> None:
    """One published port: the same one after every recreate (a range rotated through it)."""
    expected = f"127.0.0.1:{stack.ports.chosen['FIXED_PORT']}"
    for _ in range(2):
        ok(stack.compose("up", "-d", "--no-deps", "--force-recreate", "event-service-fixed"))
        assert stack.host_port("event-service-fixed") == expected
    stack.wait_healthy("event-service-fixed")


# --- the swarm --------------------------------------------------------------------------------


def test_swarm_fills_recv_q_of_the_missing_handler_and_not_of_the_fixed_one(stack: Stack) -> None:
    """Two swarms at once: Recv-Q climbs on the missing service, stays near 0 on the fixed one.

    Read inside each service's container with `ss`; the swarms (in their own containers) say
    the same from the services' /stats, and say what their memory guard uses without tcp_mem.
    """
    short = {"SWARM_DURATION": str(SWARM_DURATION_S)}
    swarms = {
        "missing": stack.start_readme("docker compose --profile swarm run --rm ping-swarm",
                                      env=short),
        "fixed": stack.start_readme(
            "SWARM_TARGET=event-service-fixed docker compose --profile swarm run --rm ping-swarm",
            env=short),
    }  # fmt: skip
    outputs: dict[str, str] = {}
    try:
        missing_ss = "docker compose exec event-service-missing ss -tn sport = :8000"
        fixed_ss = "docker compose exec event-service-fixed ss -tn sport = :8000"

        def missing_backlog() -> list[int] | None:
            queues = established_recv_q(ok(stack.run_readme(missing_ss)).stdout)
            backed_up = [q for q in queues if q >= 4 * KIB]
            return queues if len(backed_up) >= 100 else None

        first = wait_for("100 sockets of the missing service hold 4 KiB unread", missing_backlog,
                         timeout_s=SWARM_DURATION_S + 60)  # fmt: skip
        for _ in range(3):
            fixed = established_recv_q(ok(stack.run_readme(fixed_ss)).stdout)
            assert len(fixed) >= 100, "the fixed service's swarm is not connected"
            assert max(fixed) < 4 * KIB and sum(fixed) < 64 * KIB, fixed

        def grown_backlog() -> list[int] | None:
            queues = missing_backlog()
            return queues if queues and sum(queues) > sum(first) else None

        later = wait_for("the missing service's backlog grows", grown_backlog, timeout_s=20)
        assert sum(later) >= 400 * KIB
        skmem = stack.run_readme("docker compose exec event-service-missing ss -tnm sport = :8000")
        assert ok(skmem).stdout.count("skmem:(r") >= 100
        stats = json.loads(ok(stack.run_readme("curl -s 127.0.0.1:8001/stats")).stdout)
        assert stats["read_handler"] == "missing" and stats["recv_q_bytes"] >= 400 * KIB
        for name, process in swarms.items():
            outputs[name] = process.communicate(timeout=SWARM_DURATION_S + 90)[0]
            assert process.returncode == 0, outputs[name][-3000:]
    finally:
        for process in swarms.values():
            process.kill()
            process.wait()
    for name, output in outputs.items():
        assert summary_value(output, "clients (peak connected)") == "100 (100)", name
        assert output.count("tcp memory guard: threshold ") == 1, output[-3000:]
        assert "from MemTotal/16, the kernel's default" in output
    missing_peak = summary_value(outputs["missing"], "server Recv-Q peak")
    assert missing_peak.endswith("(http://event-service-missing:8000/stats)"), outputs["missing"]
    assert parse_bytes(missing_peak) >= 400 * KIB
    fixed_peak = summary_value(outputs["fixed"], "server Recv-Q peak")
    assert fixed_peak.endswith("(http://event-service-fixed:8000/stats)"), outputs["fixed"]
    assert parse_bytes(fixed_peak) < 64 * KIB


def test_swarm_options_come_from_the_swarm_variables(stack: Stack) -> None:
    """SWARM_CLIENTS, SWARM_INTERVAL, SWARM_SIZE, SWARM_DURATION reach the swarm's options."""
    command = ("SWARM_CLIENTS=1000 SWARM_INTERVAL=0.5 SWARM_SIZE=4096 SWARM_DURATION=600 "
               "docker compose --profile swarm run --rm ping-swarm")  # fmt: skip
    result = ok(stack.run_readme(command, env={"SWARM_DURATION": str(BIG_SWARM_DURATION_S)},
                                 timeout_s=BIG_SWARM_DURATION_S + 120))  # fmt: skip
    output = result.stdout + result.stderr
    assert summary_value(output, "clients (peak connected)") == "1000 (1000)"
    elapsed_s = float(summary_value(output, "elapsed").split()[0])
    assert BIG_SWARM_DURATION_S <= elapsed_s < BIG_SWARM_DURATION_S + 15
    pings, _ = map(int, summary_value(output, "pings sent / blocked").split(" / "))
    sent = parse_bytes(summary_value(output, "bytes sent"))
    assert abs(sent - pings * 4096) <= 0.1 * KIB**2, "4 KiB pings"
    # Once all are connected, 1000 clients at 0.5 s send about 2000 pings a second.
    lines = [(float(t), int(p)) for t, p in
             re.findall(r"t=\s*(\d+)s\s+connected=1000\s+pings=(\d+)", output)]  # fmt: skip
    assert len(lines) >= 3, output[-3000:]
    (t0, p0), (t1, p1) = lines[0], lines[-1]
    assert (p1 - p0) / (t1 - t0) > 1400, lines


def test_swarm_on_the_host_reaches_the_published_port(stack: Stack) -> None:
    """The swarm from the host, through the published loopback port, without --allow-remote."""
    result = stack.run_readme("ping-swarm --url ws://127.0.0.1:8001/ws --clients 100",
                              extra_args=["--duration", "4"], timeout_s=60)  # fmt: skip
    assert (
        summary_value(ok(result).stdout + result.stderr, "clients (peak connected)") == "100 (100)"
    )


@pytest.mark.parametrize(
    ("command", "mode", "setting"),
    [
        ("docker compose run --rm -e READ_HANDLER=on -p 127.0.0.1:8005:8000 "
         "event-service-missing", "fixed", "READ_HANDLER=on"),
        ("docker compose run --rm -e WS_PING_INTERVAL=20 -e WS_PING_TIMEOUT=20 "
         "-p 127.0.0.1:8005:8000 event-service-missing", "missing", "WS_PING_INTERVAL=20"),
    ],
    ids=["read-handler-on", "keepalive-on"],
)  # fmt: skip
def test_run_starts_one_extra_container_with_a_setting(
    stack: Stack, command: str, mode: str, setting: str
) -> None:
    """`run -e ... -p 127.0.0.1:8005:8000`: one more service, on that port, with that setting."""
    process = stack.start_readme(command)
    try:
        url = f"http://127.0.0.1:{stack.ports.chosen['EXTRA_PORT']}/healthz"
        health = wait_for("the extra container answers", lambda: get_json(url), timeout_s=90)
        assert health["read_handler"] == mode
        (container,) = stack.container_ids("event-service-missing", one_off=True)
        assert setting in stack.inspect(container)["Config"]["Env"]
    finally:
        stop_one_off(stack, "event-service-missing")
        output = process.communicate(timeout=60)[0]
    assert process.returncode == 0, output[-3000:]
    assert stack.container_ids("event-service-missing", one_off=True) == [], "--rm"


# --- observe ----------------------------------------------------------------------------------


def test_prometheus_scrapes_both_services(stack: Stack) -> None:
    """The observability profile's Prometheus (here without Grafana) scrapes both services."""
    ok(stack.run_readme("docker compose --profile observability up -d",
                        extra_args=["prometheus"]))  # fmt: skip
    expected = {service: 1 for service in MODES}
    wait_for("Prometheus scrapes one instance of each service",
             lambda: {job: len(i) for job, i in prometheus_targets(stack).items()} == expected,
             timeout_s=90)  # fmt: skip
    assert published_ports(stack, "prometheus") == expected_ports(stack, "prometheus")


def test_dashboard_queries_metrics_the_running_services_serve(stack: Stack) -> None:
    """Every panel's expression names metrics /metrics serves, and returns data per service."""
    exprs = dashboard_exprs()
    for service in MODES:
        served = served_metric_names(stack.ports.url(PORT_OF[service], "/metrics"))
        for expr in exprs:
            assert metric_names(expr) and metric_names(expr) <= served, (service, expr)
    dashboard = json.loads(DASHBOARD.read_text())
    (variable,) = [v for v in dashboard["templating"]["list"] if v["name"] == "service"]
    assert set(variable["query"].split(",")) == set(prometheus_targets(stack))
    query = stack.ports.url("PROMETHEUS_PORT", "/api/v1/query")
    for service in MODES:
        for expr in exprs:
            promql = expr.replace("$service", service)
            has_data = functools.partial(query_result, query, promql)
            wait_for(f"Prometheus has data for {promql}", has_data, timeout_s=60)


# --- scale ------------------------------------------------------------------------------------


def test_scaled_fixed_service_has_three_instances_that_each_receive_every_event(
    stack: Stack,
) -> None:
    """`--scale event-service-fixed=3` with a port range: 3 instances, 3 ports, every event."""
    ok(stack.run_readme("FIXED_PORT=8002-8004 docker compose up -d --scale event-service-fixed=3"))
    low, high = map(int, stack.ports.fixed_range.split("-"))
    shown = ok(stack.run_readme("docker compose port --index 2 event-service-fixed 8000"))
    assert low <= int(shown.stdout.strip().rpartition(":")[2]) <= high
    addresses = {stack.host_port("event-service-fixed", index=i) for i in range(1, SCALE + 1)}
    assert addresses == {f"127.0.0.1:{port}" for port in range(low, high + 1)}
    for address in addresses:
        answer = functools.partial(get_json, f"http://{address}/healthz")
        health = wait_for(f"{address} answers", answer, timeout_s=60)
        assert health["read_handler"] == "fixed"
    received = receive_through_the_broker(stack, [f"ws://{a}/ws" for a in sorted(addresses)])
    assert len(received) == SCALE and all(ids == received[0] for ids in received)
    assert len(received[0]) == 5


def test_prometheus_scrapes_every_instance_of_the_scaled_service(stack: Stack) -> None:
    """The same scale with the observability profile keeps the 3 instances; all are scraped."""
    before = sorted(stack.container_ids("event-service-fixed"))
    command = ("FIXED_PORT=8002-8004 docker compose --profile observability up -d "
               "--scale event-service-fixed=3")  # fmt: skip
    ok(stack.run_readme(command, extra_args=["prometheus"]))
    assert sorted(stack.container_ids("event-service-fixed")) == before, "instances recreated"
    expected = {"event-service-missing": 1, "event-service-fixed": SCALE}
    wait_for("Prometheus scrapes every instance",
             lambda: {job: len(set(i)) for job, i in prometheus_targets(stack).items()} == expected,
             timeout_s=90)  # fmt: skip


def test_a_later_up_goes_back_to_one_fixed_instance_on_its_port(stack: Stack) -> None:
    """`up` without --scale and FIXED_PORT: one fixed instance again, on 8002."""
    ok(stack.run_readme("docker compose up -d --build", timeout_s=600))
    assert len(stack.container_ids("event-service-fixed")) == 1
    assert stack.host_port("event-service-fixed") == f"127.0.0.1:{stack.ports.chosen['FIXED_PORT']}"


# --- stop -------------------------------------------------------------------------------------


def test_publisher_stops_cleanly_on_docker_stop(stack: Stack) -> None:
    """`docker stop` (SIGTERM) ends the publisher with status 0, and its log says SIGTERM."""
    ok(stack.compose("stop", "publisher"))
    (container,) = stack.container_ids("publisher")
    assert stack.inspect(container)["State"]["ExitCode"] == 0
    assert "stopped signal=SIGTERM" in ok(stack.compose("logs", "--no-color", "publisher")).stdout


def test_down_leaves_no_container_network_or_volume(stack: Stack) -> None:
    """`down -v` with both profiles removes the project's containers, networks and volumes."""
    ok(stack.run_readme("docker compose --profile swarm --profile observability down -v"))
    assert stack.project_leftovers() == {"containers": [], "networks": [], "volumes": []}
    assert stack.volumes() <= stack.volumes_before, "anonymous volumes left"


def test_every_command_of_the_readme_section_was_run(stack: Stack) -> None:
    """No command of the README's "With Docker" section is left unchecked."""
    assert stack.readme.not_run() == []
