"""Sticky, monotonic weighted assignment of requests to upstreams (canary stage).

Role: a stickiness key (a user id, a session cookie or the value of :func:`new_bucket_cookie_value`)
is hashed by :func:`bucket_of` into one of :data:`BUCKETS` buckets; a :class:`WeightedSplit`
maps buckets to upstream names. The module is pure: no I/O, no clock, no hidden randomness.

Invariants:

- Sticky: the bucket of a key depends only on the key and the salt, identically in every process
  and on every machine (BLAKE2b, never the per-process randomised ``hash()``), so one user never
  mixes versions while the weights stay put.
- Monotonic: buckets are laid out as cumulative ranges in declared order, extracted targets first
  and the legacy target last. Raising extracted weight only takes buckets from the end of the
  range, i.e. from legacy: a key served by an extracted upstream at 10% is still served by an
  extracted upstream at 50%, and no key flips from extracted back to legacy.
- Weights are percents summing to 100; one bucket is 0.01%.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from bisect import bisect_right
from dataclasses import dataclass, field

__all__ = [
    "BUCKETS",
    "WeightedSplit",
    "bucket_of",
    "new_bucket_cookie_value",
    "parse_override",
]

BUCKETS = 10_000
_WEIGHT_SUM_TOLERANCE = 1e-6
_MIN_COOKIE_ENTROPY_BYTES = 16


def bucket_of(key: str, salt: str = "") -> int:
    """A stable, uniform bucket in ``[0, BUCKETS)`` for ``key`` (and an optional ``salt``).

    A per-route salt decorrelates routes: the same user is not always in the first 10% of
    every canary at once.
    """
    salt_bytes = salt.encode("utf-8")
    digest = hashlib.blake2b(
        len(salt_bytes).to_bytes(4, "big") + salt_bytes + key.encode("utf-8", "surrogatepass"),
        digest_size=8,
    ).digest()
    # 2**64 modulo 10_000 leaves a bias below 1e-15: negligible.
    return int.from_bytes(digest, "big") % BUCKETS


@dataclass(frozen=True, slots=True)
class WeightedSplit:
    """Upstream names with weight percents; extracted targets first, the legacy target last."""

    targets: tuple[tuple[str, float], ...]
    _bounds: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.targets:
            raise ValueError("a weighted split needs at least one target")
        names = [name for name, _ in self.targets]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate target in weighted split: {names}")
        if any(not 0 <= weight <= 100 for _, weight in self.targets):
            raise ValueError(f"weights must be percents in [0, 100]: {list(self.targets)}")
        total = sum(weight for _, weight in self.targets)
        if abs(total - 100) > _WEIGHT_SUM_TOLERANCE:
            raise ValueError(f"weights must sum to 100, not {total:g}: {list(self.targets)}")
        bounds: list[int] = []
        cumulative = 0.0
        for _, weight in self.targets:
            cumulative += weight
            bounds.append(min(BUCKETS, round(cumulative * BUCKETS / 100)))
        bounds[-1] = BUCKETS
        object.__setattr__(self, "_bounds", tuple(bounds))

    def choose(self, bucket: int) -> str:
        """The upstream owning ``bucket`` (from :func:`bucket_of`)."""
        if not 0 <= bucket < BUCKETS:
            raise ValueError(f"bucket {bucket} outside [0, {BUCKETS})")
        return self.targets[bisect_right(self._bounds, bucket)][0]


def parse_override(value: str | None, allowed: frozenset[str], secret: str | None) -> str | None:
    """The upstream a tester forces with ``<upstream>`` or ``<upstream>:<secret>``, or ``None``.

    The upstream must be in ``allowed``; when a ``secret`` is configured the value must carry it
    (compared in constant time). Anything else is ignored rather than rejected, so a wrong
    override falls back to the normal split and reveals nothing.
    """
    if not value:
        return None
    name, has_secret, given = value.strip().partition(":")
    if name not in allowed:
        return None
    if secret is None:
        return name
    if not has_secret:
        return None
    if hmac.compare_digest(given.encode("utf-8"), secret.encode("utf-8")):
        return name
    return None


def new_bucket_cookie_value(entropy: bytes) -> str:
    """A cookie-safe stickiness token from ``entropy`` (the caller passes ``os.urandom(16)``).

    Randomness is a parameter so the function stays pure and testable.
    """
    if len(entropy) < _MIN_COOKIE_ENTROPY_BYTES:
        raise ValueError(f"need at least {_MIN_COOKIE_ENTROPY_BYTES} bytes of entropy")
    return base64.urlsafe_b64encode(entropy).rstrip(b"=").decode("ascii")
