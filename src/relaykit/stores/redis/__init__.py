"""Shared state on Redis (the ``redis`` extra): ``RedisStore`` implements the cache, rate-limit
and breaker store protocols, so several processes or hosts share one view. redis-py is
imported when a store connects, never by ``import relaykit``."""

from relaykit.stores.redis.store import RedisStore

__all__ = ["RedisStore"]
