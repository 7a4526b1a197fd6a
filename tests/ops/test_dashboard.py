"""The Grafana dashboard (issue 7): importable, and every query names only real series.

Each PromQL expression (panel targets, annotations, template variables) may select only metric
names strangler exports or recording rules defined in config/prometheus/recording_rules.yml,
so a renamed metric or rule breaks this test rather than a panel. promtool parses every
expression (with Grafana's variables substituted) to catch PromQL syntax errors.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from . import KNOWN_METRICS, REPO, describe, find_tool, run_tool, selected_metrics

DASHBOARD_PATH = REPO / "config" / "grafana" / "strangler-dashboard.json"
RECORDING_RULES = REPO / "config" / "prometheus" / "recording_rules.yml"
DATASOURCE_UID = "${DS_PROMETHEUS}"

REQUIRED_PANELS = (
    "Migration progress (extracted traffic share)",
    "Stage per route",
    "Traffic share per route (extracted)",
    "Error ratio: legacy vs extracted",
    "Latency: legacy vs extracted",
    "Circuit breaker states",
    "Fallbacks by reason",
    "Shadow match rate per route",
    "Config reloads",
)

# Grafana's built-in and dashboard variables, replaced before promtool parses an expression.
GRAFANA_VARIABLES = {
    "$__rate_interval": "5m",
    "$__interval": "1m",
    "$__range": "1h",
    "$route": ".*",
}


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD_PATH.read_text())


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])  # panels inside collapsed rows


def expressions(board: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and annotation query."""
    found = []
    for panel in panels(board):
        for target in panel.get("targets", []):
            found.append((f"panel {panel['title']!r} {target['refId']}", target["expr"]))
    for annotation in board["annotations"]["list"]:
        if "expr" in annotation:
            found.append((f"annotation {annotation['name']!r}", annotation["expr"]))
    return found


def recording_rule_names() -> set[str]:
    document = yaml.safe_load(RECORDING_RULES.read_text())
    return {rule["record"] for group in document["groups"] for rule in group["rules"]}


def test_dashboard_is_importable() -> None:
    board = dashboard()
    assert board["uid"] == "strangler-migration"
    assert board["schemaVersion"] >= 39
    assert board["id"] is None  # imported dashboards get their id from Grafana
    (source,) = board["__inputs"]
    assert source["type"] == "datasource"
    assert source["pluginId"] == "prometheus"
    assert f"${{{source['name']}}}" == DATASOURCE_UID


def test_every_query_uses_the_input_datasource() -> None:
    board = dashboard()
    for panel in panels(board):
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == DATASOURCE_UID, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == DATASOURCE_UID, panel["title"]
    for variable in board["templating"]["list"]:
        assert variable["datasource"]["uid"] == DATASOURCE_UID, variable["name"]


def test_required_panels_present() -> None:
    titles = {panel["title"] for panel in panels(dashboard())}
    missing = [title for title in REQUIRED_PANELS if title not in titles]
    assert not missing, f"missing panels: {missing}"


def test_panel_ids_unique_and_layout_fits() -> None:
    board = dashboard()
    ids = [panel["id"] for panel in panels(board)]
    assert len(ids) == len(set(ids))
    for panel in panels(board):
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]


@pytest.mark.parametrize(
    ("where", "expr"), expressions(dashboard()), ids=[w for w, _ in expressions(dashboard())]
)
def test_expression_names_only_known_series(where: str, expr: str) -> None:
    known = KNOWN_METRICS | recording_rule_names()
    names = selected_metrics(expr)
    assert names, f"{where}: no metric found in {expr!r}"
    assert names <= known, f"{where} selects unknown series {names - known}"


def test_recording_rules_used_by_the_dashboard_exist() -> None:
    used = {
        name
        for _, expr in expressions(dashboard())
        for name in selected_metrics(expr)
        if name.startswith("strangler:")
    }
    assert used, "the dashboard should read the recording rules"
    assert used <= recording_rule_names(), used - recording_rule_names()


def test_template_variables_query_known_metrics() -> None:
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = (
            variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
        )
        match = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", query)
        assert match, f"${variable['name']}: unexpected query {query!r}"
        assert match.group(1) in KNOWN_METRICS


def test_every_expression_parses(tmp_path: Path) -> None:
    promtool = find_tool("promtool")
    rules = []
    for number, (_, expr) in enumerate(expressions(dashboard())):
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, f"unsubstituted Grafana variable in {expr!r}"
        rules.append({"record": f"dashboard_expression_{number}", "expr": expr})
    path = tmp_path / "dashboard_expressions.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run_tool(promtool, "check", "rules", path)
    assert result.returncode == 0, describe(result)


def test_stage_timeline_maps_every_stage() -> None:
    (panel,) = [p for p in panels(dashboard()) if p["title"] == "Stage per route over time"]
    (mapping,) = panel["fieldConfig"]["defaults"]["mappings"]
    texts = {option["text"] for option in mapping["options"].values()}
    assert texts == {"legacy", "shadow", "canary", "migrated", "retired"}
