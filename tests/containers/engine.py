"""The Docker engine of the compose test: the one the client reaches, or the kit's.

On a normal Docker host the ``docker`` client reaches an engine (``DOCKER_HOST`` or the default
socket) that can pull the base images. On a machine without one, the kit at
``$DOCKER_ENGINE_KIT`` (default ``../shared/docker/engine.sh`` from the project root) starts a
sandboxed engine and builds stand-ins for the official base images, since no registry is
reachable; the test stops that engine at the end. Without either the test is skipped, saying
why, except under ``CI=true``, where it fails: CI must really run it.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_KIT = "../shared/docker/engine.sh"


def is_ci() -> bool:
    """Whether this runs in CI, where the compose test must not be skipped."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def skip_or_fail(reason: str) -> None:
    """Skip with ``reason``; under CI=true fail with it instead."""
    if is_ci():
        pytest.fail(f"CI=true and the compose test cannot run: {reason}", pytrace=False)
    pytest.skip(f"compose test skipped: {reason}")


@dataclasses.dataclass
class Engine:
    """A Docker engine the client reaches with ``env``; ``kit`` when the kit runs it."""

    env: dict[str, str]
    compose: list[str]
    kit: Path | None = None
    nofile_hard: int | None = None

    def docker(self, *args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
        """Run the docker client against this engine."""
        return subprocess.run(
            ["docker", *args], env=self.env, capture_output=True, text=True,
            timeout=timeout_s, stdin=subprocess.DEVNULL, check=False,
        )  # fmt: skip

    def kit_run(self, *args: str, timeout_s: float = 900) -> subprocess.CompletedProcess[str]:
        """Run the kit's ``engine.sh``; its progress lines go to the test's captured stderr."""
        assert self.kit is not None
        result = subprocess.run(
            [str(self.kit), *args], env=self.env, capture_output=True, text=True,
            timeout=timeout_s, stdin=subprocess.DEVNULL, check=False, cwd=ROOT,
        )  # fmt: skip
        sys.stderr.write(result.stderr)
        return result

    def stop(self) -> None:
        """Stop the kit's engine (an engine the test did not start is left alone)."""
        if self.kit is not None:
            self.kit_run("stop")


def base_env() -> dict[str, str]:
    """A clean environment for the client: none of the shell's compose variables."""
    keep = ("PATH", "HOME", "LANG", "DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_CONFIG",
            "DOCKER_ENGINE_WORK")  # fmt: skip
    return {name: os.environ[name] for name in keep if name in os.environ}


def compose_command(env: Mapping[str, str]) -> list[str] | None:
    """``docker compose`` (v2) when the client has it, else ``docker-compose`` (v1), or None."""
    if shutil.which("docker"):
        v2 = subprocess.run(["docker", "compose", "version"], env=env, capture_output=True,
                            stdin=subprocess.DEVNULL, timeout=20, check=False)  # fmt: skip
        if v2.returncode == 0:
            return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


def engine_answers(env: Mapping[str, str]) -> bool:
    """Whether the docker client reaches an engine with ``env``."""
    if not shutil.which("docker"):
        return False
    result = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"], env=env,
                            capture_output=True, stdin=subprocess.DEVNULL, timeout=20,
                            check=False)  # fmt: skip
    return result.returncode == 0


def parse_exports(text: str) -> dict[str, str]:
    """``export NAME=value`` and ``NAME=value`` lines of a shell snippet (comments skipped)."""
    values = {}
    for line in text.splitlines():
        words = shlex.split(line, comments=True)
        if words[:1] == ["export"]:
            words = words[1:]
        if len(words) == 1 and "=" in words[0]:
            name, _, value = words[0].partition("=")
            values[name] = value
    return values


def kit_path() -> Path:
    """The kit's ``engine.sh``: ``$DOCKER_ENGINE_KIT``, relative to the project root."""
    return (ROOT / os.environ.get("DOCKER_ENGINE_KIT", DEFAULT_KIT)).resolve()


def start_engine() -> Engine:
    """The engine the client reaches, or the kit's, started here; skip (fail in CI) if none."""
    env = base_env()
    kit = kit_path()
    kit_socket = None
    if kit.is_file():
        kit_socket = parse_exports(Engine(env, [], kit=kit).kit_run("env").stdout).get(
            "ENGINE_DOCKER_HOST"
        )
    if env.get("DOCKER_HOST") != kit_socket and engine_answers(env):
        compose = compose_command(env)
        if compose is None:
            skip_or_fail("a Docker engine answers but neither `docker compose` nor "
                         "docker-compose is installed")  # fmt: skip
        return Engine(env, compose or [])
    if not kit.is_file():
        skip_or_fail(f"no Docker engine answers and there is no engine kit at {kit} "
                     "(set DOCKER_ENGINE_KIT)")  # fmt: skip
    if os.geteuid() != 0:
        skip_or_fail(f"no Docker engine answers and the engine kit {kit} needs root")
    engine = Engine(env, [], kit=kit)
    started = engine.kit_run("start")
    if started.returncode != 0:
        pytest.fail(f"{kit} start failed:\n{started.stderr}", pytrace=False)
    env.update(parse_exports(started.stdout))
    facts = parse_exports(engine.kit_run("env").stdout)
    compose = compose_command(env) or [facts.get("ENGINE_COMPOSE", "docker-compose")]
    return Engine(env, compose, kit=kit, nofile_hard=int(facts["ENGINE_NOFILE_HARD"]))
