"""The config loader: YAML text in, a validated `Config` out, or every problem at once.

Role: `load_config` reads one file (the module's only I/O) and `parse_config` turns its text into
the immutable model of `strangler.config`. Durations, sizes, header names, methods, regexes, JSON
paths and policies are parsed and checked here, once, so nothing downstream validates again.
Reading YAML with line numbers lives in `strangler.yamlsource`, value parsing in `strangler.units`.

Invariants:
- either a whole `Config` is returned or `ConfigError` is raised listing every problem found, in
  file order, each with its file, line (of the offending key, or of the value for value errors)
  and key path such as `routes[2].upstream`; loading never stops at the first problem, and a
  value that could not be read causes no further, derived complaints;
- unknown and duplicate keys are errors (the closest known key is suggested);
- every upstream a route names exists, route names are unique, stage rules hold (the table in
  docs/configuration.md), and no route is shadowed by an earlier one;
- a route's breaker and timeout are resolved here: the route's own, else its upstream's.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from strangler import units
from strangler.config import (
    AccessLogSettings,
    AdminSettings,
    Config,
    FallbackSettings,
    ForwardingSettings,
    LimitSettings,
    ListenSettings,
    LoggingSettings,
    MismatchSettings,
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
from strangler.diff import ComparePolicy
from strangler.policies import BreakerPolicy, BulkheadPolicy, RetryPolicy
from strangler.reachability import unreachable_routes
from strangler.routing import RouteEntry, RouteMatcher
from strangler.units import Convert, Each
from strangler.yamlsource import LineDict, Section, YamlSyntaxError, describe, parse_yaml

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
        ordered = tuple(sorted(errors, key=lambda issue: issue.line or 0))  # stable within a line
        super().__init__(ordered)
        self.errors = ordered

    def __str__(self) -> str:
        return "\n".join(str(issue) for issue in self.errors)


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and parse the config file at `path`; raise `ConfigError` on any problem."""
    filename = os.fspath(path)
    try:
        with open(filename, encoding="utf-8") as file:
            text = file.read()
    except OSError as exc:
        message = f"cannot read the file: {exc.strerror or exc}"
        raise ConfigError([ConfigIssue(filename, None, "", message)]) from exc
    except UnicodeDecodeError as exc:
        message = f"cannot read the file: not UTF-8 text ({exc.reason} at byte {exc.start})"
        raise ConfigError([ConfigIssue(filename, None, "", message)]) from exc
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
        got = "an empty file" if document is None else describe(document)
        report(1, "", f"expected a mapping with version, upstreams and routes, got {got}")
        raise ConfigError(issues)
    config = _ConfigReader().read(Section(document, "", _TOP_KEYS, report, line=1), text)
    if issues:
        raise ConfigError(issues)
    return config


def _keys(names: str) -> tuple[str, ...]:
    return tuple(names.split())


_TOP_KEYS = _keys(
    "version listen admin limits forwarding logging shutdown mismatches upstreams routes default"
)
_UPSTREAM_KEYS = _keys("url role connect_timeout timeout pool_size breaker bulkhead")
_ROUTE_KEYS = _keys(
    "name stage match upstream rewrite timeout max_body_bytes fallback breaker retry shadow split"
)
_DEFAULT_ROUTE_KEYS = _keys("upstream stage timeout max_body_bytes fallback breaker retry shadow")
_SHADOW_KEYS = _keys("upstream methods allow_unsafe_methods compare")
_SHADOW_METHODS: tuple[str, ...] = ("GET", "HEAD", "OPTIONS")  # ShadowSettings' default
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})

# The stage table of docs/configuration.md: the primary upstream's role (None: any), and for each
# optional part whether the stage forbids ("no"), allows ("may") or requires ("must") it.
_STAGE_RULES: dict[Stage, tuple[Role | None, dict[str, str]]] = {
    Stage.LEGACY: (Role.LEGACY, {"fallback": "no", "shadow": "no", "split": "no"}),
    Stage.SHADOW: (Role.LEGACY, {"fallback": "may", "shadow": "must", "split": "no"}),
    Stage.CANARY: (None, {"fallback": "may", "shadow": "may", "split": "must"}),
    Stage.MIGRATED: (Role.EXTRACTED, {"fallback": "must", "shadow": "may", "split": "no"}),
    Stage.RETIRED: (Role.EXTRACTED, {"fallback": "no", "shadow": "no", "split": "no"}),
}
# A required part's upstream must have this role.
_REQUIRED_ROLE = {"fallback": Role.LEGACY, "shadow": Role.EXTRACTED}
_NEEDS = {
    "fallback": "a fallback to an upstream with role legacy",
    "shadow": "shadow to an upstream with role extracted",
    "split": "split with an extracted weight above 0 and below 100",
}


def _infer_stage(upstream: UpstreamConfig, route: Section) -> Stage:
    """The stage of a route without `stage`, from which parts it sets (see the docs)."""
    if route.has("split"):
        return Stage.CANARY
    if route.has("shadow"):
        return Stage.SHADOW
    if upstream.role is Role.EXTRACTED:
        return Stage.MIGRATED if route.has("fallback") else Stage.RETIRED
    return Stage.LEGACY


def _condition_value(value: object) -> str | None:
    """A header or cookie condition: a value to match exactly, or true for "present"."""
    if value is True:
        return None
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return str(value)
    raise ValueError(f"expected a value to match or true (present), got {value!r}")


class _ConfigReader:
    """One pass over a parsed document; problems are reported through the Sections, never raised.

    Whatever could not be read is left at its default or left out, so the returned `Config` is
    only meaningful when nothing was reported.
    """

    def __init__(self) -> None:
        self.upstreams: dict[str, UpstreamConfig] = {}

    def read(self, top: Section, text: str) -> Config:
        version = top.required("version", units.as_int(0))
        if version is not None and version != 1:
            top.report_value("version", f"unsupported version {version} (this strangler reads 1)")
        self.read_upstreams(top)
        default = top.section("default", _DEFAULT_ROUTE_KEYS)
        return Config(
            source=text,
            version=hashlib.sha256(text.encode("utf-8")).hexdigest()[:12],
            listen=_settings(top, "listen", ListenSettings, units.LISTEN_KEYS),
            admin=_settings(top, "admin", AdminSettings, units.ADMIN_KEYS),
            limits=_settings(top, "limits", LimitSettings, units.LIMITS_KEYS),
            forwarding=_settings(top, "forwarding", ForwardingSettings, units.FORWARDING_KEYS),
            logging=self.logging(top.section("logging", (*units.LOGGING_KEYS, "access"))),
            shutdown=_settings(top, "shutdown", ShutdownSettings, units.SHUTDOWN_KEYS),
            upstreams=self.upstreams,
            routes=self.read_routes(top),
            default_route=None if default is None else self.route(default, "default"),
            mismatches=_settings(top, "mismatches", MismatchSettings, units.MISMATCH_KEYS),
        )

    def logging(self, section: Section | None) -> LoggingSettings:
        if section is None:
            return LoggingSettings()
        kwargs = section.values(units.LOGGING_KEYS) or {}
        return LoggingSettings(
            access=_settings(section, "access", AccessLogSettings, units.ACCESS_LOG_KEYS), **kwargs
        )

    def read_upstreams(self, top: Section) -> None:
        upstreams = top.required_section("upstreams", None)
        if upstreams is None:
            return
        if not upstreams.names():
            upstreams.report_here("expected at least one upstream")
        for name in upstreams.names():
            section = upstreams.required_section(name, _UPSTREAM_KEYS)
            if not upstreams.check_key(name, units.as_name) or section is None:
                continue
            url = section.required("url", units.as_upstream_url)
            role = section.required("role", units.as_enum(Role))
            upstream = UpstreamConfig(
                name=name,
                url="" if url is None else url.url,
                scheme="http",
                host="" if url is None else url.host,
                port=80 if url is None else url.port,
                base_path="" if url is None else url.base_path,
                role=role or Role.LEGACY,
                connect_timeout=section.get("connect_timeout", units.as_positive_duration, 2.0),
                timeout=section.get("timeout", units.as_positive_duration, 30.0),
                pool_size=section.get("pool_size", units.as_int(1), 100),
                breaker=_policy(section, "breaker", BreakerPolicy, units.BREAKER_KEYS),
                bulkhead=_policy(section, "bulkhead", BulkheadPolicy, units.BULKHEAD_KEYS),
            )
            if role is not None:  # without its role, every stage check would be a guess
                self.upstreams[name] = upstream

    def upstream_ref(self, section: Section) -> UpstreamConfig | None:
        """The upstream `section.upstream` names; None (reported) when missing or unknown."""
        name = section.required("upstream", units.as_string)
        upstream = None if name is None else self.upstreams.get(name)
        if name is not None and upstream is None and self.upstreams:
            known = ", ".join(sorted(self.upstreams))
            section.report_value("upstream", f"unknown upstream {name!r} (known: {known})")
        return upstream

    def read_routes(self, top: Section) -> tuple[RouteConfig, ...]:
        routes: list[tuple[int, RouteConfig]] = []  # (index in the file, route) of usable routes
        first_line: dict[str, int] = {}
        for index, section in enumerate(top.section_items("routes", _ROUTE_KEYS)):
            name = section.required("name", units.as_name)
            if name == "default":
                section.report_value("name", "'default' is reserved for the default route")
            elif name in first_line:
                message = f"duplicate route name {name!r} (first used on line {first_line[name]})"
                section.report_value("name", message)
            elif name is not None:
                first_line[name] = section.line
            route = self.route(section, name or "")
            if route is not None:
                routes.append((index, route))
        entries = [RouteEntry(route.name, route.matcher, None) for _, route in routes]
        for later, earlier in unreachable_routes(entries):
            later_index, later_route = routes[later]
            earlier_index, earlier_route = routes[earlier]
            top.report_at(
                later_route.line,
                f"routes[{later_index}] ({later_route.name})",
                f"never matches: shadowed by routes[{earlier_index}] ({earlier_route.name})",
            )
        return tuple(route for _, route in routes)

    def route(self, section: Section, name: str) -> RouteConfig | None:
        """The route in `section`; None when its matcher or upstream is unusable (reported)."""
        matcher = _matcher(section.section("match", (*units.MATCH_KEYS, "headers", "cookies")))
        upstream = self.upstream_ref(section)
        stage = section.get("stage", units.as_enum(Stage), None)
        rewrite = _policy(section, "rewrite", Rewrite, units.REWRITE_KEYS)
        if rewrite is not None and rewrite.strip_prefix and rewrite.replace_prefix is not None:
            section.report_key("rewrite", "set strip_prefix or replace_prefix, not both")
        if rewrite not in (None, Rewrite()) and matcher is not None and matcher.path_prefix is None:
            section.report_key("rewrite", "rewrite needs match.path_prefix")
        timeout = section.get("timeout", units.as_positive_duration, None)
        breaker = _policy(section, "breaker", BreakerPolicy, units.BREAKER_KEYS)
        fallback = self.fallback(section.section("fallback", (*units.FALLBACK_KEYS, "upstream")))
        shadow = self.shadow(section.section("shadow", (*units.SHADOW_KEYS, *_SHADOW_KEYS)))
        split = self.split(section.section("split", ("targets", "sticky", "override")))
        if matcher is None or upstream is None:
            return None
        if stage is not None or not section.has("stage"):  # an invalid stage is already reported
            inferred = stage is None
            stage = stage or _infer_stage(upstream, section)
            label = f"stage {stage.value}" + (" (inferred)" if inferred else "")
            parts = {"fallback": fallback, "shadow": shadow}
            self.check_stage(section, stage, label, upstream, parts, split)
        return RouteConfig(
            name=name,
            matcher=matcher,
            upstream=upstream.name,
            stage=stage or Stage.LEGACY,
            line=section.line,
            rewrite=rewrite or Rewrite(),
            timeout=upstream.timeout if timeout is None else timeout,
            max_body_bytes=section.get("max_body_bytes", units.parse_size, None),
            fallback=fallback,
            breaker=upstream.breaker if breaker is None else breaker,
            retry=_policy(section, "retry", RetryPolicy, units.RETRY_KEYS) or RetryPolicy(),
            shadow=shadow,
            split=split,
        )

    def fallback(self, section: Section | None) -> FallbackSettings | None:
        if section is None:
            return None
        upstream = self.upstream_ref(section)
        kwargs = section.values(units.FALLBACK_KEYS)
        if upstream is None or kwargs is None:
            return None
        return FallbackSettings(upstream.name, **kwargs)

    def shadow(self, section: Section | None) -> ShadowSettings | None:
        if section is None:
            return None
        upstream = self.upstream_ref(section)
        methods = frozenset(section.get("methods", Each(units.as_method), _SHADOW_METHODS))
        unsafe = sorted(methods - _SAFE_METHODS)
        if unsafe and not section.get("allow_unsafe_methods", units.as_bool, False):
            section.report_value(
                "methods",
                f"mirroring {', '.join(unsafe)} repeats side effects on the shadow upstream; "
                "set allow_unsafe_methods: true to allow it",
            )
        compare = _policy(section, "compare", ComparePolicy, units.COMPARE_KEYS) or ComparePolicy()
        kwargs = section.values(units.SHADOW_KEYS)
        if upstream is None or kwargs is None:
            return None
        return ShadowSettings(upstream.name, methods=methods, compare=compare, **kwargs)

    def split(self, section: Section | None) -> SplitSettings | None:
        if section is None:
            return None
        if not section.has("targets"):
            section.report_missing("targets")
        targets: list[tuple[UpstreamConfig, float]] = []
        items = section.section_items("targets", units.TARGET_KEYS)
        for item in items:
            upstream, weight = self.upstream_ref(item), item.required("weight", units.as_percent)
            if upstream is not None and weight is not None:
                targets.append((upstream, weight))
        targets_valid = 0 < len(targets) == len(items) and _check_targets(section, targets)
        sticky = _policy(section, "sticky", StickySettings, units.STICKY_KEYS)
        if not section.has("sticky"):
            section.report_missing("sticky")
        elif sticky is not None:
            sources = [
                key for key in ("cookie", "header", "client_address") if getattr(sticky, key)
            ]
            if len(sources) != 1:
                section.report_key(
                    "sticky",
                    "expected exactly one key source (cookie, header or client_address), "
                    f"got {', '.join(sources) or 'none'}",
                )
        override = _policy(section, "override", OverrideSettings, units.OVERRIDE_KEYS)
        if override is not None and override.header is None and override.cookie is None:
            section.report_key("override", "override needs a header or a cookie")
        if not targets_valid or sticky is None:
            return None
        pairs = tuple((upstream.name, weight) for upstream, weight in targets)
        return SplitSettings(pairs, sticky, override)

    def check_stage(
        self,
        route: Section,
        stage: Stage,
        label: str,
        upstream: UpstreamConfig,
        parts: dict[str, FallbackSettings | ShadowSettings | None],
        split: SplitSettings | None,
    ) -> None:
        role, rules = _STAGE_RULES[stage]
        if role is not None and upstream.role is not role:
            route.report_value(
                "upstream",
                f"{label} needs an upstream with role {role.value}; "
                f"{upstream.name!r} has role {upstream.role.value}",
            )
        for part, rule in rules.items():
            if rule == "no" and route.has(part):
                route.report_key(part, f"{label} does not allow {part}")
            elif rule == "must" and not route.has(part):
                route.report_here(f"{label} needs {_NEEDS[part]}")
        for part, wanted in _REQUIRED_ROLE.items():
            settings = parts[part]
            target = None if settings is None else self.upstreams[settings.upstream]
            if rules[part] == "must" and target is not None and target.role is not wanted:
                route.report_key(
                    part,
                    f"{label} needs {_NEEDS[part]}; {target.name!r} has role {target.role.value}",
                )
        if stage is Stage.CANARY and split is not None and not 0 < split.extracted_weight < 100:
            route.report_key("split", f"{label} needs {_NEEDS['split']}")


def _settings(
    parent: Section, key: str, factory: Callable[..., Any], converters: dict[str, Convert[Any]]
) -> Any:
    """A settings section (all keys optional): its dataclass, or the defaults when absent."""
    return _policy(parent, key, factory, converters) or factory()


def _policy(
    parent: Section, key: str, factory: Callable[..., T], converters: dict[str, Convert[Any]]
) -> T | None:
    """The dataclass in `parent.key`, its keys being the field names; None if absent or invalid."""
    section = parent.section(key, converters)
    return None if section is None else section.build(factory, converters)


def _matcher(section: Section | None) -> RouteMatcher | None:
    if section is None:
        return RouteMatcher()
    conditions = {
        "headers": _conditions(section.section("headers", None), units.as_header_name),
        "cookies": _conditions(section.section("cookies", None), units.as_cookie_name),
    }
    values = section.values(units.MATCH_KEYS)
    if values is None or None in conditions.values():
        return None
    if values.get("methods") == ():
        section.report_value("methods", "expected at least one method")
        return None
    if "methods" in values:
        values["methods"] = frozenset(values["methods"])
    if "host" in values:
        values["hosts"] = values.pop("host")
    return section.construct(RouteMatcher, {**values, **conditions})


def _conditions(
    section: Section | None, as_key: Convert[str]
) -> tuple[tuple[str, str | None], ...] | None:
    """Header or cookie conditions (name -> value, or None for "present"); None if invalid."""
    if section is None:
        return ()
    found: list[tuple[str, str | None]] = []
    valid = True
    for key in section.names():
        value, valid_value = section.convert_value(key, _condition_value)
        if section.check_key(key, as_key) and valid_value:
            found.append((as_key(key), value))
        else:
            valid = False
    return tuple(found) if valid else None


def _check_targets(split: Section, targets: list[tuple[UpstreamConfig, float]]) -> bool:
    """Extracted targets first, exactly one legacy target last, weights summing to 100."""
    roles = [upstream.role for upstream, _ in targets]
    if len(targets) < 2 or roles[-1] is not Role.LEGACY or Role.LEGACY in roles[:-1]:
        got = ", ".join(f"{upstream.name} ({upstream.role.value})" for upstream, _ in targets)
        split.report_key(
            "targets",
            f"expected extracted targets first and exactly one legacy target last, got {got}",
        )
        return False
    total = sum(weight for _, weight in targets)
    if abs(total - 100) > 1e-9:
        split.report_key("targets", f"weights sum to {total:g}, expected 100")
        return False
    return True
