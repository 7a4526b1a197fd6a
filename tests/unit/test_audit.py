"""audit_changes: what a reload changed, as logged in the audit entry (pure, no sockets)."""

from __future__ import annotations

from strangler.app import audit_changes
from strangler.loader import parse_config

BASE = """
version: 1
upstreams:
  legacy: {url: "http://127.0.0.1:8001", role: legacy}
  orders: {url: "http://127.0.0.1:8003", role: extracted}
routes:
  - name: orders
    match: {path_prefix: /api/orders}
    upstream: legacy
    split:
      targets: [{upstream: orders, weight: 10}, {upstream: legacy, weight: 90}]
      sticky: {header: X-User-Id}
  - name: payments
    match: {path_prefix: /api/payments}
    upstream: legacy
    timeout: 5s
default: {upstream: legacy}
"""


def test_weight_and_other_changes_are_told_apart_and_moved_lines_are_not_changes() -> None:
    old = parse_config(BASE)
    # A comment shifts every line; the weight of orders and the timeout of payments change.
    new_text = "# a comment\n" + BASE.replace("weight: 10}", "weight: 50}").replace(
        "weight: 90}", "weight: 50}"
    ).replace("timeout: 5s", "timeout: 7s")
    new = parse_config(new_text)
    changes = audit_changes(old, new)
    assert changes["weight_changes"] == {"orders": [10.0, 50.0]}
    assert changes["other_changes"] == ["payments"]
    assert changes["routes_added"] == [] and changes["routes_removed"] == []


def test_only_moved_routes_report_no_change() -> None:
    changes = audit_changes(parse_config(BASE), parse_config("\n\n# moved\n" + BASE))
    assert changes == {
        "routes_added": [],
        "routes_removed": [],
        "stage_changes": {},
        "weight_changes": {},
        "other_changes": [],
    }
