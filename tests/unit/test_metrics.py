"""RouteMetrics batches per-request counts; a collection must see exactly what observe() gives."""

from __future__ import annotations

import random

from prometheus_client import CollectorRegistry, Histogram

from strangler.metrics import _BUCKETS, Metrics, RouteMetrics


def _samples(registry: CollectorRegistry, name: str) -> dict[tuple[str, ...], float]:
    out = {}
    for metric in registry.collect():
        for sample in metric.samples:
            if sample.name.startswith(name):
                out[(sample.name, *sorted(sample.labels.items()))] = sample.value
    return out


def test_batched_histogram_equals_prometheus_observe() -> None:
    metrics = Metrics(CollectorRegistry())
    route = RouteMetrics(metrics, "orders", {"orders": "extracted"})
    reference_registry = CollectorRegistry()
    reference = Histogram(
        "strangler_request_duration_seconds",
        "ref",
        ["route", "upstream", "role"],
        buckets=_BUCKETS,
        registry=reference_registry,
    ).labels("orders", "orders", "extracted")
    rng = random.Random(7)
    values = (
        [
            rng.choice([0.0, 0.0005, 0.001, 0.0101, 0.5, 1.0, 29.0, 31.0, 120.0]) * rng.random()
            for _ in range(500)
        ]
        + list(_BUCKETS)
        + [0.0, 1e9]
    )
    for value in values:
        route.observe("orders", "GET", 200, value)
        reference.observe(value)
    got = _samples(metrics.registry, "strangler_request_duration_seconds")
    want = _samples(reference_registry, "strangler_request_duration_seconds")
    created = [k for k in got if k[0].endswith("_created")]
    for key in created:
        got.pop(key)
        want.pop(key, None)
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert abs(got[key] - value) < 1e-6, key


def test_counts_are_exact_at_every_collection_and_survive_the_route_object() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    route = RouteMetrics(metrics, "orders", {"legacy": "legacy"})
    for _ in range(3):
        route.observe("legacy", "GET", 200, 0.01)
    labels = {
        "route": "orders",
        "upstream": "legacy",
        "role": "legacy",
        "method": "GET",
        "code": "200",
    }
    assert registry.get_sample_value("strangler_requests_total", labels) == 3
    route.observe("legacy", "GET", 200, 0.01)
    route.observe("legacy", "BREW", 502, 0.01)
    assert registry.get_sample_value("strangler_requests_total", labels) == 4
    assert (
        registry.get_sample_value(
            "strangler_requests_total", {**labels, "method": "OTHER", "code": "502"}
        )
        == 1
    )


def test_a_route_keeps_its_counts_across_snapshots() -> None:
    # A reload builds a new snapshot while requests on the old one still finish: both must add
    # to the same pending counts, or what the old object held at its end would be lost.
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    old = metrics.route("orders", {"orders": "extracted", "legacy": "legacy"})
    new = metrics.route("orders", {"legacy": "legacy", "orders": "extracted"})
    assert new is old
    old.observe("orders", "GET", 200, 0.01)  # a request finishing on the old snapshot
    del old
    new.observe("orders", "GET", 200, 0.02)
    samples = _samples(registry, "strangler_requests_total")
    key = (
        "strangler_requests_total",
        ("code", "200"),
        ("method", "GET"),
        ("role", "extracted"),
        ("route", "orders"),
        ("upstream", "orders"),
    )
    assert samples[key] == 2
    # Other upstreams (a canary that moved) get their own children.
    assert metrics.route("orders", {"orders": "extracted"}) is not new
