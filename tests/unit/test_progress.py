"""RouteProgress (sliding-window extracted share, legacy path templates) and path_template.

Pure: a fake clock, no sockets, no sleeps.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from strangler.progress import RouteProgress, path_template


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# ---- path_template ----------------------------------------------------------------------

TEMPLATE_CASES = [
    ("no_digits_unchanged", "/api/orders/search", "/api/orders/search"),
    ("root", "/", "/"),
    ("numeric_id", "/api/orders/17", "/api/orders/{id}"),
    ("two_numeric_ids", "/api/orders/17/items/3", "/api/orders/{id}/items/{id}"),
    ("uuid", "/api/orders/123e4567-e89b-12d3-a456-426614174000", "/api/orders/{id}"),
    ("long_hex", "/api/blobs/0123456789abcdef", "/api/blobs/{id}"),
    ("short_hex_kept", "/api/blobs/0123456789abcde", "/api/blobs/0123456789abcde"),
    ("ticket_key", "/api/tickets/ABC-123", "/api/tickets/{id}"),
    ("version_segment_kept", "/api/v2/orders", "/api/v2/orders"),
    ("mixed_word_kept", "/api/orders/abc123", "/api/orders/abc123"),
    ("trailing_slash_kept", "/api/orders/17/", "/api/orders/{id}/"),
    ("lowercase_ticket_kept", "/api/tickets/abc-123", "/api/tickets/abc-123"),
]


@pytest.mark.parametrize(
    ("path", "expected"),
    [(p, e) for _, p, e in TEMPLATE_CASES],
    ids=[i for i, _, _ in TEMPLATE_CASES],
)
def test_path_template(path: str, expected: str) -> None:
    assert path_template(path) == expected


# ---- the sliding window -------------------------------------------------------------------


def test_empty_window_has_no_share() -> None:
    progress = RouteProgress(FakeClock())
    assert progress.counts() == (0, 0)
    assert progress.extracted_share() is None
    assert progress.legacy_templates() == []


def test_share_counts_extracted_against_all() -> None:
    progress = RouteProgress(FakeClock())
    for extracted in (True, False, False, False):
        progress.record(extracted, "/api/orders/1")
    assert progress.counts() == (1, 4)
    assert progress.extracted_share() == pytest.approx(25.0)


@dataclass(frozen=True)
class ExpiryCase:
    id: str
    elapsed: float  # seconds after the first requests (recorded at t=0 in a fresh bucket)
    counts: tuple[int, int]


EXPIRY_CASES = [
    ExpiryCase("same_bucket", 5.0, (1, 2)),
    ExpiryCase("last_second_of_window", 299.0, (1, 2)),
    ExpiryCase("window_passed", 300.0, (0, 0)),
    ExpiryCase("long_after", 10_000.0, (0, 0)),
]


@pytest.mark.parametrize("case", EXPIRY_CASES, ids=[c.id for c in EXPIRY_CASES])
def test_requests_leave_the_window_after_it_passes(case: ExpiryCase) -> None:
    clock = FakeClock(0.0)
    progress = RouteProgress(clock, window=300.0, bucket_seconds=10.0)
    progress.record(True, "/a")
    progress.record(False, "/b")
    clock.now = case.elapsed
    assert progress.counts() == case.counts


def test_window_slides_bucket_by_bucket() -> None:
    clock = FakeClock(0.0)
    progress = RouteProgress(clock, window=30.0, bucket_seconds=10.0)
    progress.record(True, "/x")  # bucket 0
    clock.now = 10.0
    progress.record(False, "/x")  # bucket 1
    clock.now = 20.0
    progress.record(False, "/x")  # bucket 2
    assert progress.counts() == (1, 3)
    clock.now = 30.0  # bucket 0 leaves
    assert progress.counts() == (0, 2)
    assert progress.extracted_share() == 0.0
    progress.record(True, "/x")
    assert progress.counts() == (1, 3)
    clock.now = 55.0  # buckets 1 and 2 leave, bucket 3 stays
    assert progress.counts() == (1, 1)
    assert progress.extracted_share() == 100.0


def test_old_buckets_are_dropped_so_memory_stays_fixed() -> None:
    clock = FakeClock(0.0)
    progress = RouteProgress(clock, window=30.0, bucket_seconds=10.0)
    for second in range(0, 10_000, 10):
        clock.now = float(second)
        progress.record(second % 20 == 0, "/x")
    assert progress.counts() == (1, 3)  # 9970 s, 9980 s (extracted), 9990 s
    assert len(progress._buckets) <= progress.size


# ---- legacy path templates ----------------------------------------------------------------


def test_only_legacy_requests_are_templated_most_requested_first() -> None:
    progress = RouteProgress(FakeClock())
    for path in ("/api/orders/1", "/api/orders/2", "/api/orders/3", "/api/orders/search"):
        progress.record(False, path)
    progress.record(False, "/api/orders/9/items")
    progress.record(False, "/api/orders/search")
    progress.record(True, "/api/orders/extracted-only")
    assert progress.legacy_templates() == [
        ("/api/orders/{id}", 3),
        ("/api/orders/search", 2),
        ("/api/orders/{id}/items", 1),
    ]
    assert progress.legacy_templates(top=1) == [("/api/orders/{id}", 3)]


def test_templates_are_bounded_and_the_rest_counted_as_other() -> None:
    progress = RouteProgress(FakeClock(), max_templates=3)
    for n in range(10):
        progress.record(False, f"/invented/path-{chr(97 + n)}")
    progress.record(False, "/invented/path-a")  # known: still counted on its own template
    templates = dict(progress.legacy_templates())
    assert len(templates) == 4
    assert templates["/invented/path-a"] == 2
    assert templates["{other}"] == 7


def test_templates_outlive_the_share_window() -> None:
    clock = FakeClock(0.0)
    progress = RouteProgress(clock, window=30.0, bucket_seconds=10.0)
    progress.record(False, "/api/orders/7")
    clock.now = 1000.0
    assert progress.counts() == (0, 0)
    assert progress.legacy_templates() == [("/api/orders/{id}", 1)]
