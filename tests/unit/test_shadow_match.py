"""The shadow's shortcut for equal answers agrees with the comparison engine.

`strangler.shadow._same_answer` lets a healthy shadow's answer count as a match without the full
comparison: it may only say so when `strangler.diff.compare` would find no difference.
"""

from __future__ import annotations

import random

from strangler.diff import ComparePolicy, compare
from strangler.shadow import _Collector, _ignore, _same_answer

POLICIES = [
    ComparePolicy(),
    ComparePolicy(headers=frozenset({"content-type", "x-version"})),
    ComparePolicy(headers=frozenset({"content-type"}), ignore_headers=frozenset({"content-type"})),
    ComparePolicy(compare_status=False),
]
NAMES = [b"Content-Type", b"content-type", b"X-Version", b"Date", b"CONTENT-TYPE"]
VALUES = [b"application/json", b" application/json ", b"text/plain", b"1", b"2"]
BODIES = [[b'{"a":1}'], [b'{"a":', b"1}"], [b'{"a": 1}'], [b'{"a":2}'], [b""], []]


def collector(rng: random.Random) -> _Collector:
    answer = _Collector(1 << 20, _ignore)
    headers = [(rng.choice(NAMES), rng.choice(VALUES)) for _ in range(rng.randint(0, 3))]
    answer.status = rng.choice([200, 200, 404])  # as on_upstream_head sets them
    answer.headers = headers
    for chunk in rng.choice(BODIES):
        answer.on_upstream_body(chunk)
    answer.truncated = rng.random() < 0.05
    return answer


def test_a_shortcut_match_is_always_a_match_of_the_full_comparison() -> None:
    rng = random.Random(11)
    shortcuts = 0
    for _ in range(5_000):
        policy = rng.choice(POLICIES)
        compared = tuple(name.encode() for name in policy.compared_headers)
        a, b = collector(rng), collector(rng)
        if rng.random() < 0.5:
            b = a  # the same answer twice: the common case
        if _same_answer(a, b, compared):
            shortcuts += 1
            assert compare(a.response(), b.response(), policy).matched
    assert shortcuts > 1_000


def test_different_compared_headers_or_bodies_take_the_full_comparison() -> None:
    def answer(content_type: bytes, body: bytes) -> _Collector:
        one = _Collector(1 << 20, _ignore)
        one.status = 200
        one.headers = [(b"Content-Type", content_type)]
        one.on_upstream_body(body)
        return one

    json_a = answer(b"application/json", b"{}")
    assert _same_answer(json_a, answer(b"application/json", b"{}"), (b"content-type",))
    assert not _same_answer(json_a, answer(b"text/plain", b"{}"), (b"content-type",))
    assert not _same_answer(json_a, answer(b"application/json", b"[]"), (b"content-type",))
    assert _same_answer(json_a, answer(b"text/plain", b"{}"), ())
