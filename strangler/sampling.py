"""Bernoulli sampling with one random draw per chosen item (pure: the random source is injected).

Choosing each request independently with probability p needs a random number per request. The
gaps between chosen requests of such a process are geometric, so one draw when a request is
chosen says how many to skip before the next: the same distribution, one draw per chosen
request instead of per request (about a hundred times fewer for a 1% shadow).
"""

from __future__ import annotations

import math
from collections.abc import Callable

__all__ = ["BernoulliSampler"]


class BernoulliSampler:
    """`take()` is true for each call independently with probability `percent` / 100."""

    __slots__ = ("_log_miss", "_rand", "_skip", "percent")

    def __init__(self, percent: float, rand: Callable[[], float]) -> None:
        self.percent = percent
        self._rand = rand  # uniform in [0, 1)
        self._log_miss = math.log(1.0 - percent / 100.0) if 0.0 < percent < 100.0 else 0.0
        self._skip = self._gap()

    def _gap(self) -> int:
        """How many calls to refuse before the next chosen one (-1: never choose)."""
        if self.percent >= 100.0:
            return 0
        if self.percent <= 0.0:
            return -1
        # Geometric(p) failures before a success: floor(ln U / ln(1 - p)), U uniform in (0, 1].
        return int(math.log(1.0 - self._rand()) / self._log_miss)

    def take(self) -> bool:
        skip = self._skip
        if skip > 0:
            self._skip = skip - 1
            return False
        if skip < 0:
            return False
        self._skip = self._gap()
        return True
