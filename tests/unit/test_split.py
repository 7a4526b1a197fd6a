"""Tests of strangler.split: stable buckets, sticky and monotonic splits, tester overrides."""

from __future__ import annotations

import pytest

from strangler.split import (
    BUCKETS,
    WeightedSplit,
    bucket_of,
    new_bucket_cookie_value,
    parse_override,
)

KEYS = [f"user-{number}" for number in range(10_000)]


def canary(extracted_weight: float) -> WeightedSplit:
    return WeightedSplit((("orders", extracted_weight), ("legacy", 100 - extracted_weight)))


PINNED_BUCKETS = [
    # (id, key, salt, bucket): computed once; a change here breaks stickiness for live users.
    ("user-1", "user-1", "", 9217),
    ("user-2", "user-2", "", 6806),
    ("user-1-salted", "user-1", "orders", 9638),
]


@pytest.mark.parametrize(
    ("key", "salt", "bucket"), [c[1:] for c in PINNED_BUCKETS], ids=[c[0] for c in PINNED_BUCKETS]
)
def test_bucket_is_stable_across_processes_and_machines(key: str, salt: str, bucket: int) -> None:
    assert bucket_of(key, salt) == bucket


def test_bucket_in_range_and_salt_decorrelates() -> None:
    plain = [bucket_of(key) for key in KEYS]
    salted = [bucket_of(key, salt="orders") for key in KEYS]
    assert all(0 <= bucket < BUCKETS for bucket in plain + salted)
    same = sum(a == b for a, b in zip(plain, salted, strict=True))
    assert same < 10  # ~1 expected by chance


def test_salt_and_key_do_not_run_together() -> None:
    # The salt is length-prefixed: ("a", "b") and ("", "ab") are different inputs.
    assert len({bucket_of("b", salt="a"), bucket_of("ab"), bucket_of("", salt="ab")}) == 3


def test_sticky_same_key_same_side() -> None:
    split = canary(30)
    for key in KEYS[:1000]:
        assert split.choose(bucket_of(key)) == split.choose(bucket_of(key))


def test_monotonic_when_weight_rises() -> None:
    at_10, at_50 = canary(10), canary(50)
    moved = 0
    for key in KEYS:
        bucket = bucket_of(key, salt="orders")
        before, after = at_10.choose(bucket), at_50.choose(bucket)
        if before == "orders":
            assert after == "orders", key
        elif after == "orders":
            moved += 1
    assert 3_500 < moved < 4_500  # ~40% of keys move, all of them from legacy


def test_monotonic_with_two_extracted_targets() -> None:
    before = WeightedSplit((("orders-v2", 10), ("orders", 10), ("legacy", 80)))
    after = WeightedSplit((("orders-v2", 10), ("orders", 40), ("legacy", 50)))
    for key in KEYS:
        bucket = bucket_of(key)
        if before.choose(bucket) != "legacy":
            assert after.choose(bucket) != "legacy", key


@pytest.mark.parametrize(
    ("weight", "tolerance"),
    [(10, 1.5), (1, 0.5), (50, 1.5), (90, 1.5)],
    ids=["10pct", "1pct", "50pct", "90pct"],
)
def test_observed_distribution(weight: float, tolerance: float) -> None:
    split = canary(weight)
    keys = 20_000
    extracted = sum(split.choose(bucket_of(f"k{number}")) == "orders" for number in range(keys))
    assert abs(extracted * 100 / keys - weight) <= tolerance


BOUNDARY_CASES = [
    ("zero-extracted", canary(0), {0: "legacy", BUCKETS - 1: "legacy"}),
    ("all-extracted", canary(100), {0: "orders", BUCKETS - 1: "orders"}),
    ("ten-percent-edges", canary(10), {0: "orders", 999: "orders", 1000: "legacy"}),
    ("single-target", WeightedSplit((("legacy", 100),)), {0: "legacy", BUCKETS - 1: "legacy"}),
    (
        "fractional",
        WeightedSplit((("a", 0.05), ("b", 33.33), ("legacy", 66.62))),
        {0: "a", 4: "a", 5: "b", 3337: "b", 3338: "legacy"},
    ),
]


@pytest.mark.parametrize(
    ("split", "expected"), [c[1:] for c in BOUNDARY_CASES], ids=[c[0] for c in BOUNDARY_CASES]
)
def test_choose_boundaries(split: WeightedSplit, expected: dict[int, str]) -> None:
    assert {bucket: split.choose(bucket) for bucket in expected} == expected


@pytest.mark.parametrize("bucket", [-1, BUCKETS], ids=["negative", "too-large"])
def test_choose_rejects_out_of_range_bucket(bucket: int) -> None:
    with pytest.raises(ValueError):
        canary(10).choose(bucket)


BAD_SPLITS = [
    ("empty", ()),
    ("sum-below-100", (("orders", 10.0), ("legacy", 80.0))),
    ("sum-above-100", (("orders", 30.0), ("legacy", 80.0))),
    ("negative", (("orders", -10.0), ("legacy", 110.0))),
    ("duplicate", (("legacy", 50.0), ("legacy", 50.0))),
]


@pytest.mark.parametrize("targets", [c[1] for c in BAD_SPLITS], ids=[c[0] for c in BAD_SPLITS])
def test_split_validates_weights(targets: tuple[tuple[str, float], ...]) -> None:
    with pytest.raises(ValueError):
        WeightedSplit(targets)


def test_split_equality_ignores_cache() -> None:
    assert canary(10) == canary(10)
    assert canary(10) != canary(20)
    assert "_bounds" not in repr(canary(10))


ALLOWED = frozenset({"orders", "legacy"})

OVERRIDE_CASES = [
    # (id, value, secret, expected)
    ("no-header", None, None, None),
    ("empty", "", None, None),
    ("plain-no-secret", "orders", None, "orders"),
    ("whitespace-stripped", " orders ", None, "orders"),
    ("legacy-allowed", "legacy", None, "legacy"),
    ("unknown-upstream", "billing", None, None),
    ("unknown-upstream-with-secret", "billing:s3cret", "s3cret", None),
    ("secret-right", "orders:s3cret", "s3cret", "orders"),
    ("secret-wrong", "orders:guess", "s3cret", None),
    ("secret-missing", "orders", "s3cret", None),
    ("secret-empty", "orders:", "s3cret", None),
    ("secret-with-colon", "orders:a:b", "a:b", "orders"),
    ("secret-non-ascii", "orders:clé", "clé", "orders"),
    ("secret-given-not-required", "orders:whatever", None, "orders"),
]


@pytest.mark.parametrize(
    ("value", "secret", "expected"),
    [c[1:] for c in OVERRIDE_CASES],
    ids=[c[0] for c in OVERRIDE_CASES],
)
def test_parse_override(value: str | None, secret: str | None, expected: str | None) -> None:
    assert parse_override(value, ALLOWED, secret) == expected


def test_bucket_cookie_value_is_cookie_safe_and_deterministic() -> None:
    entropy = bytes(range(16))
    value = new_bucket_cookie_value(entropy)
    assert value == new_bucket_cookie_value(entropy)
    assert value != new_bucket_cookie_value(bytes(range(1, 17)))
    assert len(value) == 22
    assert all(char.isalnum() or char in "-_" for char in value)
    assert 0 <= bucket_of(value) < BUCKETS


def test_bucket_cookie_value_needs_enough_entropy() -> None:
    with pytest.raises(ValueError):
        new_bucket_cookie_value(b"short")
