"""The Kubernetes manifests under deploy/k8s/: valid against the Kubernetes schemas, and wired.

The schemas are kubernetes-validate's (it ships them: no cluster, no network), strict, so
an unknown or misspelt field fails too. Then what a schema cannot see: selectors that find
their pods, Services whose ports exist, Secrets that hold the keys asked for, the swarm's
Job (Indexed, one pod per host) aimed at the service's Service, and every setting parsed by
the service's and the swarm's own parsers.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from event_service.settings import settings_from_env
from ping_client.cli import config_from_args, swarm_parser

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
# An old enough version that current clusters serve every API used here.
KUBERNETES_VERSION = "1.30"
NAMESPACE = "ws-leak-lab"
WORKLOADS = ("Deployment", "StatefulSet", "Job")

Doc = dict[str, Any]


def load() -> list[tuple[str, Doc]]:
    """(file relative to deploy/k8s, document) for every document of every manifest."""
    found = []
    for path in sorted(K8S.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                found.append((str(path.relative_to(K8S)), doc))
    return found


DOCS = load()


def named(kind: str, name: str) -> Doc:
    [doc] = [d for _, d in DOCS if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def pod_spec(workload: Doc) -> Doc:
    spec: Doc = workload["spec"]["template"]["spec"]
    return spec


def container_env(container: Doc) -> dict[str, str]:
    """A container's environment with Secret references resolved from the manifests."""
    env = {}
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        else:
            ref = var["valueFrom"]["secretKeyRef"]
            env[var["name"]] = named("Secret", ref["name"])["stringData"][ref["key"]]
    return env


def test_there_are_manifests_for_each_part() -> None:
    kinds = {(d["kind"], d["metadata"]["name"]) for _, d in DOCS}
    assert {("Deployment", "event-service"), ("Service", "event-service"),
            ("StatefulSet", "rabbitmq"), ("Job", "ping-swarm")} <= kinds  # fmt: skip


@pytest.mark.parametrize(("path", "doc"), DOCS, ids=[f"{p}:{d['kind']}" for p, d in DOCS])
def test_each_manifest_is_valid_against_the_kubernetes_schema(path: str, doc: Doc) -> None:
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_everything_lives_in_the_lab_namespace() -> None:
    for path, doc in DOCS:
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == NAMESPACE, path


def test_workload_selectors_match_their_own_pods() -> None:
    for path, doc in DOCS:
        if doc["kind"] in ("Deployment", "StatefulSet"):
            labels = doc["spec"]["template"]["metadata"]["labels"]
            assert doc["spec"]["selector"]["matchLabels"].items() <= labels.items(), path


def test_every_service_finds_pods_and_their_named_ports() -> None:
    pods = [d["spec"]["template"] for _, d in DOCS if d["kind"] in WORKLOADS]
    for path, service in ((p, d) for p, d in DOCS if d["kind"] == "Service"):
        selector = service["spec"]["selector"].items()
        matching = [pod for pod in pods if selector <= pod["metadata"]["labels"].items()]
        assert matching, f"{path}: Service {service['metadata']['name']} selects no pod"
        ports = {
            port["name"]
            for pod in matching
            for container in pod["spec"]["containers"]
            for port in container.get("ports", [])
        }
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports, path


def test_secret_references_name_keys_that_exist() -> None:
    for _, doc in DOCS:
        if doc["kind"] in WORKLOADS:
            for container in pod_spec(doc)["containers"]:
                container_env(container)  # raises on a missing Secret or key


def test_the_service_settings_parse_and_keep_the_story() -> None:
    """The service's env goes through its own parser; keepalive off; the fanout broker."""
    [container] = pod_spec(named("Deployment", "event-service"))["containers"]
    settings = settings_from_env(container_env(container))
    assert settings.host == "0.0.0.0" and settings.port == 8000
    assert settings.read_handler in ("missing", "fixed")
    assert settings.ws_ping_interval_s is None and settings.ws_ping_timeout_s is None
    assert settings.amqp_url == named("Secret", "amqp")["stringData"]["url"]
    assert "rabbitmq:5672" in settings.amqp_url  # the broker's Service
    assert named("Service", "rabbitmq")["spec"]["ports"][0]["port"] == 5672
    assert named("Deployment", "event-service")["spec"]["replicas"] >= 2


def test_the_swarm_is_an_indexed_job_one_pod_per_host() -> None:
    job = named("Job", "ping-swarm")
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"] >= 2  # hosts, all at once
    [term] = pod_spec(job)["affinity"]["podAntiAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"].items() <= (
        spec["template"]["metadata"]["labels"].items()
    )


def test_the_swarm_command_parses_and_aims_at_the_service() -> None:
    """The swarm's command line, its variables filled in, goes through the swarm's parser."""
    [container] = pod_spec(named("Job", "ping-swarm"))["containers"]
    env = container_env(container)
    [script] = container["args"]
    [line] = [line for line in script.replace("\\\n", " ").splitlines() if "-m ping_client" in line]
    words = shlex.split(line)
    argv = [env.get(word[1:], word) if word.startswith("$") else word for word in words]
    config = config_from_args(swarm_parser().parse_args(argv[argv.index("ping_client") + 1 :]))
    uri = config.validate()
    service = named("Service", "event-service")
    assert (uri.host, uri.port) == (
        service["metadata"]["name"],
        service["spec"]["ports"][0]["port"],
    )
    assert config.allow_remote and config.clients == int(env["SWARM_CLIENTS"])
    assert "summary" in script  # the line the README reads back
