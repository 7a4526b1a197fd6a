"""Tests of strangler's operational artefacts: Prometheus rules, Grafana, image, Kubernetes.

Shared here: where the repository is, how to find an external tool (promtool, hadolint,
kubernetes-validate) and what to do when it is missing, the metric names strangler exports,
and a small PromQL scanner that lists the metric names an expression selects.

A missing tool skips its tests, unless `STRANGLER_REQUIRE_TOOLS=1` (set by CI) turns the skip
into a failure, so CI can never pass by skipping.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# Metric families as exposed (counters with `_total`, histograms with their series), fixed by the
# metrics issue. Dashboards and rules may select only these and the recording rules.
COUNTERS = (
    "strangler_requests_total",
    "strangler_upstream_errors_total",
    "strangler_circuit_breaker_transitions_total",
    "strangler_fallbacks_total",
    "strangler_retries_total",
    "strangler_bulkhead_rejections_total",
    "strangler_shadow_requests_total",
    "strangler_shadow_comparisons_total",
    "strangler_config_reloads_total",
)
GAUGES = (
    "strangler_circuit_breaker_state",
    "strangler_route_stage",
    "strangler_route_extracted_weight",
    "strangler_config_last_reload_success_timestamp_seconds",
    "strangler_build_info",
)
HISTOGRAMS = ("strangler_request_duration_seconds",)
KNOWN_METRICS = frozenset(
    COUNTERS
    + GAUGES
    + tuple(f"{name}{suffix}" for name in HISTOGRAMS for suffix in ("_bucket", "_sum", "_count"))
)

_KEYWORDS = frozenset(
    {
        "and",
        "or",
        "unless",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "offset",
        "atan2",
        "inf",
        "nan",
    }
)
_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENTIFIER = re.compile(r"(?<![\w.:$])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?")


def selected_metrics(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions and keywords left out).

    Strings, label matchers, range and subquery brackets and grouping label lists are removed
    first, so label names and Grafana variables inside them never count as metrics.
    """
    text = _STRING.sub(" ", expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        name, call = match.groups()
        if call or name.lower() in _KEYWORDS:
            continue
        names.add(name)
    return names


def find_tool(name: str) -> str:
    """Path of executable `name` on PATH or beside this Python (the venv's bin directory)."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found:
        return found
    message = f"{name} not found on PATH or in {Path(sys.executable).parent}"
    if os.environ.get("STRANGLER_REQUIRE_TOOLS") == "1":
        pytest.fail(f"{message} (STRANGLER_REQUIRE_TOOLS=1)")
    pytest.skip(message)


def run_tool(*args: str | os.PathLike[str]) -> subprocess.CompletedProcess[str]:
    """Run a tool from the repository root and capture its output."""
    return subprocess.run(
        [str(arg) for arg in args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def describe(result: subprocess.CompletedProcess[str]) -> str:
    """A tool's command line, exit code and output, for assertion messages."""
    return (
        f"$ {' '.join(result.args)}\nexit {result.returncode}\n"
        f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
