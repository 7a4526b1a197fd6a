"""The validated, immutable configuration model.

The loader (`strangler.loader`) turns YAML into these objects once; everything downstream reads them
and never mutates them. Durations are seconds (float), sizes are bytes (int), names are already
checked to refer to something that exists. Policies that belong to an engine (breaker, retry,
bulkhead, comparison, route matching, weighted split) are that engine's own frozen dataclass, so the
model is just the glue that says which policy applies where.

Invariants the loader guarantees:
- every upstream named by a route (primary, fallback, shadow, split target) exists;
- route names are unique and `default` is not used as a route name;
- a route's settings fit its migration stage (see `Stage`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from strangler.diff import ComparePolicy
from strangler.policies import BreakerPolicy, BulkheadPolicy, RetryPolicy
from strangler.routing import RouteMatcher

__all__ = [
    "AccessLogSettings",
    "AdminSettings",
    "Config",
    "FallbackSettings",
    "ForwardingSettings",
    "LimitSettings",
    "ListenSettings",
    "LoggingSettings",
    "MismatchSettings",
    "OverrideSettings",
    "Rewrite",
    "Role",
    "RouteConfig",
    "ShadowSettings",
    "ShutdownSettings",
    "SplitSettings",
    "Stage",
    "StickySettings",
    "UpstreamConfig",
]


class Role(enum.Enum):
    """Which side of the migration an upstream is on."""

    LEGACY = "legacy"
    EXTRACTED = "extracted"


class Stage(enum.Enum):
    """A route's migration stage, in the order a migration walks through them.

    - legacy: all traffic to the monolith;
    - shadow: the monolith serves, the extracted service receives mirrored copies;
    - canary: a sticky weighted split between extracted and legacy;
    - migrated: the extracted service serves, the monolith is the fallback;
    - retired: the extracted service serves, the monolith's copy is gone (no fallback).
    """

    LEGACY = "legacy"
    SHADOW = "shadow"
    CANARY = "canary"
    MIGRATED = "migrated"
    RETIRED = "retired"


@dataclass(frozen=True, slots=True)
class ListenSettings:
    host: str = "0.0.0.0"
    port: int = 8080
    backlog: int = 1024


@dataclass(frozen=True, slots=True)
class AdminSettings:
    host: str = "127.0.0.1"
    port: int = 9901
    token_env: str = "STRANGLER_ADMIN_TOKEN"


@dataclass(frozen=True, slots=True)
class LimitSettings:
    """Edge limits; nginx-like defaults, all overridable."""

    max_request_line: int = 8192
    max_header_bytes: int = 32768
    max_headers: int = 100
    max_body_bytes: int = 10 * 1024 * 1024
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    idle_timeout: float = 60.0


@dataclass(frozen=True, slots=True)
class ForwardingSettings:
    """How the proxy treats forwarding headers sent by the client."""

    trust_forwarded_headers: bool = False
    request_id_header: str = "x-request-id"


@dataclass(frozen=True, slots=True)
class AccessLogSettings:
    path: str | None = None  # None: standard output
    enabled: bool = True
    flush_interval: float = 0.005


@dataclass(frozen=True, slots=True)
class LoggingSettings:
    level: str = "info"
    format: str = "json"  # "json" or "console"
    access: AccessLogSettings = field(default_factory=AccessLogSettings)


@dataclass(frozen=True, slots=True)
class ShutdownSettings:
    drain_timeout: float = 20.0


@dataclass(frozen=True, slots=True)
class MismatchSettings:
    """Where shadow mismatches are kept: an in-memory ring for the admin API, optionally a file."""

    keep: int = 100
    preview_bytes: int = 2048
    jsonl_path: str | None = None


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    name: str
    url: str
    scheme: str
    host: str
    port: int
    base_path: str  # "" or a path without trailing slash, prepended to every forwarded path
    role: Role
    connect_timeout: float = 2.0
    timeout: float = 30.0
    pool_size: int = 100
    breaker: BreakerPolicy | None = None
    bulkhead: BulkheadPolicy | None = None

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        return self.host if self.port == default else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Rewrite:
    strip_prefix: bool = False
    replace_prefix: str | None = None


@dataclass(frozen=True, slots=True)
class FallbackSettings:
    upstream: str
    buffer_body_bytes: int = 64 * 1024
    non_idempotent: bool = False


@dataclass(frozen=True, slots=True)
class ShadowSettings:
    upstream: str
    percent: float = 100.0
    methods: frozenset[str] = frozenset({"GET", "HEAD", "OPTIONS"})
    max_body_bytes: int = 64 * 1024
    max_in_flight: int = 50
    timeout: float = 5.0
    capture_bytes: int = 1024 * 1024
    compare: ComparePolicy = field(default_factory=ComparePolicy)
    noise_percent: float = 0.0


@dataclass(frozen=True, slots=True)
class StickySettings:
    """Where the stickiness key comes from; exactly one source is set."""

    cookie: str | None = None
    header: str | None = None
    client_address: bool = False
    set_cookie: str | None = None  # cookie the proxy sets for clients without a key
    cookie_max_age: int = 30 * 86400
    salt: str = ""


@dataclass(frozen=True, slots=True)
class OverrideSettings:
    header: str | None = "x-strangler-upstream"
    cookie: str | None = None
    secret_env: str | None = None


@dataclass(frozen=True, slots=True)
class SplitSettings:
    targets: tuple[
        tuple[str, float], ...
    ]  # extracted targets first, legacy last; weights sum to 100
    sticky: StickySettings = field(default_factory=StickySettings)
    override: OverrideSettings | None = None

    @property
    def extracted_weight(self) -> float:
        return sum(weight for _, weight in self.targets[:-1])


@dataclass(frozen=True, slots=True)
class RouteConfig:
    name: str
    matcher: RouteMatcher
    upstream: str
    stage: Stage
    line: int = 0
    rewrite: Rewrite = field(default_factory=Rewrite)
    timeout: float | None = None
    max_body_bytes: int | None = None
    fallback: FallbackSettings | None = None
    breaker: BreakerPolicy | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    shadow: ShadowSettings | None = None
    split: SplitSettings | None = None


@dataclass(frozen=True, slots=True)
class Config:
    """A whole validated config; `version` is a short digest of the source text."""

    source: str
    version: str
    listen: ListenSettings
    admin: AdminSettings
    limits: LimitSettings
    forwarding: ForwardingSettings
    logging: LoggingSettings
    shutdown: ShutdownSettings
    upstreams: dict[str, UpstreamConfig]
    routes: tuple[RouteConfig, ...]
    default_route: RouteConfig | None
    mismatches: MismatchSettings = field(default_factory=MismatchSettings)

    def route(self, name: str) -> RouteConfig:
        for route in self.routes:
            if route.name == name:
                return route
        if self.default_route is not None and self.default_route.name == name:
            return self.default_route
        raise KeyError(name)
