"""Retry delays: exponential growth, jitter, a cap, and a reset on success.

Delay n (from 0) is drawn uniformly from [d/2, d] with d = min(cap, first * 2**n): a fleet of
agents that lost their server together does not come back in lock-step, and no delay is ever
shorter than half the nominal one, so a persistent failure never becomes a hot loop.
"""

from __future__ import annotations

import random


class Backoff:
    def __init__(self, first: float = 0.5, cap: float = 30.0) -> None:
        self.first = first
        self.cap = cap
        self.failures = 0
        self._random = random.Random()

    def next(self) -> float:
        """The delay before the next attempt, counting one more failure."""
        nominal = min(self.cap, self.first * 2 ** min(self.failures, 32))
        self.failures += 1
        return self._random.uniform(nominal / 2, nominal)

    def reset(self) -> None:
        self.failures = 0
