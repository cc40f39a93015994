"""``RedisStore`` as a ``CacheStore`` and ``FlightStore``: answers shared with their TTL in
Redis, and one upstream call for concurrent identical misses across processes.

A hit is one round trip (GET and PTTL in one script). While Redis is down, ``get`` is a miss
and ``set`` drops the answer; the Cache works on as if it were empty.
"""

from __future__ import annotations

import asyncio
import math
from typing import Final

from relaykit.stores.cache import CachedCompletion, FrozenCompletion
from relaykit.stores.redis._base import RedisStoreBase
from relaykit.stores.redis._connection import DOWN
from relaykit.stores.redis._lua import (
    CACHE_DELETE,
    CACHE_END_FLIGHT,
    CACHE_FLIGHT,
    CACHE_GET,
    CACHE_SET,
)

__all__ = ["RedisCache"]

# A waiter asks again after 5 ms, then twice as long each time up to 100 ms: quick for a short
# call, a few commands a second for a long one.
_FIRST_POLL_S: Final = 0.005
_LAST_POLL_S: Final = 0.1


class RedisCache(RedisStoreBase):
    """The cache half of ``RedisStore``."""

    __slots__ = ()

    def _entry_key(self, key: str) -> str:
        return f"{self.prefix}cache:{{{key}}}"

    async def get(self, key: str, now: float) -> CachedCompletion | None:
        reply = await self._conn.run(CACHE_GET, (self._entry_key(key),), ())
        if reply is DOWN or reply is None:
            return None
        return _cached(reply[0], reply[1])

    async def set(self, key: str, entry: FrozenCompletion, now: float, ttl_s: float) -> None:
        entry_key = self._entry_key(key)
        frozen = entry.to_bytes()  # None: not JSON, so not shared (and any older entry goes)
        ttl_ms = math.ceil(ttl_s * 1000) if ttl_s > 0 and frozen is not None else 0
        value = b"%d\n%b" % (ttl_ms, frozen) if frozen is not None and ttl_ms else b""
        await self._conn.run(
            CACHE_SET, (entry_key, f"{entry_key}:flight"), (value, ttl_ms, self._token)
        )

    async def delete(self, key: str) -> None:
        await self._conn.run(CACHE_DELETE, (self._entry_key(key),), ())

    async def join_flight(self, key: str, now: float, max_wait_s: float) -> CachedCompletion | None:
        entry_key = self._entry_key(key)
        keys = (entry_key, f"{entry_key}:flight")
        args = (self._token, self._flight_ms)
        loop = asyncio.get_running_loop()
        give_up = loop.time() + min(max_wait_s, self.flight_s)
        pause = _FIRST_POLL_S
        while True:  # bounded: every round returns or sleeps, and give_up ends the rounds
            reply = await self._conn.run(CACHE_FLIGHT, keys, args)
            if reply is DOWN or reply[0] == 2:  # no Redis, or this caller holds the flight
                return None
            if reply[0] == 1:  # stored meanwhile (an entry it cannot read: ask upstream)
                return _cached(reply[1], reply[2])
            left = give_up - loop.time()
            if left <= 0:  # waited long enough: ask upstream, without the flight
                return None
            # Real time, not the Relay's clock: the wait is for another process's call.
            await asyncio.sleep(min(pause, left))
            pause = min(pause * 2, _LAST_POLL_S)

    async def end_flight(self, key: str) -> None:
        await self._conn.run(CACHE_END_FLIGHT, (f"{self._entry_key(key)}:flight",), (self._token,))


def _cached(value: bytes, pttl_ms: int) -> CachedCompletion | None:
    """A stored value ("<ttl ms>\\n<frozen>") as a hit aged by its spent TTL; None when it is
    not an entry this relaykit can read."""
    ttl, _, frozen = value.partition(b"\n")
    entry = FrozenCompletion.from_bytes(frozen)
    if entry is None or not ttl.isdigit():
        return None
    return CachedCompletion(entry, max(int(ttl) - pttl_ms, 0) / 1000 if pttl_ms >= 0 else 0.0)
