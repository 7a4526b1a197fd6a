"""Tests of strangler.sampling: skip sampling keeps the Bernoulli process's distribution."""

from __future__ import annotations

import itertools
import random

import pytest

from strangler.sampling import BernoulliSampler


@pytest.mark.parametrize("percent", [0.5, 1.0, 10.0, 50.0, 90.0, 99.0])
def test_share_and_gaps_are_those_of_independent_draws(percent: float) -> None:
    rng = random.Random(int(percent * 10))
    sampler = BernoulliSampler(percent, rng.random)
    calls = 200_000
    chosen = [index for index in range(calls) if sampler.take()]
    p = percent / 100.0
    # Binomial share within five standard deviations.
    sd = (calls * p * (1 - p)) ** 0.5
    assert abs(len(chosen) - calls * p) <= 5 * sd
    # Gaps between chosen calls are geometric: their mean is (1 - p) / p skipped calls, and
    # a call right after a chosen one is chosen again with probability p (no memory).
    gaps = [b - a - 1 for a, b in itertools.pairwise(chosen)]
    mean = sum(gaps) / len(gaps)
    assert mean == pytest.approx((1 - p) / p, rel=0.1, abs=0.05)
    back_to_back = sum(1 for gap in gaps if gap == 0) / len(gaps)
    assert back_to_back == pytest.approx(p, rel=0.1, abs=0.01)


def test_all_and_nothing_draw_nothing() -> None:
    def never_called() -> float:
        raise AssertionError("no draw needed")

    every = BernoulliSampler(100.0, never_called)
    none = BernoulliSampler(0.0, never_called)
    assert all(every.take() for _ in range(1000))
    assert not any(none.take() for _ in range(1000))


def test_one_draw_per_chosen_call() -> None:
    draws = 0
    rng = random.Random(3)

    def counted() -> float:
        nonlocal draws
        draws += 1
        return rng.random()

    sampler = BernoulliSampler(1.0, counted)
    chosen = sum(sampler.take() for _ in range(100_000))
    assert draws == chosen + 1  # one for the first gap, then one per chosen call
