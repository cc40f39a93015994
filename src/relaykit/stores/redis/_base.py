"""What the four parts of ``RedisStore`` share: the connection, the key layout and the
in-process state it falls back to while Redis cannot be reached.

Keys (``prefix`` first, ``relaykit:`` by default) carry a hash tag — the part in braces — so
that every key one script touches lives in one Redis Cluster slot:

    <prefix>cache:{<cache key>}            an answer: "<ttl ms>\\n" + FrozenCompletion.to_bytes()
    <prefix>cache:{<cache key>}:flight     the lock of the one process asking upstream for it
    <prefix>{<bucket key up to its last ':'>}<last part>
                                           a token bucket: its theoretical arrival time, e.g.
                                           relaykit:{rate:primary}:requests, ...:tokens
    <prefix>breaker:{<target>}             a circuit's state (a hash)
    <prefix>breaker:{<target>}:probes      its half-open probes in flight, scored by lease end
    <prefix>{budget:<name>:<tenant>:<window>}
                                           a budget window's spend in dollars
"""

from __future__ import annotations

from relaykit.stores.breaker import MemoryBreakerStore
from relaykit.stores.budget import MemoryBudgetStore
from relaykit.stores.rate_limit import MemoryRateLimitStore
from relaykit.stores.redis._connection import RedisConnection

__all__ = ["RedisStoreBase", "bucket_key", "hash_tag"]


class RedisStoreBase:
    """The state the mixins of ``RedisStore`` share; it does nothing by itself."""

    __slots__ = (
        "_breakers",
        "_budgets",
        "_conn",
        "_flight_ms",
        "_limits",
        "_token",
        "flight_s",
        "prefix",
    )

    _conn: RedisConnection
    prefix: str
    flight_s: float
    _flight_ms: int
    _token: str
    # What limits, breakers and budgets use while Redis is down: this process's own state.
    _limits: MemoryRateLimitStore
    _breakers: MemoryBreakerStore
    _budgets: MemoryBudgetStore


def bucket_key(prefix: str, key: str) -> str:
    """The Redis key of a rate-limit bucket: its key up to the last ``:`` is the hash tag, so
    the request and token buckets of one target (and tenant) share a slot."""
    cut = key.rfind(":")
    if cut < 0:
        return f"{prefix}{{{key}}}"
    return f"{prefix}{{{key[:cut]}}}{key[cut:]}"


def hash_tag(key: str) -> str:
    """The part of ``key`` Redis Cluster hashes: between the first ``{`` and the next ``}``."""
    start = key.find("{")
    if start >= 0:
        end = key.find("}", start + 1)
        if end > start + 1:
            return key[start + 1 : end]
    return key
