"""``RedisStore``: one Redis (or Valkey, or a Redis Cluster) holding the cache, rate limits and
circuit breakers of every process that points at it."""

from __future__ import annotations

import math
import uuid

from relaykit._support.checks import positive_seconds, whole_number
from relaykit.contract.clock import Clock, SystemClock
from relaykit.contract.events import Event
from relaykit.stores.breaker import MemoryBreakerStore
from relaykit.stores.budget import MemoryBudgetStore
from relaykit.stores.rate_limit import MemoryRateLimitStore
from relaykit.stores.redis._breaker import RedisBreakers
from relaykit.stores.redis._budget import RedisBudgets
from relaykit.stores.redis._cache import RedisCache
from relaykit.stores.redis._connection import RedisConnection, check_url
from relaykit.stores.redis._rate_limit import RedisRateLimits

__all__ = ["RedisStore"]


class RedisStore(RedisCache, RedisRateLimits, RedisBreakers, RedisBudgets):
    """Shared state in Redis: pass it as ``store=`` to ``Cache``, ``RateLimit``,
    ``CircuitBreaker`` and ``Budget``, and every process using the same ``url`` and ``prefix``
    shares one cache, one limit and one circuit per target, and one spend per budget window.

    Each decision is one Lua script, on the server's clock where it reads time
    (``docs/redis.md`` lists the keys). No call waits on Redis longer than ``timeout_s``; when
    Redis is slow or gone, the cache misses and limits, breakers and budgets use this
    process's own state, a ``StoreDegraded`` event
    says so, and Redis is tried again after ``recheck_s`` (measured on ``clock``), not on every
    call. Concurrent identical cache misses in several processes make one upstream call; the
    others wait up to ``flight_s`` for it (longer calls are then made again).

    The URL is checked, and Redis pinged once (within ``connect_timeout_s``), at construction:
    a typo fails here, not as a silent fallback later. The first command of each event loop,
    which connects, is bounded by ``connect_timeout_s`` too (until Redis first fails: after
    that every command has ``timeout_s``). ``cluster=True`` speaks Redis Cluster.

    >>> store = RedisStore("redis://127.0.0.1:6379/0")
    >>> Target(backend, name="primary", middleware=[RateLimit(rpm=600, store=store)])
    """

    __slots__ = ()

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "relaykit:",
        timeout_s: float = 0.05,
        recheck_s: float = 1.0,
        flight_s: float = 10.0,
        connect_timeout_s: float = 2.0,
        cluster: bool = False,
        max_connections: int = 64,
        clock: Clock | None = None,
    ) -> None:
        url = check_url(url)
        if not isinstance(prefix, str) or "{" in prefix or "}" in prefix:
            raise ValueError(
                "prefix must be a str without braces (Redis Cluster reads braces as a hash "
                f"tag), got {prefix!r}"
            )
        if not isinstance(cluster, bool):
            raise ValueError(f"cluster must be True or False, got {cluster!r}")
        if clock is not None and not isinstance(clock, Clock):
            raise ValueError(f"clock must be a relaykit Clock, got {clock!r}")
        self._conn = RedisConnection(
            url,
            timeout_s=positive_seconds("timeout_s", timeout_s),
            recheck_s=positive_seconds("recheck_s", recheck_s),
            cluster=cluster,
            max_connections=whole_number("max_connections", max_connections, minimum=1),
            connect_timeout_s=positive_seconds("connect_timeout_s", connect_timeout_s),
            clock=clock if clock is not None else SystemClock(),
        )
        self.prefix = prefix
        self.flight_s = positive_seconds("flight_s", flight_s)
        self._flight_ms = math.ceil(self.flight_s * 1000)
        self._token = uuid.uuid4().hex  # marks the flights this store holds
        self._limits = MemoryRateLimitStore()
        self._breakers = MemoryBreakerStore()
        self._budgets = MemoryBudgetStore()
        self._conn.check()

    def __repr__(self) -> str:
        down = ", down" if self._conn.down else ""
        return f"RedisStore({self._conn.name!r}, prefix={self.prefix!r}{down})"

    @property
    def url(self) -> str:
        """The URL with any password masked."""
        return self._conn.name

    @property
    def timeout_s(self) -> float:
        return self._conn.timeout_s

    @property
    def down(self) -> bool:
        """Whether Redis failed its last command (calls use in-process state meanwhile)."""
        return self._conn.down

    def take_health_events(self) -> list[Event] | None:
        """``StoreDegraded`` / ``StoreRecovered`` events not yet passed on (``ReportsHealth``)."""
        return self._conn.take_events()

    async def aclose(self) -> None:
        """Close this store's connections on the running event loop."""
        await self._conn.aclose()
