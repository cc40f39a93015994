"""``RedisStore`` as a ``RateLimitStore``: token buckets (GCRA) that every process shares.

One decision is one script on the server's clock: all amounts are taken, or none. While Redis
is down, this process's own buckets decide (``Reservation.degraded`` says so), so each
process then allows the whole limit by itself; ``RateLimit(fail_closed=True)`` refuses instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from relaykit.stores.rate_limit import GRANTED, Bucket, Reservation
from relaykit.stores.redis._base import RedisStoreBase, bucket_key, hash_tag
from relaykit.stores.redis._connection import DOWN
from relaykit.stores.redis._lua import RATE_ACQUIRE, RATE_ADJUST

__all__ = ["RedisRateLimits"]

# Float sums of refill intervals drift; ten microseconds of slack keep the last request of a
# burst from being refused over rounding, and are far below any request's interval.
_SLACK_S: Final = 1e-5
# A wait longer than this is "for ever" to the script (Lua reads no "inf").
_FOREVER_S: Final = 1e12


class RedisRateLimits(RedisStoreBase):
    """The rate-limit half of ``RedisStore``."""

    __slots__ = ()

    async def acquire(
        self,
        buckets: Sequence[Bucket],
        amounts: Sequence[float],
        *,
        now: float,
        max_wait_s: float = 0.0,
    ) -> Reservation:
        keys = [bucket_key(self.prefix, bucket.key) for bucket in buckets]
        if len(keys) > 1 and len({hash_tag(key) for key in keys}) > 1:
            raise ValueError(
                "buckets of one acquire must share their key up to the last ':' (one Redis "
                f"Cluster slot), got {[bucket.key for bucket in buckets]}"
            )
        args: list[float] = [min(max_wait_s, _FOREVER_S), _SLACK_S]
        for bucket, amount in zip(buckets, amounts, strict=True):
            args += (amount, bucket.capacity, bucket.refill_per_s)
        reply = await self._conn.run(RATE_ACQUIRE, keys, args)
        if reply is DOWN:
            local = self._limits.acquire_now(buckets, amounts, now=now, max_wait_s=max_wait_s)
            return local._replace(degraded=True)
        granted, wait, limited_by = reply
        if granted and limited_by < 0:
            return GRANTED
        return Reservation(bool(granted), float(wait), int(limited_by))

    async def adjust(self, bucket: Bucket, amount: float, *, now: float) -> None:
        key = bucket_key(self.prefix, bucket.key)
        reply = await self._conn.run(RATE_ADJUST, (key,), (amount, bucket.refill_per_s))
        if reply is DOWN:
            self._limits.adjust_now(bucket, amount, now=now)
