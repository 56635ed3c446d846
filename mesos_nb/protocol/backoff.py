"""Exponential backoff with jitter, the one retry rhythm used by every reconnecting client
(scheduler driver, agent channel, status-update retries, framework launchers).

Pure: the random source is injected so tests can make it deterministic.
"""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    """Attempt n waits in [cap/2, cap], cap = min(maximum, base * 2**n).

    Full-jitter halves keep a crowd of clients that lost the same master from reconnecting in
    lockstep, while the lower half-bound keeps a single client from hammering it.
    """

    def __init__(
        self,
        base: float = 0.25,
        maximum: float = 15.0,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.base = base
        self.maximum = maximum
        self._rng = rng
        self.attempt = 0

    def next(self) -> float:
        cap = min(self.maximum, self.base * (2 ** min(self.attempt, 30)))
        self.attempt += 1
        return cap / 2 + self._rng() * cap / 2

    def reset(self) -> None:
        self.attempt = 0


__all__ = ["Backoff"]
