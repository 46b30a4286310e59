"""Retry intervals after server errors, as Mender's client computes them, plus jitter.

Mender's ``ExponentialBackoff``: starting at one minute (or ``RetryPollIntervalSeconds`` when
that is shorter), each interval is used three times, then doubled, never beyond
``RetryPollIntervalSeconds``; with ``RetryPollCount`` 0 the retries end once the longest interval
has been used three times, otherwise after ``RetryPollCount`` retries. Then the daemon waits for
its regular poll interval. pymender adds up to 10 % of random jitter to every interval, so that
a fleet that lost its server does not come back all in the same second.
"""

from __future__ import annotations

import random
from collections.abc import Callable

SMALLEST = 60.0
JITTER = 0.1


class Backoff:
    def __init__(self, max_interval: float, try_count: int = 0,
                 rand: Callable[[], float] = random.random) -> None:
        self.smallest = min(SMALLEST, max_interval)
        self.max_interval = max(max_interval, self.smallest)
        self.try_count = try_count
        self.iteration = 0
        self._rand = rand

    def reset(self) -> None:
        self.iteration = 0

    def next_interval(self) -> float | None:
        """The next wait in seconds, or None when the retries are used up."""
        self.iteration += 1
        if self.try_count > 0 and self.iteration > self.try_count:
            return None
        interval = self.smallest
        count = 3
        while count < self.iteration:
            new = min(interval * 2, self.max_interval)
            if self.try_count <= 0 and new == interval:
                return None
            interval = new
            count += 3
        return interval * (1 + JITTER * self._rand())


__all__ = ["Backoff"]
