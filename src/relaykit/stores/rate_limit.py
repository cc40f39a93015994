"""Rate-limit stores: token buckets that many concurrent calls (or processes) draw from.

A bucket holds up to ``capacity`` units and refills at ``refill_per_s``. The store's one
decision is atomic: *take these amounts from these buckets — all of them or none — and say how
long to wait if they are not there yet*. The in-process store makes that decision without an
``await`` between check and take, so concurrent calls on one event loop never oversubscribe;
a shared store (Redis) makes it in one Lua script.

The algorithm is GCRA (the generic cell rate algorithm), which is a token bucket stored as one
number per bucket: the *theoretical arrival time* ``tat`` at which the bucket would be full
again. Taking ``n`` units moves ``tat`` forward by ``n / refill_per_s``; the take is allowed
when ``tat`` stays within ``capacity / refill_per_s`` of now. One float per key, no timer and no
background refill, which is what makes it a short Lua script::

    -- KEYS: bucket keys; ARGV: now, max_wait_s, then (amount, capacity, refill_per_s) per key
    -- for each key: tat = max(GET key or now, now)
    --               wait_i = tat + (amount - capacity) / rate - now
    -- wait = max(wait_i); if wait > max_wait_s: return {0, wait, argmax}
    -- for each key: SET key (tat + amount / rate) PX ceil((new_tat - now) * 1000)
    -- return {1, wait, argmax}

A shared store should read the time from the server (``redis.call('TIME')``) instead of the
caller's ``now``: monotonic clocks of different hosts do not agree.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol, runtime_checkable

__all__ = ["GRANTED", "Bucket", "MemoryRateLimitStore", "RateLimitStore", "Reservation"]

# Float sums of refill intervals (600 x 0.1 s) drift by ~1e-13 s; a microsecond of slack keeps
# the 600th request of a 600-rpm burst from being refused over rounding.
_SLACK_S = 1e-6
# Full buckets need no memory; they are swept once the table doubles past this size.
_SWEEP_MIN = 1024


@dataclass(frozen=True, slots=True)
class Bucket:
    """One limit: ``capacity`` units at most, refilled at ``refill_per_s`` units per second.

    ``key`` names the bucket in its store; every process that uses the same key (through a
    shared store) draws from the same budget.
    """

    key: str
    capacity: float
    refill_per_s: float


class Reservation(NamedTuple):
    """The store's answer to ``acquire``.

    ``granted``: the units were taken; the caller may go after ``wait_s`` seconds (0.0: now).
    Not granted: nothing was taken; ``wait_s`` is how long until they would be there
    (``math.inf`` when an amount exceeds its bucket's capacity and can never be).
    ``limited_by`` is the index of the bucket that set ``wait_s``, -1 when none had to wait.
    ``degraded``: a shared store could not reach its server and decided from this process's
    own buckets instead (``RateLimit(fail_closed=True)`` refuses such a call).
    """

    granted: bool
    wait_s: float
    limited_by: int
    degraded: bool = False


GRANTED = Reservation(True, 0.0, -1)
"""The common answer, shared so that the happy path builds no object."""


@runtime_checkable
class RateLimitStore(Protocol):
    """Where token buckets live. Both methods must be atomic with respect to other callers."""

    async def acquire(
        self,
        buckets: Sequence[Bucket],
        amounts: Sequence[float],
        *,
        now: float,
        max_wait_s: float = 0.0,
    ) -> Reservation:
        """Take ``amounts[i]`` from ``buckets[i]`` for every i, or take nothing.

        When every amount is there now, take them and return ``GRANTED``. When they will be
        there within ``max_wait_s``, take them anyway (a reservation: later callers queue
        behind this one) and return a granted Reservation with the wait. Otherwise take
        nothing and return the wait, not granted.
        """
        ...

    async def adjust(self, bucket: Bucket, amount: float, *, now: float) -> None:
        """Take ``amount`` more units (or give ``-amount`` back) without checking.

        Taking may leave the bucket in debt, so later callers wait longer; giving back never
        fills it past its capacity. Used to reconcile an estimate with what was really used,
        and to return a reservation that was not used.
        """
        ...


class MemoryRateLimitStore:
    """Token buckets in this process (GCRA), atomic within one event loop; the default.

    Nothing is awaited between checking a bucket and taking from it, so any number of
    concurrent calls never take more than the buckets hold. Buckets that have refilled
    completely are forgotten, so per-tenant keys do not accumulate.
    """

    __slots__ = ("_sweep_at", "_tat")

    def __init__(self) -> None:
        self._tat: dict[str, float] = {}
        self._sweep_at = _SWEEP_MIN

    def __repr__(self) -> str:
        return f"MemoryRateLimitStore(buckets={len(self._tat)})"

    async def acquire(
        self,
        buckets: Sequence[Bucket],
        amounts: Sequence[float],
        *,
        now: float,
        max_wait_s: float = 0.0,
    ) -> Reservation:
        return self.acquire_now(buckets, amounts, now=now, max_wait_s=max_wait_s)

    async def adjust(self, bucket: Bucket, amount: float, *, now: float) -> None:
        self.adjust_now(bucket, amount, now=now)

    def acquire_now(
        self,
        buckets: Sequence[Bucket],
        amounts: Sequence[float],
        *,
        now: float,
        max_wait_s: float = 0.0,
    ) -> Reservation:
        """``acquire`` as a plain function: the whole decision, with no await inside."""
        tats = self._tat
        wait = 0.0
        limited_by = -1
        # Index loops, not zip/enumerate: this runs on every call and holds one or two buckets.
        for index in range(len(buckets)):
            bucket = buckets[index]
            amount = amounts[index]
            if amount > bucket.capacity:
                return Reservation(False, math.inf, index)
            tat = tats.get(bucket.key, now)
            if tat < now:
                tat = now
            # Allowed once tat + amount/rate - capacity/rate <= now.
            needed = tat + (amount - bucket.capacity) / bucket.refill_per_s - now
            if needed > wait:
                wait = needed
                limited_by = index
        if wait <= _SLACK_S:
            limited_by = -1
        elif wait > max_wait_s + _SLACK_S:
            return Reservation(False, wait, limited_by)
        for index in range(len(buckets)):
            bucket = buckets[index]
            tat = tats.get(bucket.key, now)
            tats[bucket.key] = (tat if tat > now else now) + amounts[index] / bucket.refill_per_s
        if len(tats) > self._sweep_at:
            self._sweep(now)
        return GRANTED if limited_by < 0 else Reservation(True, wait, limited_by)

    def adjust_now(self, bucket: Bucket, amount: float, *, now: float) -> None:
        """``adjust`` as a plain function."""
        tat = max(self._tat.get(bucket.key, now), now) + amount / bucket.refill_per_s
        if tat > now:
            self._tat[bucket.key] = tat
        else:  # refilled completely: a missing key means a full bucket
            self._tat.pop(bucket.key, None)

    def available(self, bucket: Bucket, *, now: float) -> float:
        """Units in ``bucket`` now (negative while it is in debt), for tests and metrics."""
        tat = max(self._tat.get(bucket.key, now), now)
        return bucket.capacity - (tat - now) * bucket.refill_per_s

    def _sweep(self, now: float) -> None:
        full = [key for key, tat in self._tat.items() if tat <= now]
        for key in full:
            del self._tat[key]
        self._sweep_at = max(_SWEEP_MIN, 2 * len(self._tat))
