"""The Kubernetes manifests (issue 11).

kubernetes-validate --strict checks every built-in kind against the API schema offline. It has
no schema for the ServiceMonitor CRD and only warns (exit 0) for unknown kinds, so its output is
checked for a "passed" line per built-in resource, and the ServiceMonitor's structure is
checked here. The rest asserts how the pieces fit together: labels and selectors, ports, probes,
the token Secret, the config volume, the drain timeout and the image's user.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from . import REPO, describe, find_tool, run_tool

MANIFESTS = sorted((REPO / "deploy" / "kubernetes").glob("*.yaml"))
CUSTOM_KINDS = {"ServiceMonitor"}
DOCKERFILE = REPO / "Dockerfile"


def documents() -> list[dict[str, Any]]:
    return [doc for path in MANIFESTS for doc in yaml.safe_load_all(path.read_text()) if doc]


def one(kind: str) -> dict[str, Any]:
    (doc,) = [doc for doc in documents() if doc["kind"] == kind]
    return doc


def pod_spec() -> dict[str, Any]:
    return one("Deployment")["spec"]["template"]["spec"]


def container() -> dict[str, Any]:
    (main,) = pod_spec()["containers"]
    return main


def container_port(name_or_number: str | int) -> int:
    if isinstance(name_or_number, int):
        return name_or_number
    (port,) = [p["containerPort"] for p in container()["ports"] if p["name"] == name_or_number]
    return port


def routes_config() -> dict[str, Any]:
    return yaml.safe_load(one("ConfigMap")["data"]["routes.yaml"])


def seconds(duration: str | float) -> float:
    if isinstance(duration, int | float):
        return float(duration)
    value, unit = re.fullmatch(r"([\d.]+)(ms|s|m|h)?", duration).groups()
    return float(value) * {"ms": 0.001, "s": 1, None: 1, "m": 60, "h": 3600}[unit]


def test_manifests_exist() -> None:
    kinds = {doc["kind"] for doc in documents()}
    assert kinds == {
        "ConfigMap",
        "Secret",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "ServiceMonitor",
    }


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifest_passes_kubernetes_validate(path: Path) -> None:
    result = run_tool(find_tool("kubernetes-validate"), "--strict", path)
    assert result.returncode == 0, describe(result)
    for doc in yaml.safe_load_all(path.read_text()):
        if doc and doc["kind"] not in CUSTOM_KINDS:
            # An unknown apiVersion/kind only warns: require a real pass for built-in kinds.
            resource = f"{doc['kind'].lower()}/{doc['metadata']['name']}"
            assert f"passed for resource {resource}" in result.stdout, describe(result)


def test_manifests_are_namespace_less() -> None:
    for doc in documents():
        assert "namespace" not in doc["metadata"], doc["metadata"]["name"]


def test_deployment_runs_several_replicas_spread_out() -> None:
    spec = one("Deployment")["spec"]
    assert spec["replicas"] >= 2
    pod = pod_spec()
    assert pod.get("topologySpreadConstraints") or pod.get("affinity", {}).get("podAntiAffinity")


def test_selectors_match_pod_labels() -> None:
    deployment = one("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    assert one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"] == selector
    assert one("Service")["spec"]["selector"].items() <= labels.items()


def test_disruption_budget_leaves_replicas_serving() -> None:
    replicas = one("Deployment")["spec"]["replicas"]
    budget = one("PodDisruptionBudget")["spec"]
    if "minAvailable" in budget:
        assert 1 <= budget["minAvailable"] < replicas
    else:
        assert 1 <= budget["maxUnavailable"] < replicas


def test_probes_hit_health_endpoints_on_admin_port() -> None:
    main = container()
    admin_port = routes_config()["admin"]["port"]
    assert main["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert main["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        if probe in main:
            assert container_port(main[probe]["httpGet"]["port"]) == admin_port == 9901


def test_grace_period_exceeds_drain_timeout() -> None:
    drain = seconds(routes_config().get("shutdown", {}).get("drain_timeout", "20s"))
    grace = pod_spec()["terminationGracePeriodSeconds"]
    pre_stop = container().get("lifecycle", {}).get("preStop", {})
    sleep = 0.0
    if "exec" in pre_stop:
        sleep = float(pre_stop["exec"]["command"][-1])
    elif "sleep" in pre_stop:
        sleep = float(pre_stop["sleep"]["seconds"])
    assert grace > 20
    assert grace > drain + sleep, f"grace {grace}s <= drain {drain}s + preStop {sleep}s"


def test_admin_token_comes_from_the_secret() -> None:
    token_env = routes_config()["admin"].get("token_env", "STRANGLER_ADMIN_TOKEN")
    assert token_env == "STRANGLER_ADMIN_TOKEN"
    (env,) = [e for e in container()["env"] if e["name"] == token_env]
    assert "value" not in env
    reference = env["valueFrom"]["secretKeyRef"]
    secret = one("Secret")
    assert reference["name"] == secret["metadata"]["name"]
    assert reference["key"] in secret.get("stringData", {}) | secret.get("data", {})


def test_secret_is_marked_as_a_placeholder() -> None:
    text = (REPO / "deploy" / "kubernetes" / "secret.yaml").read_text()
    assert "EXAMPLE" in text and "placeholder" in text
    assert "CHANGE-ME" in one("Secret")["stringData"]["token"]


def test_config_directory_mounted_from_the_configmap() -> None:
    configmap = one("ConfigMap")
    (volume,) = [v for v in pod_spec()["volumes"] if "configMap" in v]
    assert volume["configMap"]["name"] == configmap["metadata"]["name"]
    (mount,) = [m for m in container()["volumeMounts"] if m["name"] == volume["name"]]
    # A subPath mount never sees ConfigMap updates, and the proxy hot-reloads the file.
    assert "subPath" not in mount
    assert mount["mountPath"] == "/etc/strangler"
    args = container()["args"]
    config_path = args[args.index("--config") + 1]
    assert config_path.startswith(mount["mountPath"] + "/")
    assert config_path.rsplit("/", 1)[1] in configmap["data"]


def test_routes_config_listens_for_the_pod() -> None:
    config = routes_config()
    assert config["version"] == 1
    assert (config["listen"]["host"], config["listen"]["port"]) == ("0.0.0.0", 8080)
    assert (config["admin"]["host"], config["admin"]["port"]) == ("0.0.0.0", 9901)
    upstreams = config["upstreams"]
    assert upstreams["legacy"] == upstreams["legacy"] | {
        "url": "http://monolith:8000",
        "role": "legacy",
    }
    assert upstreams["orders"] == upstreams["orders"] | {
        "url": "http://orders:8000",
        "role": "extracted",
    }
    for route in config["routes"]:
        assert route["upstream"] in upstreams


def test_routes_config_loads_in_strangler() -> None:
    try:
        from strangler.loader import parse_config
    except ImportError as exc:  # the loader is written concurrently
        pytest.skip(f"strangler.loader not importable: {exc}")
    text = one("ConfigMap")["data"]["routes.yaml"]
    config = parse_config(text, "deploy/kubernetes/configmap.yaml:routes.yaml")
    assert config.admin.port == 9901


def test_container_is_locked_down() -> None:
    pod_security = pod_spec()["securityContext"]
    security = container()["securityContext"]
    assert pod_security["runAsNonRoot"] is True
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    # The uid the pod asks for is the one the image creates (Dockerfile USER).
    user = re.search(r"^USER\s+(\d+)(?::(\d+))?", DOCKERFILE.read_text(), re.M)
    assert user, "Dockerfile has no numeric USER"
    assert pod_security["runAsUser"] == int(user.group(1))
    resources = container()["resources"]
    assert resources["requests"]["cpu"] and resources["requests"]["memory"]
    assert resources["limits"]["memory"]


def test_prometheus_annotations_point_at_admin_metrics() -> None:
    annotations = one("Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == container_port("admin")
    assert annotations.get("prometheus.io/path", "/metrics") == "/metrics"


def test_service_ports() -> None:
    ports = {port["name"]: port for port in one("Service")["spec"]["ports"]}
    assert ports["http"]["port"] == 80
    assert container_port(ports["http"]["targetPort"]) == 8080
    assert container_port(ports["admin"]["targetPort"]) == 9901


SERVICE_MONITOR_SPEC_KEYS = {
    "selector",
    "endpoints",
    "namespaceSelector",
    "jobLabel",
    "targetLabels",
    "podTargetLabels",
    "sampleLimit",
}
SERVICE_MONITOR_ENDPOINT_KEYS = {
    "port",
    "targetPort",
    "path",
    "scheme",
    "interval",
    "scrapeTimeout",
    "honorLabels",
    "relabelings",
    "metricRelabelings",
    "bearerTokenSecret",
    "authorization",
    "params",
}


def test_service_monitor_structure() -> None:
    monitor = one("ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", monitor["metadata"]["name"])
    spec = monitor["spec"]
    assert set(spec) <= SERVICE_MONITOR_SPEC_KEYS, set(spec) - SERVICE_MONITOR_SPEC_KEYS
    service = one("Service")
    assert spec["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    service_ports = {port["name"]: port for port in service["spec"]["ports"]}
    assert spec["endpoints"]
    for endpoint in spec["endpoints"]:
        assert set(endpoint) <= SERVICE_MONITOR_ENDPOINT_KEYS, endpoint
        # `port` names a Service port; it must lead to the admin listener.
        assert container_port(service_ports[endpoint["port"]]["targetPort"]) == 9901
        assert endpoint.get("path", "/metrics") == "/metrics"
        assert endpoint.get("scheme", "http") == "http"
        for key in ("interval", "scrapeTimeout"):
            if key in endpoint:
                assert re.fullmatch(r"\d+(ms|s|m|h)", endpoint[key]), endpoint[key]
