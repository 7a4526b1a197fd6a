"""How each config value is written: durations, sizes, names, URLs, and the syntax of every key.

Role: the value layer of the config loader. `parse_duration` and `parse_size` read the
human-friendly units (`250ms`, `64KiB`); the `as_*` converters read every other kind of value
(ports, percentages, header names, methods, paths, regexes, upstream URLs); the `*_KEYS` tables at
the end say which converter reads each key of each section, and are the single place where the
accepted keys of a section are listed (the loader decides structure and cross-references).

Pure functions, called once per value when a config is loaded, never per request. Each returns the
model's unit (seconds as float, bytes as int) or raises ValueError with a message that quotes the
value and shows a valid example, ready to be shown to the operator beside the key's location.

Invariants: results are finite and non-negative; booleans are never taken for numbers (YAML turns
`yes` into True, and True is an int in Python); names come out in the case they are matched in
(header names lower-case, methods upper-case).
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

from strangler.diff import ARRAY_ORDERS
from strangler.jsonpath import compile_path
from strangler.pathnorm import UnsafeTarget, normalize_target
from strangler.policies import ERROR_KINDS

__all__ = [
    "ACCESS_LOG_KEYS",
    "ADMIN_KEYS",
    "BREAKER_KEYS",
    "BULKHEAD_KEYS",
    "COMPARE_KEYS",
    "FALLBACK_KEYS",
    "FORWARDING_KEYS",
    "LIMITS_KEYS",
    "LISTEN_KEYS",
    "LOGGING_KEYS",
    "MATCH_KEYS",
    "MISMATCH_KEYS",
    "OVERRIDE_KEYS",
    "RETRY_KEYS",
    "REWRITE_KEYS",
    "SHADOW_KEYS",
    "SHUTDOWN_KEYS",
    "STICKY_KEYS",
    "TARGET_KEYS",
    "Convert",
    "Each",
    "UpstreamUrl",
    "as_bool",
    "as_choice",
    "as_cookie_name",
    "as_enum",
    "as_env_name",
    "as_header_name",
    "as_host",
    "as_int",
    "as_json_path",
    "as_method",
    "as_name",
    "as_optional",
    "as_path",
    "as_percent",
    "as_positive_duration",
    "as_regex",
    "as_status_set",
    "as_string",
    "as_upstream_url",
    "as_whole_seconds",
    "parse_duration",
    "parse_size",
]

T = TypeVar("T")
E = TypeVar("E", bound=enum.Enum)

_DURATION_UNITS: dict[str, float] = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?|\.\d+)\s*(ms|s|m|h|d)?")

_SIZE_UNITS: dict[str, int] = {
    "b": 1,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
}
_SIZE = re.compile(r"(\d+(?:\.\d+)?|\.\d+)\s*([a-z]+)?", re.IGNORECASE)


def parse_duration(value: object) -> float:
    """Seconds from `250ms`, `5s`, `1.5m`, `1h`, `30d` or a bare number of seconds."""
    expected = f"expected a duration such as 250ms or 5s, got {value!r}"
    if isinstance(value, bool):
        raise ValueError(expected)
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (found := _DURATION.fullmatch(value.strip())):
        number, unit = found.groups()
        seconds = float(number) * _DURATION_UNITS[unit or "s"]
    else:
        raise ValueError(expected)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{expected} (durations are finite and not negative)")
    return seconds


def parse_size(value: object) -> int:
    """Bytes from an integer or `512B`, `64KiB`, `10MiB`, `1GiB`

    `KB`, `MB` and `GB` are powers of 1000.
    """
    expected = f"expected a size such as 64KiB or 10MiB, got {value!r}"
    if isinstance(value, bool):
        raise ValueError(expected)
    if isinstance(value, int):
        size = Fraction(value)
    elif isinstance(value, str) and (found := _SIZE.fullmatch(value.strip())):
        number, unit = found.groups()
        multiplier = _SIZE_UNITS.get((unit or "b").lower())
        if multiplier is None:
            raise ValueError(f"{expected} (units: B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)")
        size = Fraction(number) * multiplier
    else:
        raise ValueError(expected)
    if size < 0:
        raise ValueError(f"{expected} (sizes are not negative)")
    if size.denominator != 1:
        raise ValueError(f"{expected} (not a whole number of bytes)")
    return int(size)


# -- converters for other config values: each takes the raw YAML value, raises ValueError ---------

Convert = Callable[[object], T]

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 token
_NAME = re.compile(r"[A-Za-z0-9_.\-]+")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HOST = re.compile(r"(\*\.)?[a-z0-9]([a-z0-9\-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9\-]*[a-z0-9])?)*")
_STATUS_RANGE = re.compile(r"([1-5]\d\d)\s*-\s*([1-5]\d\d)")


def as_bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


def as_string(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    return value


def as_optional(convert: Convert[T]) -> Convert[T | None]:
    """`convert`, but null stays None."""
    return lambda value: None if value is None else convert(value)


def as_int(minimum: int, maximum: int | None = None) -> Convert[int]:
    wanted = (
        f"an integer >= {minimum}" if maximum is None else f"an integer from {minimum} to {maximum}"
    )

    def convert(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an integer, got {value!r}")
        if value < minimum or (maximum is not None and value > maximum):
            raise ValueError(f"expected {wanted}, got {value}")
        return value

    return convert


def as_percent(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 100:
        raise ValueError(f"expected a percentage from 0 to 100, got {value!r}")
    return float(value)


def as_positive_duration(value: object) -> float:
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError(f"expected a duration above 0 such as 250ms or 5s, got {value!r}")
    return seconds


def as_whole_seconds(value: object) -> int:
    seconds = parse_duration(value)
    if seconds != int(seconds):
        raise ValueError(f"expected a whole number of seconds such as 30d or 3600, got {value!r}")
    return int(seconds)


def as_choice(allowed: Sequence[str]) -> Convert[str]:
    def convert(value: object) -> str:
        if value not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}, got {value!r}")
        return str(value)

    return convert


def as_enum(enum_type: type[E]) -> Convert[E]:
    by_value = {str(member.value): member for member in enum_type}
    choice = as_choice(tuple(by_value))
    return lambda value: by_value[choice(value)]


class Each(Generic[T]):
    """A list converted item by item; a Section reports each bad item at its own line.

    A single value stands for a one-item list.
    """

    __slots__ = ("item",)

    def __init__(self, item: Convert[T]) -> None:
        self.item = item

    def __call__(self, value: object) -> tuple[T, ...]:
        if isinstance(value, dict):
            raise ValueError("expected a list, got a mapping")
        return tuple(self.item(item) for item in (value if isinstance(value, list) else [value]))


def as_name(value: object) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ValueError(f"expected a name of letters, digits, '_', '.' and '-', got {value!r}")
    return value


def as_env_name(value: object) -> str:
    if not isinstance(value, str) or not _ENV_NAME.fullmatch(value):
        raise ValueError(f"expected an environment variable name such as MY_TOKEN, got {value!r}")
    return value


def as_header_name(value: object) -> str:
    """A header name, lower-cased; names with '_' are refused (the proxy drops such headers)."""
    if not isinstance(value, str) or not _TOKEN.fullmatch(value):
        raise ValueError(f"expected a header name such as X-User-Id, got {value!r}")
    if "_" in value:
        raise ValueError(
            f"header names with '_' are dropped by the proxy, so {value!r} would never be seen "
            "(use '-')"
        )
    return value.lower()


def as_cookie_name(value: object) -> str:
    if not isinstance(value, str) or not _TOKEN.fullmatch(value):
        raise ValueError(f"expected a cookie name such as session_id, got {value!r}")
    return value


def as_method(value: object) -> str:
    """An HTTP method, upper-cased."""
    if not isinstance(value, str) or not _TOKEN.fullmatch(value):
        raise ValueError(f"expected an HTTP method such as GET, got {value!r}")
    return value.upper()


def as_host(value: object) -> str:
    """A host name to match, lower-cased, optionally `*.` wildcard; no port."""
    host = value.lower().rstrip(".") if isinstance(value, str) else None
    if host is None or not _HOST.fullmatch(host):
        raise ValueError(f"expected a host name such as shop.example.com, got {value!r}")
    return host


def as_path(value: object) -> str:
    """A path in the normalised form requests are matched on (see strangler.pathnorm)."""
    if not isinstance(value, str) or not value.startswith("/"):
        raise ValueError(f"expected a path starting with '/', got {value!r}")
    try:
        target = normalize_target(value.encode("utf-8"))
    except UnsafeTarget as exc:
        raise ValueError(f"invalid path {value!r}: {exc.reason}") from None
    if target.has_query or target.path != value:
        raise ValueError(
            f"path {value!r} would never match: requests are matched on their normalised path, "
            f"write {target.path!r}"
        )
    return value


def as_regex(value: object) -> re.Pattern[str]:
    if not isinstance(value, str):
        raise ValueError(f"expected a regular expression, got {value!r}")
    try:
        return re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {value!r}: {exc}") from None


def as_json_path(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a JSON path such as $.generated_at, got {value!r}")
    compile_path(value)  # raises ValueError naming the offset
    return value


def as_status_set(value: object) -> frozenset[int]:
    """HTTP statuses from a list of codes and ranges such as "500-599"."""
    statuses: set[int] = set()
    for item in value if isinstance(value, list) else [value]:
        if isinstance(item, int) and not isinstance(item, bool) and 100 <= item <= 599:
            statuses.add(item)
        elif isinstance(item, str) and (found := _STATUS_RANGE.fullmatch(item.strip())):
            low, high = int(found.group(1)), int(found.group(2))
            if low > high:
                raise ValueError(f"status range {item!r} is empty")
            statuses.update(range(low, high + 1))
        else:
            raise ValueError(f'expected HTTP statuses such as 503 or "500-599", got {item!r}')
    return frozenset(statuses)


@dataclass(frozen=True, slots=True)
class UpstreamUrl:
    url: str
    host: str
    port: int
    base_path: str  # "" or a path without trailing slash


def as_upstream_url(value: object) -> UpstreamUrl:
    """`http://host[:port][/path]`, nothing else (https upstreams are not supported yet)."""
    expected = f"expected a URL such as http://127.0.0.1:8001, got {value!r}"
    if not isinstance(value, str):
        raise ValueError(expected)
    parts = urlsplit(value)
    if parts.scheme == "https":
        raise ValueError(f"https upstreams are not supported yet (got {value!r}); use http://")
    if parts.scheme != "http" or not parts.netloc:
        raise ValueError(expected)
    if parts.username is not None or parts.query or parts.fragment or "?" in value:
        raise ValueError(f"expected only http://host[:port][/path], got {value!r}")
    try:
        port = 80 if parts.port is None else parts.port
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise ValueError(f"port out of range 1 to 65535 in {value!r}")
    host = parts.hostname or ""
    if not _HOST.fullmatch(host) or host.startswith("*"):
        raise ValueError(f"invalid host {host!r} in {value!r} (IPv6 literals are not supported)")
    base_path = parts.path.rstrip("/")
    if base_path:
        as_path(base_path)
    return UpstreamUrl(value, host, port, base_path)


# -- the value syntax of each config section ------------------------------------------------------
# Key -> converter; for sections read straight into a dataclass, the keys are its field names.
LISTEN_KEYS: dict[str, Convert[Any]] = {
    "host": as_string,
    "port": as_int(0, 65535),
    "backlog": as_int(1),
}
ADMIN_KEYS: dict[str, Convert[Any]] = {
    "host": as_string,
    "port": as_int(0, 65535),
    "token_env": as_env_name,
}
LIMITS_KEYS: dict[str, Convert[Any]] = {
    "max_request_line": parse_size,
    "max_header_bytes": parse_size,
    "max_headers": as_int(1),
    "max_body_bytes": parse_size,
    "header_timeout": as_positive_duration,
    "body_timeout": as_positive_duration,
    "idle_timeout": as_positive_duration,
}
FORWARDING_KEYS: dict[str, Convert[Any]] = {
    "trust_forwarded_headers": as_bool,
    "request_id_header": as_header_name,
}
SHUTDOWN_KEYS: dict[str, Convert[Any]] = {"drain_timeout": parse_duration}
MISMATCH_KEYS: dict[str, Convert[Any]] = {
    "keep": as_int(1, 100_000),
    "preview_bytes": parse_size,
    "jsonl_path": as_optional(as_string),
}
LOGGING_KEYS: dict[str, Convert[Any]] = {
    "level": as_choice(("debug", "info", "warning", "error")),
    "format": as_choice(("json", "console")),
}
ACCESS_LOG_KEYS: dict[str, Convert[Any]] = {
    "path": as_optional(as_string),
    "enabled": as_bool,
    "flush_interval": as_positive_duration,
}
BREAKER_KEYS: dict[str, Convert[Any]] = {
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
BULKHEAD_KEYS: dict[str, Convert[Any]] = {
    "max_concurrent": as_int(1),
    "max_wait": parse_duration,
    "max_waiting": as_int(0),
}
RETRY_KEYS: dict[str, Convert[Any]] = {
    "attempts": as_int(1),
    "backoff_base": as_positive_duration,
    "backoff_max": as_positive_duration,
    "retry_on": Each(as_choice(sorted(ERROR_KINDS))),
    "retry_statuses": as_status_set,
    "non_idempotent": as_bool,
    "per_try_timeout": as_optional(as_positive_duration),
    "budget_percent": as_percent,
    "min_retry_concurrency": as_int(0),
}
MATCH_KEYS: dict[str, Convert[Any]] = {
    "path_prefix": as_path,
    "path": as_path,
    "path_regex": as_regex,
    "methods": Each(as_method),
    "host": Each(as_host),
}
REWRITE_KEYS: dict[str, Convert[Any]] = {"strip_prefix": as_bool, "replace_prefix": as_path}
FALLBACK_KEYS: dict[str, Convert[Any]] = {
    "buffer_body_bytes": parse_size,
    "non_idempotent": as_bool,
}
SHADOW_KEYS: dict[str, Convert[Any]] = {
    "percent": as_percent,
    "max_body_bytes": parse_size,
    "max_in_flight": as_int(1),
    "timeout": as_positive_duration,
    "capture_bytes": parse_size,
    "noise_percent": as_percent,
}
COMPARE_KEYS: dict[str, Convert[Any]] = {
    "compare_status": as_bool,
    "headers": Each(as_header_name),
    "ignore_headers": Each(as_header_name),
    "ignore_paths": Each(as_json_path),
    "array_order": as_choice(ARRAY_ORDERS),
    "max_differences": as_int(1),
}
TARGET_KEYS: dict[str, Convert[Any]] = {"upstream": as_string, "weight": as_percent}
STICKY_KEYS: dict[str, Convert[Any]] = {
    "cookie": as_optional(as_cookie_name),
    "header": as_optional(as_header_name),
    "client_address": as_bool,
    "set_cookie": as_optional(as_cookie_name),
    "cookie_max_age": as_whole_seconds,
    "salt": as_string,
}
OVERRIDE_KEYS: dict[str, Convert[Any]] = {
    "header": as_optional(as_header_name),
    "cookie": as_optional(as_cookie_name),
    "secret_env": as_optional(as_env_name),
}
