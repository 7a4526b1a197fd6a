"""The config loader: valid files load into the model, invalid ones report every problem exactly.

Invalid configs are fixture files, each beside the exact error text it must produce
(`tests/fixtures/configs/invalid/NAME.yaml` and `NAME.expected`); messages name the fixture by its
path relative to the repository root, so the loader is run from there.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from strangler.breaker import BreakerPolicy
from strangler.config import Config, Role, Stage
from strangler.loader import ConfigError, ConfigIssue, load_config, parse_config

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path("tests/fixtures/configs")
VALID = sorted(
    [
        *(REPO / FIXTURES / "valid").glob("*.yaml"),
        REPO / "config/routes.yaml",
        REPO / "config/minimal.yaml",
    ]
)
INVALID = sorted((REPO / FIXTURES / "invalid").glob("*.yaml"))


@pytest.fixture(autouse=True)
def _from_repo_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)


@pytest.mark.parametrize("path", VALID, ids=lambda p: str(p.relative_to(REPO)))
def test_valid_config_loads(path: Path) -> None:
    config = load_config(path.relative_to(REPO))
    assert isinstance(config, Config)
    assert config.upstreams


def test_there_are_enough_invalid_fixtures() -> None:
    assert len(INVALID) >= 25


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_config_reports_exact_errors(path: Path) -> None:
    expected = path.with_suffix(".expected").read_text(encoding="utf-8").rstrip("\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path.relative_to(REPO))
    assert str(caught.value) == expected


def _config(routes: str = "", default: str = "", extra: str = "") -> Config:
    upstreams = """version: 1
upstreams:
  legacy:
    url: http://127.0.0.1:8001
    role: legacy
    timeout: 20s
  orders:
    url: http://orders.internal:8003/svc/
    role: extracted
    timeout: 7s
    breaker: {consecutive_failures: 7}
"""
    return parse_config(upstreams + extra + routes + default, "test.yaml")


def test_example_config_describes_the_sample_migration() -> None:
    config = load_config("config/routes.yaml")
    stages = {route.name: route.stage for route in config.routes}
    assert stages["inventory"] is Stage.MIGRATED
    assert stages["orders"] is Stage.CANARY
    assert stages["orders-lookup"] is Stage.SHADOW
    assert stages["payments"] is Stage.LEGACY
    split = config.route("orders").split
    assert split is not None
    assert split.targets == (("orders", 20.0), ("legacy", 80.0))
    assert split.sticky.header == "x-customer-id"
    assert split.sticky.set_cookie == "strangler_bucket"
    assert config.default_route is not None and config.default_route.upstream == "legacy"


def test_minimal_config_sends_everything_to_the_monolith() -> None:
    config = load_config("config/minimal.yaml")
    assert config.routes == ()
    assert config.default_route is not None
    assert config.default_route.name == "default"
    assert config.default_route.stage is Stage.LEGACY
    assert config.upstreams["legacy"].role is Role.LEGACY


def test_full_fixture_sets_every_key() -> None:
    config = load_config(FIXTURES / "valid/full.yaml")
    assert config.listen.port == 18080
    assert config.limits.max_request_line == 4096
    assert config.limits.max_body_bytes == 1_000_000
    assert config.limits.idle_timeout == 60.0
    assert config.forwarding.request_id_header == "x-correlation-id"
    assert config.logging.access.flush_interval == 0.01
    assert config.logging.access.path == "/var/log/strangler/access.log"
    legacy = config.upstreams["legacy"]
    assert (legacy.host, legacy.port, legacy.base_path) == ("legacy.internal", 8001, "/monolith")
    assert legacy.bulkhead is not None and legacy.bulkhead.max_waiting == 20
    assert config.upstreams["inventory"].port == 80
    orders = config.route("orders")
    assert orders.matcher.methods == frozenset({"GET", "POST", "PATCH"})
    assert orders.matcher.hosts == ("shop.example.com", "*.shop.example.com")
    assert orders.matcher.headers == (("x-beta", "1"), ("x-debug", None))
    assert orders.matcher.cookies == (("beta", "1"), ("session", None))
    assert orders.rewrite.replace_prefix == "/v2/orders"
    assert orders.breaker is not None and orders.breaker.window_type == "time"
    assert orders.breaker.failure_statuses == frozenset({500, 501, 502, 503, 504, 598})
    assert orders.retry.attempts == 3 and orders.retry.per_try_timeout == 2.0
    assert orders.shadow is not None and orders.shadow.percent == 12.5
    assert orders.shadow.compare.headers == frozenset({"content-type", "etag"})
    assert orders.shadow.compare.ignore_paths == ("$.generated_at", "$.items[*].updated_at")
    split = config.route("inventory").split
    assert split is not None and split.extracted_weight == 15.5
    assert split.sticky.cookie_max_age == 7 * 86400
    assert split.override is not None and split.override.cookie == "strangler_upstream"
    assert config.route("inventory").matcher.path_regex is not None


def test_stage_is_inferred_from_the_parts_a_route_sets() -> None:
    config = load_config(FIXTURES / "valid/stages_inferred.yaml")
    assert [route.stage for route in config.routes] == [
        Stage.LEGACY,
        Stage.SHADOW,
        Stage.CANARY,
        Stage.MIGRATED,
        Stage.RETIRED,
    ]


def test_anchors_and_merge_keys_are_followed() -> None:
    config = load_config(FIXTURES / "valid/anchors.yaml")
    assert config.upstreams["legacy-eu"].port == 8011
    assert config.upstreams["legacy-eu"].timeout == 10.0
    assert config.route("payments").retry.attempts == 2


def test_without_default_section_there_is_no_default_route() -> None:
    assert load_config(FIXTURES / "valid/no_default.yaml").default_route is None


def test_route_breaker_is_its_own_else_the_upstreams() -> None:
    routes = """routes:
  - name: own
    match: {path_prefix: /own}
    upstream: orders
    breaker: {consecutive_failures: 2}
  - name: inherited
    match: {path_prefix: /inherited}
    upstream: orders
  - name: none
    match: {path_prefix: /none}
    upstream: legacy
"""
    config = _config(routes)
    assert config.route("own").breaker == BreakerPolicy(consecutive_failures=2)
    assert config.route("inherited").breaker == BreakerPolicy(consecutive_failures=7)
    assert config.route("none").breaker is None


def test_route_timeout_overrides_the_upstreams() -> None:
    routes = """routes:
  - name: own
    match: {path_prefix: /own}
    upstream: legacy
    timeout: 1500ms
  - name: inherited
    match: {path_prefix: /inherited}
    upstream: legacy
"""
    config = _config(routes, "default:\n  upstream: orders\n")
    assert config.route("own").timeout == 1.5
    assert config.route("inherited").timeout == 20.0
    assert config.default_route is not None
    assert config.default_route.timeout == 7.0
    assert config.default_route.stage is Stage.RETIRED


def test_default_route_has_an_empty_matcher() -> None:
    config = _config(default="default:\n  upstream: legacy\n")
    assert config.default_route is not None
    assert config.default_route.matcher.path_prefix is None
    assert config.default_route.matcher.methods is None
    assert config.route("default") is config.default_route


def test_route_line_is_where_the_route_starts() -> None:
    routes = """routes:
  - name: first
    match: {path_prefix: /first}
    upstream: legacy

  -
    name: second
    upstream: legacy
    match: {path_prefix: /second}
"""
    config = _config(routes)
    assert [route.line for route in config.routes] == [13, 18]  # a bare "-" line is not counted


def test_version_is_a_digest_of_the_source_text() -> None:
    text = Path(REPO / "config/minimal.yaml").read_text(encoding="utf-8")
    config = parse_config(text)
    assert config.source == text
    assert config.version == hashlib.sha256(text.encode()).hexdigest()[:12]
    assert parse_config(text + "\n# changed\n").version != config.version


def test_defaults_apply_to_absent_sections() -> None:
    config = _config()
    assert config.listen.port == 8080
    assert config.admin.host == "127.0.0.1"
    assert config.limits.max_body_bytes == 10 * 1024 * 1024
    assert config.logging.format == "json"
    assert config.shutdown.drain_timeout == 20.0
    assert config.upstreams["orders"].base_path == "/svc"
    assert config.upstreams["orders"].host_header == "orders.internal:8003"
    assert config.upstreams["legacy"].connect_timeout == 2.0


def test_parse_config_labels_issues_with_the_given_name() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("version: 3\nupstreams: {}\n")
    assert [str(issue) for issue in caught.value.errors] == [
        "<string>:1 version: unsupported version 3 (this strangler reads 1)",
        "<string>:2 upstreams: expected at least one upstream",
    ]


def test_config_error_lists_issues_in_file_order() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(FIXTURES / "invalid/many_errors.yaml")
    lines = [issue.line or 0 for issue in caught.value.errors]
    assert lines == sorted(lines)
    assert len(caught.value.errors) == 9
    assert str(caught.value).count("\n") == 8


def test_unreadable_file_is_one_issue_without_line(tmp_path: Path) -> None:
    missing = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError) as caught:
        load_config(missing)
    assert caught.value.errors == (
        ConfigIssue(str(missing), None, "", "cannot read the file: No such file or directory"),
    )
    assert str(caught.value) == f"{missing}: cannot read the file: No such file or directory"


def test_file_that_is_not_utf8_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"version: 1\n# caf\xe9\n")
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        load_config(path)


@pytest.mark.parametrize(
    ("issue", "text"),
    [
        (
            ConfigIssue("config/routes.yaml", 14, "routes[2].upstream", "unknown upstream 'ordrs'"),
            "config/routes.yaml:14 routes[2].upstream: unknown upstream 'ordrs'",
        ),
        (ConfigIssue("a.yaml", 3, "", "invalid YAML: x"), "a.yaml:3: invalid YAML: x"),
        (ConfigIssue("a.yaml", None, "", "cannot read"), "a.yaml: cannot read"),
    ],
    ids=["line-and-key", "no-key", "no-line"],
)
def test_issue_text(issue: ConfigIssue, text: str) -> None:
    assert str(issue) == text


def test_yaml_syntax_error_reports_the_line_of_the_problem() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("version: 1\nupstreams:\n  legacy: [a, b\n  other: 1\n", "x.yaml")
    (issue,) = caught.value.errors
    assert issue.line == 4
    assert issue.message.startswith("invalid YAML: ")
