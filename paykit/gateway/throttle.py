"""Limits per caller and time: sign-in throttling (OWASP) and budgets per address.

Sign-in (docs/security.md, "Sign-in"), following OWASP's authentication cheat sheet instead of a
hard lockout: every attempt is counted *before* its password is hashed, atomically, so a burst
of concurrent guesses cannot slip past. The waits grow with failures per (name, address): an
attacker slows only their own guesses, and the owner signing in from elsewhere is not held up.
A gentler count per name over all addresses bounds a guesser with many addresses, and each
address has a budget of failed sign-ins over all names. Names are counted whether or not they
belong to a user, so the answer says nothing about who exists.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from paykit.core.clock import now_ms
from paykit.core.errors import AccountLocked, RateLimited

FREE_FAILURES = 3  # failed sign-ins of one name from one address before waits begin
NAME_FREE_FAILURES = 20  # ... of one name from all addresses together
FIRST_WAIT_S = 1.0  # then 1, 2, 4, ... s between attempts
MAX_WAIT_S = 300.0  # per (name, address)
NAME_MAX_WAIT_S = 60.0  # per name: a guesser with many addresses makes at most one a minute
FORGET_S = 3600.0  # failures older than this are forgotten
PEER_FAILURES_PER_MIN = 20  # failed sign-ins one address may make, over all names
TRACKED_MAX = 100_000  # names and addresses remembered (least recently used go first)


def wait_after_s(failures: int, free: int, max_wait_s: float) -> float:
    """The wait before the next attempt, after `failures` counted failures."""
    if failures < free:
        return 0.0
    return min(max_wait_s, FIRST_WAIT_S * 2 ** (failures - free))


@dataclass
class _Failures:
    count: int = 0
    next_ms: int = 0  # no attempt before this
    last_ms: int = 0


class Bucket:
    """A token bucket per key: `capacity` units, refilled at capacity per `period_s`."""

    def __init__(self, capacity: float, period_s: float) -> None:
        self.capacity = capacity
        self.rate_per_ms = capacity / (period_s * 1000)
        self._levels: OrderedDict[str, tuple[float, int]] = OrderedDict()

    def level(self, key: str, ts: int) -> float:
        level, at = self._levels.get(key, (self.capacity, ts))
        return min(self.capacity, level + (ts - at) * self.rate_per_ms)

    def take(self, key: str, units: float, ts: int) -> float:
        """Takes units if there are enough; returns 0, else the seconds until there will be."""
        level = self.level(key, ts)
        if units > level:
            return (units - level) / self.rate_per_ms / 1000
        self._levels[key] = (level - units, ts)
        self._levels.move_to_end(key)
        if len(self._levels) > TRACKED_MAX:
            self._levels.popitem(last=False)
        return 0.0

    def give_back(self, key: str, units: float, ts: int) -> None:
        self._levels[key] = (min(self.capacity, self.level(key, ts) + units), ts)


@dataclass(frozen=True)
class Attempt:
    name: str
    peer: str


class SignInThrottle:
    """Counts sign-in attempts before hashing; begin() refuses one that must wait."""

    def __init__(
        self, *, free_failures: int = FREE_FAILURES, peer_per_min: int = PEER_FAILURES_PER_MIN
    ) -> None:
        self.free = free_failures
        self._lock = threading.Lock()
        self._pairs: OrderedDict[tuple[str, str], _Failures] = OrderedDict()
        self._names: OrderedDict[str, _Failures] = OrderedDict()
        self._peers = Bucket(peer_per_min, 60.0)

    def begin(self, name: str, peer: str) -> Attempt:
        """Counts this attempt as a failure now (a success takes it back), or raises
        AccountLocked (this name from this address, or this name: wait) or RateLimited (this
        address: wait). The same for names that exist and names that do not."""
        ts = now_ms()
        with self._lock:
            pair = self._get(self._pairs, (name, peer), ts)
            whole = self._get(self._names, name, ts)
            wait_ms = max(pair.next_ms, whole.next_ms) - ts
            if wait_ms > 0:
                raise AccountLocked(
                    f"too many failed sign-ins for this name: try again in {_secs(wait_ms)} s"
                )
            peer_wait_s = self._peers.take(peer, 1, ts)
            if peer_wait_s > 0:
                raise RateLimited(
                    "too many failed sign-ins from your address: try again in "
                    f"{_secs(peer_wait_s * 1000)} s"
                )
            self._count(pair, self.free, MAX_WAIT_S, ts)
            self._count(whole, NAME_FREE_FAILURES, NAME_MAX_WAIT_S, ts)
        return Attempt(name, peer)

    def succeeded(self, attempt: Attempt) -> None:
        """The password was right: this address starts afresh for this name; the attempt is
        taken back from the name's and the address's counts."""
        ts = now_ms()
        with self._lock:
            self._pairs.pop((attempt.name, attempt.peer), None)
            whole = self._names.get(attempt.name)
            if whole is not None:
                whole.count = max(0, whole.count - 1)
                wait_s = wait_after_s(whole.count, NAME_FREE_FAILURES, NAME_MAX_WAIT_S)
                whole.next_ms = whole.last_ms + int(wait_s * 1000)
            self._peers.give_back(attempt.peer, 1, ts)

    @staticmethod
    def _get(table: OrderedDict, key, ts: int) -> _Failures:
        record = table.get(key)
        if record is None or ts - record.last_ms > FORGET_S * 1000:
            record = table[key] = _Failures()
        table.move_to_end(key)
        if len(table) > TRACKED_MAX:
            table.popitem(last=False)
        return record

    @staticmethod
    def _count(record: _Failures, free: int, max_wait_s: float, ts: int) -> None:
        record.count += 1
        record.last_ms = ts
        record.next_ms = ts + int(wait_after_s(record.count, free, max_wait_s) * 1000)


def _secs(ms: float) -> int:
    return max(1, int((ms + 999) // 1000))


class PeerBudget:
    """What one address may spend per period (registrations, opening balances); thread-safe."""

    def __init__(self, capacity: int, period_s: float, describe: str) -> None:
        self.capacity = capacity
        self.describe = describe  # "registrations from one address are limited to 100 an hour"
        self._bucket = Bucket(capacity, period_s)
        self._lock = threading.Lock()

    def take(self, peer: str, units: int) -> None:
        """Spends `units` of the address's budget, or raises RateLimited (nothing spent)."""
        with self._lock:
            wait_s = self._bucket.take(peer, units, now_ms()) if units else 0.0
        if wait_s > 0:
            raise RateLimited(f"{self.describe}: try again in {_secs(wait_s * 1000)} s")

    def give_back(self, peer: str, units: int) -> None:
        with self._lock:
            self._bucket.give_back(peer, units, now_ms())
