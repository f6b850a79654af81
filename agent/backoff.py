"""Exponential backoff with full jitter, for retries that must neither hammer nor stall.

Example::

    >>> backoff = Backoff(initial_s=0.5, max_s=30, seed=1)
    >>> [round(backoff.next(), 2) <= cap for cap in (0.5, 1.0, 2.0)]
    [True, True, True]
    >>> backoff.reset()

Full jitter (a uniform draw between `floor` and the capped exponential) spreads the retries
of many stations that lost the service at the same moment, so they do not all come back in
the same millisecond (AWS Architecture Blog, "Exponential Backoff And Jitter", 2015). The
floor keeps a retry from ever being a busy loop.
"""

from __future__ import annotations

import random


class Backoff:
    def __init__(self, *, initial_s: float = 0.5, max_s: float = 30.0, floor_s: float = 0.05,
                 seed: int | None = None) -> None:
        if not 0 < initial_s <= max_s:
            raise ValueError(f"backoff needs 0 < initial_s <= max_s, got {initial_s} and {max_s}")
        self.initial_s, self.max_s, self.floor_s = initial_s, max_s, min(floor_s, initial_s)
        self.attempt = 0
        self._random = random.Random(seed)

    @property
    def cap_s(self) -> float:
        """The largest wait the next retry can draw."""
        return min(self.max_s, self.initial_s * 2 ** self.attempt)

    def next(self, at_least_s: float = 0.0) -> float:
        """Seconds to wait before the next try (at least `at_least_s`, e.g. a Retry-After)."""
        wait = self._random.uniform(self.floor_s, self.cap_s)
        self.attempt = min(self.attempt + 1, 62)
        return max(wait, min(at_least_s, self.max_s))

    def reset(self) -> None:
        """After a success: the next failure starts from `initial_s` again."""
        self.attempt = 0
