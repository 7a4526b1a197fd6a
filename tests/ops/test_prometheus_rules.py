"""Prometheus scrape config, recording rules and alerts (issue 7).

promtool checks the config and both rule files and runs the rule unit tests in tests/promtool/.
Without promtool, the structural checks still run: rule names and labels, the metric names the
rules select, and that the unit tests cover every recording rule and every alert both firing and
not firing.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from . import KNOWN_METRICS, REPO, describe, find_tool, run_tool, selected_metrics

PROMETHEUS_CONFIG = REPO / "config" / "prometheus.yml"
RECORDING_RULES = REPO / "config" / "prometheus" / "recording_rules.yml"
ALERT_RULES = REPO / "config" / "prometheus" / "alert_rules.yml"
RULE_FILES = (RECORDING_RULES, ALERT_RULES)
PROMTOOL_TESTS = sorted((REPO / "tests" / "promtool").glob("*.yml"))

SEVERITIES = {"critical", "warning", "info"}
RECORD_NAME = re.compile(r"^strangler:[a-z0-9_]+:[a-z0-9_]+$")


def rules(path: Path) -> list[dict[str, Any]]:
    document = yaml.safe_load(path.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def recording_rules() -> dict[str, str]:
    return {rule["record"]: rule["expr"] for rule in rules(RECORDING_RULES)}


def alert_rules() -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for rule in rules(ALERT_RULES)}


def promtool_tests() -> list[dict[str, Any]]:
    return [test for path in PROMTOOL_TESTS for test in yaml.safe_load(path.read_text())["tests"]]


# --- promtool -------------------------------------------------------------------------------


def test_scrape_config_passes_promtool() -> None:
    result = run_tool(find_tool("promtool"), "check", "config", PROMETHEUS_CONFIG)
    assert result.returncode == 0, describe(result)
    # The rule files resolved relative to the config and were checked too.
    assert "2 rule files found" in result.stdout, describe(result)


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_rule_file_passes_promtool(path: Path) -> None:
    result = run_tool(find_tool("promtool"), "check", "rules", path)
    assert result.returncode == 0, describe(result)


def test_rule_unit_tests_pass() -> None:
    assert PROMTOOL_TESTS, "no promtool unit tests in tests/promtool/"
    result = run_tool(find_tool("promtool"), "test", "rules", *PROMTOOL_TESTS)
    assert result.returncode == 0, describe(result)


def commented_kubernetes_sd_job() -> list[dict[str, Any]]:
    text = PROMETHEUS_CONFIG.read_text()
    block = re.search(r"# BEGIN kubernetes_sd example[^\n]*\n(.*?)# END", text, re.S)
    assert block, "the commented kubernetes_sd example is missing from prometheus.yml"
    lines = [line.removeprefix("#") for line in block.group(1).splitlines()]
    return yaml.safe_load("\n".join(lines))


def test_kubernetes_sd_example_discovers_annotated_pods() -> None:
    (job,) = commented_kubernetes_sd_job()
    assert job["kubernetes_sd_configs"] == [{"role": "pod"}]
    keeps = {
        tuple(step["source_labels"]): step["regex"]
        for step in job["relabel_configs"]
        if step.get("action") == "keep"
    }
    assert keeps[("__meta_kubernetes_pod_annotation_prometheus_io_scrape",)] == "true"
    assert keeps[("__meta_kubernetes_pod_label_app_kubernetes_io_name",)] == "strangler"
    # The port rewrite turns "10.0.0.7:8080;9901" into "10.0.0.7:9901".
    (rewrite,) = [s for s in job["relabel_configs"] if s.get("target_label") == "__address__"]
    match = re.fullmatch(rewrite["regex"], "10.0.0.7:8080;9901")
    assert match
    assert match.expand(rewrite["replacement"].replace("$", "\\")) == "10.0.0.7:9901"


def test_kubernetes_sd_example_passes_promtool_when_supported(tmp_path: Path) -> None:
    promtool = find_tool("promtool")
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    config["rule_files"] = [str(path) for path in RULE_FILES]
    config["scrape_configs"] += commented_kubernetes_sd_job()
    candidate = tmp_path / "prometheus.yml"
    candidate.write_text(yaml.safe_dump(config))
    result = run_tool(promtool, "check", "config", candidate)
    if "kubernetes_sd_configs not found" in result.stdout + result.stderr:
        pytest.skip("this promtool is built without Kubernetes discovery (Debian package)")
    assert result.returncode == 0, describe(result)


# --- structure --------------------------------------------------------------------------------


def test_migration_progress_rules_exist() -> None:
    names = set(recording_rules())
    assert {
        "strangler:extracted_traffic_share:ratio_rate5m",
        "strangler:route_extracted_traffic_share:ratio_rate5m",
        "strangler:route_shadow_mismatch:ratio_rate5m",
        "strangler:route_fallback:ratio_rate5m",
        "strangler:role_errors:ratio_rate5m",
        "strangler:role_request_duration_seconds:p99_rate5m",
        "strangler:routes_by_stage:ratio",
    } <= names


@pytest.mark.parametrize("record", sorted(recording_rules()))
def test_recording_rule_is_named_and_aggregated(record: str) -> None:
    expr = recording_rules()[record]
    assert RECORD_NAME.match(record), f"{record} is not strangler:<metric>:<operations>"
    # Summed across replicas: no per-replica label survives.
    for label in ("instance", "pod"):
        assert not re.search(rf"\b{label}\b", expr), f"{record} keeps {label}"
    assert re.search(r"\b(sum|max|count)\b", expr), f"{record} does not aggregate"


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_rules_select_only_known_metrics(path: Path) -> None:
    known = KNOWN_METRICS | set(recording_rules())
    for rule in rules(path):
        unknown = selected_metrics(rule["expr"]) - known
        assert not unknown, f"{rule.get('record') or rule.get('alert')} selects {unknown}"


@pytest.mark.parametrize("alert", sorted(alert_rules()))
def test_alert_has_severity_and_annotations(alert: str) -> None:
    rule = alert_rules()[alert]
    assert alert.startswith("Strangler")
    assert rule["labels"]["severity"] in SEVERITIES
    for annotation in ("summary", "description"):
        assert rule["annotations"].get(annotation, "").strip(), f"{alert} lacks {annotation}"


def test_expected_alerts_exist() -> None:
    alerts = alert_rules()
    assert set(alerts) >= {
        "StranglerCircuitBreakerOpen",
        "StranglerShadowMismatchRatioHigh",
        "StranglerFallbackRatioHigh",
        "StranglerConfigReloadFailing",
        "StranglerExtractedErrorRatioHigh",
    }
    assert alerts["StranglerCircuitBreakerOpen"]["for"] == "1m"


@pytest.mark.parametrize("record", sorted(recording_rules()))
def test_recording_rule_has_unit_test(record: str) -> None:
    tested = {
        name
        for test in promtool_tests()
        for case in test.get("promql_expr_test", [])
        if case["exp_samples"]
        for name in selected_metrics(case["expr"])
    }
    assert record in tested, f"no promtool test in tests/promtool/ expects samples of {record}"


@pytest.mark.parametrize("alert", sorted(alert_rules()))
def test_alert_has_firing_and_quiet_unit_tests(alert: str) -> None:
    cases = [
        case
        for test in promtool_tests()
        for case in test.get("alert_rule_test", [])
        if case["alertname"] == alert
    ]
    assert any(case.get("exp_alerts") for case in cases), f"no test where {alert} fires"
    assert any(not case.get("exp_alerts") for case in cases), f"no test where {alert} is quiet"
