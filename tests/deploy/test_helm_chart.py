"""deploy/helm/arroyo, rendered by the real helm binary (deploy/tools.sh builds it once
with go install and caches it): it lints clean, every object it renders from each values
file in ci/ is valid against the Kubernetes schemas of every version the chart claims
(kubernetes-validate, strict: unknown fields are errors), and each broker kind gets the
KEDA trigger of its listener.

KEDA's ScaledObject and TriggerAuthentication and the Prometheus Operator's
ServiceMonitor are custom resources, outside the Kubernetes schemas: they are checked
against the fields their CRDs define (:data:`CUSTOM`), and every trigger's metadata value
must be a string (the CRD types it map[string]string).
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "arroyo"
VALUES = {path.name.removesuffix("-values.yaml"): path for path in (CHART / "ci").glob("*.yaml")}
TRIGGERS = {"kafka": "kafka", "redis": "redis-streams", "rabbitmq": "rabbitmq", "zmq": "prometheus"}
"""The values file of each broker kind, and the KEDA trigger its listener gets."""

TRIGGER_METADATA = {
    "kafka": {"bootstrapServers", "consumerGroup", "topic", "lagThreshold"},
    "redis-streams": {"address", "stream", "consumerGroup", "lagCount"},
    "rabbitmq": {"queueName", "mode", "value"},
    "prometheus": {"serverAddress", "query", "threshold"},
}
"""What each trigger needs in its metadata (KEDA's scaler documentation)."""

CUSTOM: dict[tuple[str, str], set[str]] = {
    ("keda.sh/v1alpha1", "ScaledObject"): {
        "scaleTargetRef",
        "minReplicaCount",
        "maxReplicaCount",
        "idleReplicaCount",
        "pollingInterval",
        "cooldownPeriod",
        "initialCooldownPeriod",
        "triggers",
        "advanced",
        "fallback",
    },
    ("keda.sh/v1alpha1", "TriggerAuthentication"): {
        "secretTargetRef",
        "env",
        "hashiCorpVault",
        "podIdentity",
        "configMapTargetRef",
    },
    ("monitoring.coreos.com/v1", "ServiceMonitor"): {
        "selector",
        "endpoints",
        "namespaceSelector",
        "jobLabel",
        "targetLabels",
        "podTargetLabels",
        "sampleLimit",
    },
}
"""The custom resources the chart renders, with the fields their CRDs allow in spec."""

NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def missing(what: str) -> None:
    """Fail under CI=true (the test command must have it), skip elsewhere."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(what, pytrace=False)
    pytest.skip(what)


@pytest.fixture(scope="module")
def helm() -> str:
    done = subprocess.run(
        [str(REPO / "deploy" / "tools.sh"), "helm"], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        missing(f"no helm binary: {done.stderr.strip()}")
    return done.stdout.strip()


def claimed_versions() -> list[str]:
    """Every Kubernetes version kubernetes-validate has schemas for that the chart's
    kubeVersion (``>=1.27.0-0``) accepts."""
    try:
        from kubernetes_validate.utils import all_versions
    except ImportError:
        missing("kubernetes-validate is not installed (pip install kubernetes-validate)")
    claim = yaml.safe_load((CHART / "Chart.yaml").read_text())["kubeVersion"]
    match = re.fullmatch(r">=(\d+)\.(\d+)\.0-0", claim)
    assert match, f"unexpected kubeVersion {claim!r}"
    lowest = (int(match[1]), int(match[2]))
    versions = [v for v in all_versions() if tuple(map(int, v.split(".")[:2])) >= lowest]
    assert len(versions) >= 5, versions
    return versions


Render = Callable[..., list[dict[str, Any]]]


@pytest.fixture(scope="module")
def render(helm: str) -> Render:
    """``render(values_file, kube_version="1.30.0", *more_flags)``: the objects."""

    def run(values: Path, kube_version: str = "1.30.0", *flags: str) -> list[dict[str, Any]]:
        command = [helm, "template", "demo", str(CHART), "-f", str(values)]
        done = subprocess.run(
            [*command, "--namespace", "beamline", "--kube-version", kube_version, *flags],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
        return [doc for doc in yaml.safe_load_all(done.stdout) if doc]

    return run


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def pipeline(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (config,) = of_kind(objects, "ConfigMap")
    return yaml.safe_load(config["data"]["pipeline.yaml"])  # type: ignore[no-any-return]


@pytest.mark.parametrize("kind", sorted(VALUES))
def test_lint_is_clean(helm: str, kind: str) -> None:
    done = subprocess.run(
        [helm, "lint", "--strict", str(CHART), "-f", str(VALUES[kind])],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in done.stdout
    assert "[WARNING]" not in done.stdout and "[ERROR]" not in done.stdout, done.stdout


@pytest.mark.parametrize("kind", sorted(VALUES))
def test_every_object_is_valid_for_every_claimed_kubernetes_version(
    render: Render, kind: str
) -> None:
    from kubernetes_validate.utils import SchemaNotFoundError, ValidationError, validate

    for version in claimed_versions():
        for obj in render(VALUES[kind], version):
            where = f"{kind}, Kubernetes {version}: {obj['kind']} {obj['metadata']['name']}"
            assert NAME.fullmatch(obj["metadata"]["name"]), where
            custom = CUSTOM.get((obj["apiVersion"], obj["kind"]))
            if custom is not None:
                assert set(obj["spec"]) <= custom, f"{where}: {set(obj['spec']) - custom}"
                continue
            try:
                validate(obj, version, strict=True)
            except ValidationError as exc:
                pytest.fail(f"{where}: {exc.message} at {list(exc.absolute_path)}")
            except SchemaNotFoundError as exc:
                pytest.fail(f"{where}: {exc.message}")


def test_the_validation_catches_a_bad_object() -> None:
    """The schemas are live: a field Kubernetes does not know fails."""
    from kubernetes_validate.utils import ValidationError, validate

    bad = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "x"},
        "spec": {"maxUnavailable": 1, "selector": {}, "maxUnavaliable": 1},
    }
    with pytest.raises(ValidationError, match="maxUnavaliable"):
        validate(bad, claimed_versions()[0], strict=True)


@pytest.mark.parametrize("kind", sorted(VALUES))
def test_each_broker_kind_renders_the_trigger_of_its_listener(render: Render, kind: str) -> None:
    objects = render(VALUES[kind])
    (scaled,) = of_kind(objects, "ScaledObject")
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == TRIGGERS[kind]
    metadata = trigger["metadata"]
    assert all(isinstance(value, str) for value in metadata.values()), metadata
    assert TRIGGER_METADATA[trigger["type"]] <= set(metadata), metadata
    names = {d["metadata"]["name"] for d in of_kind(objects, "Deployment")}
    assert scaled["spec"]["scaleTargetRef"]["name"] in names
    auth = trigger.get("authenticationRef")
    if auth is not None:
        (authentication,) = of_kind(objects, "TriggerAuthentication")
        assert authentication["metadata"]["name"] == auth["name"]


def test_the_kafka_trigger_reads_the_listener_and_caps_replicas_at_the_partitions(
    render: Render,
) -> None:
    scaled = of_kind(render(VALUES["kafka"]), "ScaledObject")[0]
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["metadata"] == {
        "bootstrapServers": "kafka-bootstrap.data.svc:9092",  # ${ARROYO_KAFKA} from env
        "topic": "frames",
        "consumerGroup": "integrate",
        "lagThreshold": "500",
        "offsetResetPolicy": "earliest",
        "allowIdleConsumers": "false",
    }
    assert scaled["spec"]["maxReplicaCount"] == 6  # partitions: ${ARROYO_PARTITIONS:-6}, not 12


def test_the_redis_trigger_uses_the_group_lag_and_the_password_secret(render: Render) -> None:
    objects = render(VALUES["redis"])
    (trigger,) = of_kind(objects, "ScaledObject")[0]["spec"]["triggers"]
    assert trigger["metadata"] == {
        "address": "redis.data.svc:6380",
        "stream": "frames",
        "consumerGroup": "tagging",
        "lagCount": "200",
        "enableTLS": "true",
    }
    (authentication,) = of_kind(objects, "TriggerAuthentication")
    assert authentication["spec"]["secretTargetRef"] == [
        {"parameter": "password", "name": "demo-arroyo-secrets", "key": "REDIS_PASSWORD"}
    ]


def test_the_prometheus_trigger_asks_for_the_blocks_lag(render: Render) -> None:
    (trigger,) = of_kind(render(VALUES["zmq"]), "ScaledObject")[0]["spec"]["triggers"]
    assert trigger["metadata"] == {
        "serverAddress": "http://prometheus.monitoring.svc:9090",
        "query": (
            "sum(max by (topic, partition, stream, group, queue) "
            '(arroyo_lag_messages{namespace="beamline", block="reduce"})) '
            'or sum(arroyo_queue_depth{namespace="beamline", block="reduce"})'
        ),
        "threshold": "1000",
    }


@pytest.mark.parametrize("kind", sorted(VALUES))
def test_one_deployment_per_block_with_probes_and_metrics(render: Render, kind: str) -> None:
    objects = render(VALUES[kind])
    blocks = [b["name"] for b in pipeline(objects)["blocks"]]
    deployments = of_kind(objects, "Deployment")
    assert sorted(d["metadata"]["annotations"]["arroyo.dev/block"] for d in deployments) == sorted(
        blocks
    )
    services = {s["metadata"]["name"]: s for s in of_kind(objects, "Service")}
    budgets = {p["metadata"]["name"]: p for p in of_kind(objects, "PodDisruptionBudget")}
    for deployment in deployments:
        name = deployment["metadata"]["name"]
        block = deployment["metadata"]["annotations"]["arroyo.dev/block"]
        pod = deployment["spec"]["template"]
        labels = pod["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
        (container,) = pod["spec"]["containers"]
        args = container["args"]
        assert args[:4] == ["run", "/etc/arroyo/pipeline.yaml", "--block", block]
        assert args[args.index("--metrics-port") + 1] == "9400"
        assert container["ports"] == [{"name": "metrics", "containerPort": 9400, "protocol": "TCP"}]
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
        assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
        assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
        assert pod["metadata"]["annotations"]["prometheus.io/port"] == "9400"
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert {"/etc/arroyo", "/var/lib/arroyo", "/tmp"} <= mounts
        assert services[name]["spec"]["selector"].items() <= labels.items()
        if name in budgets:
            assert budgets[name]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    monitors = of_kind(objects, "ServiceMonitor")
    if monitors:
        (monitor,) = monitors
        selector = monitor["spec"]["selector"]["matchLabels"]
        assert all(selector.items() <= s["metadata"]["labels"].items() for s in services.values())
        assert monitor["spec"]["endpoints"][0]["port"] == "metrics"


@pytest.mark.parametrize("kind", ["kafka", "redis", "rabbitmq"])
def test_the_configmap_holds_a_pipeline_arroyo_builds(
    render: Render, kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the pods mount as /etc/arroyo (pipeline.yaml and the operator files) builds
    with Arroyo's own config checks (nothing connects), with the chart's environment."""
    from arroyo.build import build_file

    objects = render(VALUES[kind])
    (config,) = of_kind(objects, "ConfigMap")
    for file, content in config["data"].items():
        (tmp_path / file).write_text(content)
    for secret in of_kind(objects, "Secret"):
        for key, value in secret.get("data", {}).items():
            if "." in key:  # a TLS file: where the pipeline expects it
                (tmp_path / key).write_bytes(base64.b64decode(value))
                text = (tmp_path / "pipeline.yaml").read_text()
                (tmp_path / "pipeline.yaml").write_text(
                    text.replace(f"/etc/arroyo-tls/{key}", str(tmp_path / key))
                )
            else:
                monkeypatch.setenv(key, base64.b64decode(value).decode())
    (deployment, *_) = of_kind(objects, "Deployment")
    for variable in deployment["spec"]["template"]["spec"]["containers"][0]["env"]:
        monkeypatch.setenv(variable["name"], variable["value"])
    built = build_file(tmp_path / "pipeline.yaml")
    names = [b["name"] for b in pipeline(objects)["blocks"]]
    assert [b.block.name for b in built] == names


def test_secrets_and_tls_files_reach_the_pods(render: Render) -> None:
    objects = render(VALUES["redis"])
    secrets = {s["metadata"]["name"]: s for s in of_kind(objects, "Secret")}
    password = secrets["demo-arroyo-secrets"]["data"]["REDIS_PASSWORD"]
    assert base64.b64decode(password) == b"not-a-real-password"
    assert "ca.crt" in secrets["demo-arroyo-tls"]["data"]
    (deployment,) = of_kind(objects, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["envFrom"] == [{"secretRef": {"name": "demo-arroyo-secrets"}}]
    tls = next(v for v in pod["volumes"] if v["name"] == "tls")
    assert tls["secret"]["secretName"] == "demo-arroyo-tls"
    assert {"name": "tls", "mountPath": "/etc/arroyo-tls", "readOnly": True} in container[
        "volumeMounts"
    ]
    assert "not-a-real-password" not in yaml.safe_dump(of_kind(objects, "ConfigMap"))


def test_operator_code_from_a_configmap_of_ones_own(render: Render) -> None:
    (deployment,) = of_kind(render(VALUES["zmq"]), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == "registry.example.org/beamline/arroyo-operators:2026.11"
    sources = next(v for v in pod["volumes"] if v["name"] == "pipeline")["projected"]["sources"]
    names = [s["configMap"]["name"] for s in sources]
    assert names == ["demo-arroyo-pipeline", "beamline-operators"]


@pytest.mark.parametrize(
    ("values", "error"),
    [
        (
            "pipeline:\n  blocks:\n    - name: w\n      listener: kafka://k:9092/frames?group=g\n"
            "defaults:\n  autoscaling: {enabled: true}\n",
            'block "w": autoscaling a Kafka listener needs blocks.w.autoscaling.partitions',
        ),
        (
            "pipeline:\n  blocks:\n    - name: w\n      listener: memory://x\n"
            "blocks:\n  workers: {replicas: 2}\n",
            "blocks.workers: no block of that name in pipeline.blocks (blocks: w)",
        ),
        (
            "pipeline:\n  blocks:\n    - name: w\n"
            "      listener: amqp://u:secret@rabbit:5672/%2F?queue=q\n"
            "defaults:\n  autoscaling: {enabled: true}\n",
            'block "w": its RabbitMQ URL has a password',
        ),
        ("pipeline:\n  blocks: []\n", "pipeline.blocks is empty"),
        (  # a typo: values.schema.json knows the keys
            "pipeline:\n  blocks:\n    - name: w\n      listener: memory://x\n"
            "defaults:\n  autoscalling: {enabled: true}\n",
            "additional properties 'autoscalling' not allowed",
        ),
    ],
)
def test_values_that_cannot_work_are_refused_with_the_reason(
    helm: str, tmp_path: Path, values: str, error: str
) -> None:
    path = tmp_path / "values.yaml"
    path.write_text(values)
    done = subprocess.run(
        [helm, "template", "demo", str(CHART), "-f", str(path), "--kube-version", "1.30.0"],
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0
    assert error in done.stderr, done.stderr
