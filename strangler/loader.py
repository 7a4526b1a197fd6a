"""The config loader: YAML text in, a validated `Config` out, or every problem at once.

Role: `load_config` reads one file (the module's only I/O) and `parse_config` turns its text into
the immutable model of `strangler.config`. Durations, sizes, header names, methods, regexes, JSON
paths and policies are parsed and checked here, once, so nothing downstream validates again.

Invariants:
- either a whole `Config` is returned or `ConfigError` is raised listing every problem found, in
  file order, each with its file, line (of the offending key, or of the value for value errors)
  and key path such as `routes[2].upstream`; loading never stops at the first problem;
- unknown keys are errors (with the closest known key suggested), duplicate keys are errors;
- every upstream a route names exists, route names are unique, stage rules hold, and no route is
  shadowed by an earlier one (see docs/configuration.md);
- a route's breaker and timeout are already resolved: the route's own, else its upstream's.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from strangler.breaker import ERROR_KINDS, BreakerPolicy
from strangler.bulkhead import BulkheadPolicy
from strangler.config import (
    AccessLogSettings,
    AdminSettings,
    Config,
    FallbackSettings,
    ForwardingSettings,
    LimitSettings,
    ListenSettings,
    LoggingSettings,
    OverrideSettings,
    Rewrite,
    Role,
    RouteConfig,
    ShadowSettings,
    ShutdownSettings,
    SplitSettings,
    Stage,
    StickySettings,
    UpstreamConfig,
)
from strangler.diff import ARRAY_ORDERS, ComparePolicy
from strangler.retry import RetryPolicy
from strangler.routing import RouteEntry, RouteMatcher, unreachable_routes
from strangler.units import (
    Convert,
    as_bool,
    as_choice,
    as_cookie_name,
    as_enum,
    as_env_name,
    as_header_name,
    as_host,
    as_int,
    as_json_path,
    as_method,
    as_name,
    as_optional,
    as_path,
    as_percent,
    as_positive_duration,
    as_regex,
    as_set_of,
    as_status_set,
    as_string,
    as_upstream_url,
    as_whole_seconds,
    parse_duration,
    parse_size,
)
from strangler.yamlsource import LineDict, Report, Section, YamlSyntaxError, parse_yaml

__all__ = ["ConfigError", "ConfigIssue", "load_config", "parse_config"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem: where it is (file, line, key path) and what is wrong."""

    file: str
    line: int | None
    key: str
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where} {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class ConfigError(Exception):
    """The config is invalid; `errors` holds every problem found, in file order."""

    def __init__(self, errors: Sequence[ConfigIssue]) -> None:
        ordered = sorted(errors, key=lambda issue: issue.line or 0)
        super().__init__(ordered)
        self.errors: tuple[ConfigIssue, ...] = tuple(ordered)

    def __str__(self) -> str:
        return "\n".join(str(issue) for issue in self.errors)


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and parse the config file at `path`; raise `ConfigError` on any problem."""
    filename = os.fspath(path)
    try:
        with open(filename, encoding="utf-8") as file:
            text = file.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError([ConfigIssue(filename, None, "", f"cannot read file: {reason}")]) from exc
    return parse_config(text, filename)


def parse_config(text: str, filename: str = "<string>") -> Config:
    """Parse config `text` (pure); `filename` only labels the issues."""
    try:
        document = parse_yaml(text)
    except YamlSyntaxError as exc:
        raise ConfigError([ConfigIssue(filename, exc.line, "", exc.message)]) from None
    issues: list[ConfigIssue] = []

    def report(line: int | None, key: str, message: str) -> None:
        issues.append(ConfigIssue(filename, line, key, message))

    if not isinstance(document, LineDict):
        got = "an empty file" if document is None else f"{type(document).__name__} {document!r}"
        report(1, "", f"expected a mapping with version, upstreams and routes, got {got}")
        raise ConfigError(issues)
    config = _ConfigReader(report).read(Section(document, "", _TOP_KEYS, report), text)
    if issues or config is None:
        raise ConfigError(issues)
    return config


_TOP_KEYS = tuple(
    "version listen admin limits forwarding logging shutdown upstreams routes default".split()
)
_ROUTE_KEYS = tuple(
    "name stage match upstream rewrite timeout max_body_bytes fallback breaker retry shadow split".split()
)
_DEFAULT_ROUTE_KEYS = tuple(
    k for k in _ROUTE_KEYS if k not in ("name", "match", "rewrite", "split")
)
_MATCH_KEYS = ("path_prefix", "path", "path_regex", "methods", "host", "headers", "cookies")
_REWRITE_KEYS: dict[str, Convert[Any]] = {
    "strip_prefix": as_bool,
    "replace_prefix": as_optional(as_path),
}
_FALLBACK_KEYS: dict[str, Convert[Any]] = {
    "buffer_body_bytes": parse_size,
    "non_idempotent": as_bool,
}
_SHADOW_EXTRA_KEYS = ("upstream", "methods", "allow_unsafe_methods", "compare")
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})

# Sections read straight into a dataclass: YAML key -> converter; keys are the field names.
_BREAKER_KEYS: dict[str, Convert[Any]] = {
    "consecutive_failures": as_optional(as_int(1)),
    "failure_rate_threshold": as_optional(as_percent),
    "slow_call_rate_threshold": as_optional(as_percent),
    "slow_call_duration": as_positive_duration,
    "window_type": as_choice(("count", "time")),
    "window_size": as_int(1),
    "window_duration": as_positive_duration,
    "minimum_calls": as_int(1),
    "open_duration": as_positive_duration,
    "half_open_probes": as_int(1),
    "failure_statuses": as_status_set,
    "count_connection_errors": as_bool,
    "count_timeouts": as_bool,
}
_RETRY_KEYS: dict[str, Convert[Any]] = {
    "attempts": as_int(1),
    "backoff_base": as_positive_duration,
    "backoff_max": as_positive_duration,
    "retry_on": as_set_of(as_choice(sorted(ERROR_KINDS))),
    "retry_statuses": as_status_set,
    "non_idempotent": as_bool,
    "per_try_timeout": as_optional(as_positive_duration),
    "budget_percent": as_percent,
    "min_retry_concurrency": as_int(0),
}
_BULKHEAD_KEYS: dict[str, Convert[Any]] = {
    "max_concurrent": as_int(1),
    "max_wait": parse_duration,
    "max_waiting": as_int(0),
}
_COMPARE_KEYS: dict[str, Convert[Any]] = {
    "compare_status": as_bool,
    "headers": as_set_of(as_header_name),
    "ignore_headers": as_set_of(as_header_name),
    "ignore_paths": lambda value: tuple(as_set_of(as_json_path)(value)),
    "array_order": as_choice(ARRAY_ORDERS),
    "max_differences": as_int(1),
}
_SHADOW_KEYS: dict[str, Convert[Any]] = {
    "percent": as_percent,
    "max_body_bytes": parse_size,
    "max_in_flight": as_int(1),
    "timeout": as_positive_duration,
    "capture_bytes": parse_size,
    "noise_percent": as_percent,
}
_STICKY_KEYS: dict[str, Convert[Any]] = {
    "cookie": as_optional(as_cookie_name),
    "header": as_optional(as_header_name),
    "client_address": as_bool,
    "set_cookie": as_optional(as_cookie_name),
    "cookie_max_age": as_whole_seconds,
    "salt": as_string,
}
_OVERRIDE_KEYS: dict[str, Convert[Any]] = {
    "header": as_optional(as_header_name),
    "cookie": as_optional(as_cookie_name),
    "secret_env": as_optional(as_env_name),
}
_ACCESS_KEYS: dict[str, Convert[Any]] = {
    "path": as_optional(as_string),
    "enabled": as_bool,
    "flush_interval": as_positive_duration,
}
_SETTINGS: dict[str, tuple[Callable[..., Any], dict[str, Convert[Any]]]] = {
    "listen": (ListenSettings, {"host": as_string, "port": as_int(0, 65535), "backlog": as_int(1)}),
    "admin": (
        AdminSettings,
        {"host": as_string, "port": as_int(0, 65535), "token_env": as_env_name},
    ),
    "limits": (
        LimitSettings,
        {
            "max_request_line": parse_size,
            "max_header_bytes": parse_size,
            "max_headers": as_int(1),
            "max_body_bytes": parse_size,
            "header_timeout": as_positive_duration,
            "body_timeout": as_positive_duration,
            "idle_timeout": as_positive_duration,
        },
    ),
    "forwarding": (
        ForwardingSettings,
        {"trust_forwarded_headers": as_bool, "request_id_header": as_header_name},
    ),
    "shutdown": (ShutdownSettings, {"drain_timeout": parse_duration}),
}
_UPSTREAM_KEYS = ("url", "role", "connect_timeout", "timeout", "pool_size", "breaker", "bulkhead")

# What each stage demands (docs/configuration.md): primary role (None: any) and, for fallback,
# shadow and split, whether the part is "required", "optional" or "forbidden".
_STAGE_RULES: dict[Stage, tuple[Role | None, dict[str, str]]] = {
    Stage.LEGACY: (Role.LEGACY, {"fallback": "no", "shadow": "no", "split": "no"}),
    Stage.SHADOW: (Role.LEGACY, {"fallback": "may", "shadow": "must", "split": "no"}),
    Stage.CANARY: (None, {"fallback": "may", "shadow": "may", "split": "must"}),
    Stage.MIGRATED: (Role.EXTRACTED, {"fallback": "must", "shadow": "may", "split": "no"}),
    Stage.RETIRED: (Role.EXTRACTED, {"fallback": "no", "shadow": "no", "split": "no"}),
}
_NEEDS = {
    "fallback": "a fallback to an upstream with role legacy",
    "shadow": "shadow to an upstream with role extracted",
    "split": "split with an extracted weight above 0 and below 100",
}


def _build(section: Section, factory: Callable[..., T], kwargs: dict[str, Any]) -> T | None:
    """`factory(**kwargs)`; its ValueError (a policy's own validation) is reported at the key."""
    try:
        return factory(**kwargs)
    except ValueError as exc:
        section.report_here(str(exc))
        return None


def _read(
    section: Section | None, factory: Callable[..., T], keys: dict[str, Convert[Any]]
) -> T | None:
    """A dataclass whose fields are the section's keys; None when absent or invalid."""
    if section is None:
        return None
    kwargs = section.values(keys)
    return None if kwargs is None else _build(section, factory, kwargs)


def _infer_stage(
    upstream: UpstreamConfig, fallback: object, shadow: object, split: object
) -> Stage:
    if split is not None:
        return Stage.CANARY
    if shadow is not None:
        return Stage.SHADOW
    if upstream.role is Role.EXTRACTED:
        return Stage.MIGRATED if fallback is not None else Stage.RETIRED
    return Stage.LEGACY


class _ConfigReader:
    """One pass over a parsed document; every problem is reported, none raised midway."""

    def __init__(self, report: Report) -> None:
        self.report = report
        self.upstreams: dict[str, UpstreamConfig] = {}

    def read(self, top: Section, text: str) -> Config | None:
        version = top.required("version", as_int(0))
        if version is not None and version != 1:
            top.report_value("version", f"unsupported version {version} (this strangler reads 1)")
        settings = {
            name: _read(top.section(name, keys), factory, keys) or factory()
            for name, (factory, keys) in _SETTINGS.items()
        }
        logging = self.logging(top.section("logging", ("level", "format", "access")))
        self.read_upstreams(top)
        routes = self.read_routes(top)
        default_section = top.section("default", _DEFAULT_ROUTE_KEYS)
        default = None if default_section is None else self.route(default_section, "default")
        return Config(
            source=text,
            version=hashlib.sha256(text.encode("utf-8")).hexdigest()[:12],
            listen=settings["listen"],
            admin=settings["admin"],
            limits=settings["limits"],
            forwarding=settings["forwarding"],
            logging=logging,
            shutdown=settings["shutdown"],
            upstreams=self.upstreams,
            routes=routes,
            default_route=default,
        )

    def logging(self, section: Section | None) -> LoggingSettings:
        if section is None:
            return LoggingSettings()
        access_section = section.section("access", _ACCESS_KEYS)
        return LoggingSettings(
            level=section.get("level", as_choice(("debug", "info", "warning", "error")), "info"),
            format=section.get("format", as_choice(("json", "console")), "json"),
            access=_read(access_section, AccessLogSettings, _ACCESS_KEYS) or AccessLogSettings(),
        )

    def read_upstreams(self, top: Section) -> None:
        upstreams = top.required_section("upstreams", None)
        if upstreams is not None and not upstreams.keys():
            upstreams.report_here("expected at least one upstream")
        for name in upstreams.keys() if upstreams is not None else ():
            section = upstreams.required_section(name, _UPSTREAM_KEYS) if upstreams else None
            if section is None or not upstreams or not upstreams.check_key(name, as_name):
                continue
            url = section.required("url", as_upstream_url)
            role = section.required("role", as_enum(Role))
            upstream = UpstreamConfig(
                name=name,
                url="" if url is None else url.url,
                scheme="http",
                host="" if url is None else url.host,
                port=80 if url is None else url.port,
                base_path="" if url is None else url.base_path,
                role=role or Role.LEGACY,
                connect_timeout=section.get("connect_timeout", as_positive_duration, 2.0),
                timeout=section.get("timeout", as_positive_duration, 30.0),
                pool_size=section.get("pool_size", as_int(1), 100),
                breaker=_read(
                    section.section("breaker", _BREAKER_KEYS), BreakerPolicy, _BREAKER_KEYS
                ),
                bulkhead=_read(
                    section.section("bulkhead", _BULKHEAD_KEYS), BulkheadPolicy, _BULKHEAD_KEYS
                ),
            )
            if role is not None:  # a role-less upstream would only cause misleading stage errors
                self.upstreams[name] = upstream

    def upstream_ref(self, section: Section, key: str = "upstream") -> UpstreamConfig | None:
        """The upstream a required `key` names, or None (reported) when missing or unknown."""
        name = section.required(key, as_string)
        upstream = None if name is None else self.upstreams.get(name)
        if name is not None and upstream is None and self.upstreams:
            known = ", ".join(sorted(self.upstreams))
            section.report_value(key, f"unknown upstream {name!r} (known: {known})")
        return upstream

    def read_routes(self, top: Section) -> tuple[RouteConfig, ...]:
        routes: list[tuple[int, RouteConfig]] = []
        first_line: dict[str, int] = {}
        for index, section in enumerate(top.section_items("routes", _ROUTE_KEYS)):
            name = section.required("name", as_name)
            if name == "default":
                section.report_value("name", "'default' is reserved for the default route")
            elif name is not None and name in first_line:
                section.report_value(
                    "name", f"duplicate route name {name!r} (first used on line {first_line[name]})"
                )
            elif name is not None:
                first_line[name] = section.line
            route = self.route(section, name or "")
            if route is not None:
                routes.append((index, route))
        entries = [RouteEntry(route.name, route.matcher, index) for index, route in routes]
        for later, earlier in unreachable_routes(entries):
            (later_index, later_route), (earlier_index, earlier_route) = (
                routes[later],
                routes[earlier],
            )
            self.report(
                later_route.line,
                f"routes[{later_index}] ({later_route.name})",
                f"never matches: shadowed by routes[{earlier_index}] ({earlier_route.name})",
            )
        return tuple(route for _, route in routes)

    def route(self, section: Section, name: str) -> RouteConfig | None:
        """The route in `section`; None when its matcher or upstream is unusable (reported)."""
        matcher = self.matcher(section.section("match", _MATCH_KEYS))
        upstream = self.upstream_ref(section)
        explicit_stage = section.get("stage", as_enum(Stage), None)
        rewrite = _read(section.section("rewrite", _REWRITE_KEYS), Rewrite, _REWRITE_KEYS)
        if rewrite is not None and matcher is not None and matcher.path_prefix is None:
            section.report_key("rewrite", "rewrite needs match.path_prefix")
        timeout = section.get("timeout", as_positive_duration, None)
        breaker = _read(section.section("breaker", _BREAKER_KEYS), BreakerPolicy, _BREAKER_KEYS)
        retry = _read(section.section("retry", _RETRY_KEYS), RetryPolicy, _RETRY_KEYS)
        fallback = self.fallback(section.section("fallback", (*_FALLBACK_KEYS, "upstream")))
        shadow = self.shadow(section.section("shadow", (*_SHADOW_KEYS, *_SHADOW_EXTRA_KEYS)))
        split = self.split(section.section("split", ("targets", "sticky", "override")))
        if matcher is None or upstream is None:
            return None
        stage = explicit_stage or _infer_stage(upstream, fallback, shadow, split)
        if explicit_stage is not None or not section.has("stage"):  # an invalid one is reported
            parts = {
                "fallback": None if fallback is None else fallback.upstream,
                "shadow": None if shadow is None else shadow.upstream,
            }
            label = f"stage {stage.value}" + ("" if explicit_stage else " (inferred)")
            self.check_stage(section, stage, label, upstream, parts, split)
        return RouteConfig(
            name=name,
            matcher=matcher,
            upstream=upstream.name,
            stage=stage,
            line=section.line,
            rewrite=rewrite or Rewrite(),
            timeout=upstream.timeout if timeout is None else timeout,
            max_body_bytes=section.get("max_body_bytes", parse_size, None),
            fallback=fallback,
            breaker=upstream.breaker if breaker is None else breaker,
            retry=retry or RetryPolicy(),
            shadow=shadow,
            split=split,
        )

    def matcher(self, section: Section | None) -> RouteMatcher | None:
        if section is None:
            return RouteMatcher()
        methods = section.get_list("methods", as_method)
        if methods == ():
            section.report_value("methods", "expected at least one method")
        hosts = section.get_list("host", as_host)
        return _build(
            section,
            RouteMatcher,
            {
                "path_prefix": section.get("path_prefix", as_path, None),
                "path": section.get("path", as_path, None),
                "path_regex": section.get("path_regex", as_regex, None),
                "methods": None if methods is None else frozenset(methods),
                "hosts": hosts,
                "headers": self.conditions(section.section("headers", None), as_header_name),
                "cookies": self.conditions(section.section("cookies", None), as_cookie_name),
            },
        )

    def conditions(
        self, section: Section | None, as_key: Convert[str]
    ) -> tuple[tuple[str, str | None], ...]:
        """Header or cookie conditions: name -> exact value, or true for "present"."""
        found: list[tuple[str, str | None]] = []
        for key in section.keys() if section is not None else ():
            if section is not None and section.check_key(key, as_key):
                found.append((as_key(key), section.get(key, _condition_value, None)))
        return tuple(found)

    def fallback(self, section: Section | None) -> FallbackSettings | None:
        if section is None:
            return None
        upstream = self.upstream_ref(section)
        kwargs = section.values(_FALLBACK_KEYS) or {}
        return None if upstream is None else FallbackSettings(upstream.name, **kwargs)

    def shadow(self, section: Section | None) -> ShadowSettings | None:
        if section is None:
            return None
        upstream = self.upstream_ref(section)
        methods = frozenset(section.get_list("methods", as_method) or _SAFE_METHODS - {"TRACE"})
        unsafe = sorted(methods - _SAFE_METHODS)
        if unsafe and not section.get("allow_unsafe_methods", as_bool, False):
            section.report_value(
                "methods",
                f"mirroring {', '.join(unsafe)} repeats side effects on the shadow upstream; "
                "set allow_unsafe_methods: true to allow it",
            )
        compare = _read(section.section("compare", _COMPARE_KEYS), ComparePolicy, _COMPARE_KEYS)
        kwargs = section.values(_SHADOW_KEYS)
        if upstream is None or kwargs is None:
            return None
        return ShadowSettings(
            upstream.name, methods=methods, compare=compare or ComparePolicy(), **kwargs
        )

    def split(self, section: Section | None) -> SplitSettings | None:
        if section is None:
            return None
        targets: list[tuple[UpstreamConfig, float]] = []
        items = section.section_items("targets", ("upstream", "weight"))
        if not section.has("targets"):
            section.report_missing("targets")
        for item in items:
            upstream = self.upstream_ref(item)
            weight = item.required("weight", as_percent)
            if upstream is not None and weight is not None:
                targets.append((upstream, weight))
        targets_valid = len(targets) == len(items) > 0 and _check_targets(section, targets)
        sticky_section = section.section("sticky", _STICKY_KEYS)
        sticky = _read(sticky_section, StickySettings, _STICKY_KEYS)
        if sticky_section is None:
            section.report_missing("sticky")
        elif sticky is not None:
            sources = [
                key for key in ("cookie", "header", "client_address") if getattr(sticky, key)
            ]
            if len(sources) != 1:
                sticky_section.report_here(
                    "expected exactly one key source (cookie, header or client_address), "
                    f"got {', '.join(sources) or 'none'}"
                )
        override_section = section.section("override", _OVERRIDE_KEYS)
        override = _read(override_section, OverrideSettings, _OVERRIDE_KEYS)
        if override_section is not None and override == OverrideSettings(None, None, None):
            override_section.report_here("override needs a header or a cookie")
        if not targets_valid:
            return None
        return SplitSettings(
            tuple((upstream.name, weight) for upstream, weight in targets),
            sticky or StickySettings(),
            override,
        )

    def check_stage(
        self,
        section: Section,
        stage: Stage,
        label: str,
        upstream: UpstreamConfig,
        parts: dict[str, str | None],
        split: SplitSettings | None,
    ) -> None:
        """The stage table of docs/configuration.md; `parts` maps part -> its upstream name."""
        role, rules = _STAGE_RULES[stage]
        if role is not None and upstream.role is not role:
            section.report_value(
                "upstream",
                f"{label} needs an upstream with role {role.value}; "
                f"{upstream.name!r} has role {upstream.role.value}",
            )
        for part, rule in rules.items():
            if rule == "no" and section.has(part):
                section.report_key(part, f"{label} does not allow {part}")
            elif rule == "must" and not section.has(part):
                section.report_here(f"{label} needs {_NEEDS[part]}")
        for part, wanted in (("fallback", Role.LEGACY), ("shadow", Role.EXTRACTED)):
            target = self.upstreams.get(parts[part] or "")
            if rules[part] == "must" and target is not None and target.role is not wanted:
                section.report_key(
                    part,
                    f"{label} needs {_NEEDS[part]}; {target.name!r} has role {target.role.value}",
                )
        if stage is Stage.CANARY and split is not None and not 0 < split.extracted_weight < 100:
            section.report_key("split", f"{label} needs {_NEEDS['split']}")


def _check_targets(section: Section, targets: list[tuple[UpstreamConfig, float]]) -> bool:
    """Extracted targets first, exactly one legacy target last, weights summing to 100."""
    roles = [upstream.role for upstream, _ in targets]
    if len(targets) < 2 or roles[-1] is not Role.LEGACY or Role.LEGACY in roles[:-1]:
        got = ", ".join(f"{upstream.name} ({upstream.role.value})" for upstream, _ in targets)
        section.report_key(
            "targets",
            f"expected extracted targets first and exactly one legacy target last, got {got}",
        )
        return False
    total = sum(weight for _, weight in targets)
    if abs(total - 100) > 1e-9:
        section.report_key("targets", f"weights sum to {total:g}, expected 100")
        return False
    return True


def _condition_value(value: object) -> str | None:
    """A header or cookie condition: a value to match exactly, or true for "present"."""
    if value is True:
        return None
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return str(value)
    raise ValueError(f"expected a value to match or true (present), got {value!r}")
