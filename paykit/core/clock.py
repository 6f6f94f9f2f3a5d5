"""Time for every paykit process: one clock in milliseconds, one backoff for every retry loop."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

_RNG = random.Random()


def now_ms() -> int:
    """Milliseconds since the Unix epoch: what every `*_unix_ms` column and field holds."""
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, kw_only=True)
class Backoff:
    """Pauses between tries of something that may work later: doubling from `first_s`, capped at
    `max_s`, with "equal jitter" (half fixed, half random), which spreads many retrying clients
    apart yet never waits less than half the step, so a loop never spins."""

    first_s: float
    max_s: float

    def delay_s(self, failures: int, rng: random.Random | None = None) -> float:
        """The pause after the `failures`-th failure in a row (1 for the first)."""
        step = min(self.max_s, self.first_s * 2 ** min(max(failures, 1) - 1, 32))
        return (rng or _RNG).uniform(step / 2, step)
