"""The project's compose stack under a real Docker engine, for the tests in this folder.

The engine comes from :mod:`tests.containers.engine`: the one the client reaches, or the
kit's (skipped without either, failed under ``CI=true``). The stack runs under its own
project name (``COMPOSE_PROJECT_NAME``), so that a user's own stack in this folder is not
touched, on the README's host ports where they are free and on free ones where they are not.
At the end it is taken down, and the kit's engine is stopped. When a test fails, the
containers' logs are added to its report.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from tests.containers import readme
from tests.containers.engine import Engine, start_engine

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "ws-leak-lab-test"
IMAGE = "ws-leak-lab"
# Grafana has no stand-in without a registry: the test never starts it.
NOT_STARTED = {"grafana"}
PROFILES = ("--profile", "swarm", "--profile", "observability")
LOCK = Path("/tmp/ws-leak-lab-compose-test.lock")
# Host ports of the compose file's variables (the README's), and the extra port of its
# `run -p` examples. Scaled, the fixed service takes SCALE ports from FIXED_PORT on.
DEFAULT_PORTS = {
    "MISSING_PORT": 8001,
    "FIXED_PORT": 8002,
    "RABBITMQ_PORT": 5672,
    "RABBITMQ_UI_PORT": 15672,
    "PROMETHEUS_PORT": 9090,
    "GRAFANA_PORT": 3000,
    "EXTRA_PORT": 8005,
}
SCALE = 3
NOFILE_DEFAULT = 65536
# `curl -s URL` where curl is not installed.
CURL_PY = (
    "import sys, urllib.request as u; "
    "opener = u.build_opener(u.ProxyHandler({})); "
    "sys.stdout.write(opener.open('http://' + sys.argv[1]).read().decode())"
)

T = TypeVar("T")


def wait_for(
    what: str, probe: Callable[[], T | None], *, timeout_s: float, every_s: float = 1.0
) -> T:
    """Poll ``probe`` until it returns something other than None or False; fail after timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f} s waiting until {what}")
        time.sleep(every_s)


def port_is_free(port: int) -> bool:
    """Whether a listener could bind 127.0.0.1:``port`` now."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count: int, preferred: int, taken: set[int]) -> int:
    """The first of ``count`` consecutive free ports not in ``taken``: ``preferred`` if it can."""
    start = preferred
    while not all(start + i not in taken and port_is_free(start + i) for i in range(count)):
        start = preferred + 10_000 if start == preferred else start + count
        assert start < 65_000, "no free consecutive ports"
    return start


@dataclasses.dataclass
class Ports:
    """The host ports the stack uses: the README's, or free ones where those are taken."""

    chosen: dict[str, int]
    fixed_range: str

    @classmethod
    def choose(cls) -> Ports:
        """Keep each default that is free; move the others to free ports."""
        chosen: dict[str, int] = {}
        # A moved port must not be another's default either: that one may be kept.
        taken = {
            *DEFAULT_PORTS.values(),
            *range(DEFAULT_PORTS["FIXED_PORT"], DEFAULT_PORTS["FIXED_PORT"] + SCALE),
        }
        for name, default in DEFAULT_PORTS.items():
            count = SCALE if name == "FIXED_PORT" else 1
            defaults_free = all(port_is_free(default + i) for i in range(count))
            chosen[name] = default if defaults_free else free_ports(count, default, taken)
            taken.update(range(chosen[name], chosen[name] + count))
        first = chosen["FIXED_PORT"]
        return cls(chosen, f"{first}-{first + SCALE - 1}")

    @property
    def moved(self) -> dict[str, str]:
        """Compose variables for the ports that differ from the defaults."""
        return {
            name: str(port)
            for name, port in self.chosen.items()
            if port != DEFAULT_PORTS[name] and name != "EXTRA_PORT"
        }

    @property
    def substitutions(self) -> dict[str, str]:
        """README port (or range) -> the one used here."""
        default_first = DEFAULT_PORTS["FIXED_PORT"]
        return {
            **{str(DEFAULT_PORTS[name]): str(port) for name, port in self.chosen.items()},
            f"{default_first}-{default_first + SCALE - 1}": self.fixed_range,
        }

    def url(self, name: str, path: str = "") -> str:
        """``http://127.0.0.1:PORT/path`` for one of the ports."""
        return f"http://127.0.0.1:{self.chosen[name]}{path}"


def images_to_provide() -> list[str]:
    """The base image of the Dockerfile and every image the compose file names (but Grafana)."""
    froms = [line.split()[1] for line in (ROOT / "Dockerfile").read_text().splitlines()
             if line.upper().startswith("FROM ")]  # fmt: skip
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    named = [svc["image"] for name, svc in services.items() if "image" in svc
             and name not in NOT_STARTED]  # fmt: skip
    return sorted(set(froms + named))


class Stack:
    """The compose project under test: commands, containers, logs."""

    def __init__(self, engine: Engine, ports: Ports) -> None:
        self.engine = engine
        self.ports = ports
        self.env = {
            **engine.env,
            "COMPOSE_PROJECT_NAME": PROJECT,
            # The shell's READ_HANDLER must not flip the services' modes.
            "READ_HANDLER": "on",
            **ports.moved,
        }
        if engine.nofile_hard is not None and engine.nofile_hard < NOFILE_DEFAULT:
            self.env["NOFILE"] = str(engine.nofile_hard)
        self.readme = ReadmeCommands((ROOT / "README.md").read_text())
        self.volumes_before: set[str] = set()

    def compose(
        self, *args: str, env: Mapping[str, str] | None = None, timeout_s: float = 180
    ) -> subprocess.CompletedProcess[str]:
        """Run a Compose command on the project, in the project root."""
        return subprocess.run(
            [*self.engine.compose, *args], env={**self.env, **(env or {})}, cwd=ROOT,
            capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL,
            check=False,
        )  # fmt: skip

    def run_readme(
        self,
        text: str,
        *,
        env: Mapping[str, str] | None = None,
        extra_args: Sequence[str] = (),
        timeout_s: float = 180,
    ) -> subprocess.CompletedProcess[str]:
        """Run one README command (see :meth:`invocation`) to its end."""
        inv = self.invocation(text, env=env, extra_args=extra_args)
        return subprocess.run(
            inv.argv, env={**self.env, **inv.env}, cwd=ROOT, capture_output=True, text=True,
            timeout=timeout_s, stdin=subprocess.DEVNULL, check=False,
        )  # fmt: skip

    def start_readme(
        self, text: str, *, env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[str]:
        """Start one README command in the background; its output is merged into stdout."""
        inv = self.invocation(text, env=env)
        return subprocess.Popen(
            inv.argv, env={**self.env, **inv.env}, cwd=ROOT, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL,
        )  # fmt: skip

    def invocation(
        self, text: str, *, env: Mapping[str, str] | None = None, extra_args: Sequence[str] = ()
    ) -> readme.Invocation:
        """The README command ``text`` as run here; it must be in the README.

        ``env`` overrides its variables, ``extra_args`` are appended (both only where the
        test must shorten a run or cannot start a service); a missing curl is done in Python.
        """
        self.readme.take(text)
        inv = readme.invocation(text, compose=self.engine.compose, python=sys.executable,
                                ports=self.ports.substitutions, env=env)  # fmt: skip
        argv = [*inv.argv, *extra_args]
        if argv[0] == "curl" and shutil.which("curl") is None:
            argv = [sys.executable, "-c", CURL_PY, argv[-1]]
        return readme.Invocation(argv, inv.env)

    def container_ids(self, service: str, *, one_off: bool = False) -> list[str]:
        """Ids of the project's containers of ``service`` (running or not)."""
        labels = [f"com.docker.compose.project={PROJECT}", f"com.docker.compose.service={service}",
                  f"com.docker.compose.oneoff={'True' if one_off else 'False'}"]  # fmt: skip
        args = [arg for label in labels for arg in ("--filter", f"label={label}")]
        return self.engine.docker("ps", "-aq", *args).stdout.split()

    def inspect(self, container: str) -> dict[str, Any]:
        """``docker inspect`` of one container."""
        result = self.engine.docker("inspect", container)
        assert result.returncode == 0, result.stderr
        data: dict[str, Any] = json.loads(result.stdout)[0]
        return data

    def health(self, service: str) -> list[str]:
        """Health status of each container of ``service`` ("healthy", "starting", ...)."""
        states = []
        for container in self.container_ids(service):
            health = self.inspect(container)["State"].get("Health")
            states.append(health["Status"] if health else "none")
        return states

    def wait_healthy(self, *services: str, count: int = 1, timeout_s: float = 120) -> None:
        """Wait until each of ``services`` has ``count`` healthy containers."""
        for service in services:
            healthy = functools.partial(self.is_healthy, service, count)
            wait_for(f"{count} healthy {service}", healthy, timeout_s=timeout_s)

    def is_healthy(self, service: str, count: int = 1) -> bool:
        """Whether ``service`` has ``count`` containers, all healthy."""
        return self.health(service) == ["healthy"] * count

    def host_port(self, service: str, target: int = 8000, index: int = 1) -> str:
        """``HOST:PORT`` that the instance ``index`` of ``service`` publishes ``target`` on."""
        result = self.compose("port", "--index", str(index), service, str(target))
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    def exec_out(self, service: str, *argv: str) -> str:
        """Output of ``argv`` run in the service's (first) container."""
        tty = ["-T"] if self.engine.compose == ["docker-compose"] else []
        result = self.compose("exec", *tty, service, *argv)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def logs(self, tail: int = 150) -> str:
        """The last lines of every container's log, one-off containers included."""
        label = f"label=com.docker.compose.project={PROJECT}"
        ids = self.engine.docker("ps", "-aq", "--filter", label).stdout.split()
        parts = []
        for container in ids:
            name = self.inspect(container)["Name"].lstrip("/")
            log = self.engine.docker("logs", "--tail", str(tail), container)
            parts.append(f"----- {name}\n{log.stdout}{log.stderr}")
        return "\n".join(parts) or "(no containers)"

    def remove_project_images(self) -> None:
        """Remove the images an earlier run built for the project's services: `up --build`
        rebuilds only the services it starts, so `run ping-swarm` would take an old one."""
        listed = self.engine.docker("images", "--format", "{{.Repository}}").stdout.split()
        stale = sorted({name for name in listed if name.startswith((f"{PROJECT}_", f"{PROJECT}-"))})
        if stale:
            self.engine.docker("rmi", "-f", *stale)

    def project_leftovers(self) -> dict[str, list[str]]:
        """Containers, networks and volumes that carry the project's label."""
        label = f"label=com.docker.compose.project={PROJECT}"
        return {
            "containers": self.engine.docker("ps", "-aq", "--filter", label).stdout.split(),
            "networks": self.engine.docker("network", "ls", "-q", "--filter", label).stdout.split(),
            "volumes": self.engine.docker("volume", "ls", "-q", "--filter", label).stdout.split(),
        }

    def volumes(self) -> set[str]:
        """Every volume of the engine."""
        return set(self.engine.docker("volume", "ls", "-q").stdout.split())


class ReadmeCommands:
    """The README's Docker commands, and which of them the test has run."""

    def __init__(self, text: str) -> None:
        self.commands = readme.section_commands(readme.docker_section(text))
        self.ran: set[str] = set()

    def take(self, text: str) -> readme.Command:
        """The README command whose text is exactly ``text``; marked as run."""
        matches = [command for command in self.commands if command.text == text]
        assert matches, f"the README's Docker section has no command {text!r}"
        self.ran.add(text)
        return matches[0]

    def not_run(self) -> list[str]:
        """Commands of the section the test has not run."""
        return [command.text for command in self.commands if command.text not in self.ran]


@contextlib.contextmanager
def one_run_at_a_time() -> Iterator[None]:
    """One compose test per machine at a time: they would share ports and the kit's engine."""
    with LOCK.open("w") as lock:
        deadline = time.monotonic() + 900
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(f"another compose test has held {LOCK} for 15 minutes")
                time.sleep(2)
        yield


def tear_down(stack: Stack, volumes_before: set[str]) -> None:
    """Take the project down whatever state it is in; remove the volumes it left."""
    stack.compose(*PROFILES, "down", "-v", "--remove-orphans", timeout_s=180)
    for container in stack.project_leftovers()["containers"]:
        stack.engine.docker("rm", "-f", "-v", container)
    for volume in stack.volumes() - volumes_before:
        stack.engine.docker("volume", "rm", volume)


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    """The engine with the base images and the project's image; the stack is taken down after."""
    with one_run_at_a_time():
        engine = start_engine()
        try:
            if engine.kit is not None:
                images = engine.kit_run("images", *images_to_provide())
                assert images.returncode == 0, images.stderr
                # Compose builds without the host network: every layer must come from the cache.
                built = engine.kit_run("build", "-t", IMAGE, ".")
                assert built.returncode == 0, built.stdout[-3000:] + built.stderr
            stack = Stack(engine, Ports.choose())
            stack.compose(*PROFILES, "down", "-v", "--remove-orphans")  # a run that was killed
            stack.remove_project_images()
            stack.volumes_before = stack.volumes()
            try:
                yield stack
            finally:
                tear_down(stack, stack.volumes_before)
        finally:
            engine.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Add the containers' logs to the report of a test that failed."""
    report = yield
    stack = getattr(item, "funcargs", {}).get("stack")
    if report.failed and isinstance(stack, Stack):
        with contextlib.suppress(Exception):
            report.sections.append(("compose logs", stack.logs()))
    return report
