"""The connection side of ``RedisStore``: URL checks, one client per event loop, and the guard
that keeps a slow or dead Redis from slowing any call down.

Every command goes through ``RedisConnection.run``: a registered Lua script (``_lua``), bounded
by ``timeout_s``. Only the first command on each event loop, which also connects (and finds a
cluster's nodes, or shakes hands over TLS), is bounded by ``connect_timeout_s`` instead, as long
as Redis has never failed: a process that starts must not begin by degrading.

A failure marks Redis down for ``recheck_s`` (on the store's clock): until then ``run``
answers ``DOWN`` at once, without touching the network, so a dead Redis costs one timeout per
``recheck_s``, not one per call. Then one call tries again (the others keep answering ``DOWN``
meanwhile); when it succeeds, state is shared again. Each change is kept as a
``StoreDegraded`` / ``StoreRecovered`` event for the middlewares to pass on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from relaykit._support.background import BackgroundTasks
from relaykit._support.secrets import mask_url
from relaykit.contract.clock import Clock
from relaykit.contract.events import Event, StoreDegraded, StoreRecovered
from relaykit.stores.redis._lua import SCRIPTS

if TYPE_CHECKING:
    from redis.commands.core import AsyncScript

__all__ = ["DOWN", "RedisConnection", "masked_url"]


class _Down:
    """What ``run`` answers instead of a reply while Redis cannot be reached."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "DOWN"


DOWN: Final = _Down()

_SCHEMES: Final = ("redis", "rediss", "unix")


def masked_url(url: str) -> str:
    """``url`` with its credentials (``user:password@``, ``?password=``) masked, for reprs,
    errors and events: the one rule of ``relaykit._support.secrets``."""
    return mask_url(url)


def check_url(url: object) -> str:
    """``url`` when it is a Redis URL redis-py can use; else ValueError naming ``url``."""
    shown = masked_url(url) if isinstance(url, str) else repr(url)
    example = "such as redis://127.0.0.1:6379/0 (schemes: redis, rediss, unix)"
    if not isinstance(url, str):
        raise ValueError(f"url must be a Redis URL string {example}, got {shown}")
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError for a port that is not a number
    except ValueError:
        parts, port = None, None
    problem = None
    if parts is None:
        problem = "it does not parse as a URL"
    elif parts.scheme not in _SCHEMES:
        problem = f"its scheme is {parts.scheme or 'missing'!r}"
    elif parts.scheme != "unix" and not parts.hostname:
        problem = "it names no host"
    elif parts.scheme == "unix" and not parts.path:
        problem = "it names no socket path"
    elif parts.scheme != "unix" and parts.path.strip("/") and not parts.path.strip("/").isdigit():
        problem = "its database (the path) is not a number"
    if problem is not None:
        raise ValueError(f"url must be a Redis URL {example}; {problem}, got {shown!r}")
    del port
    return url


@dataclass(slots=True)
class _Client:
    """The redis-py client of one event loop (clients cannot cross loops) and its scripts."""

    loop: asyncio.AbstractEventLoop
    redis: Any
    scripts: dict[str, AsyncScript]
    # The bound of the next command: connect_timeout_s for the first one of a process's first
    # connection, timeout_s ever after.
    bound_s: float


class RedisConnection:
    """Runs registered scripts against one Redis (or cluster) within a time bound, or says DOWN."""

    __slots__ = (
        "_clients",
        "_closing",
        "_current",
        "_down_since",
        "_events",
        "_probing",
        "_recheck_at",
        "clock",
        "cluster",
        "connect_timeout_s",
        "failed_once",
        "max_connections",
        "name",
        "recheck_s",
        "timeout_s",
        "url",
    )

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float,
        recheck_s: float,
        cluster: bool,
        max_connections: int,
        connect_timeout_s: float,
        clock: Clock,
    ) -> None:
        self.url = url
        self.name = masked_url(url)
        self.timeout_s = timeout_s
        self.recheck_s = recheck_s
        self.cluster = cluster
        self.max_connections = max_connections
        self.connect_timeout_s = connect_timeout_s
        self.failed_once = False
        self.clock = clock
        self._clients: dict[asyncio.AbstractEventLoop, _Client] = {}
        self._current: _Client | None = None
        self._down_since: float | None = None
        self._recheck_at = 0.0
        self._probing = False
        self._events: list[Event] = []
        self._closing = BackgroundTasks()

    def check(self) -> None:
        """PING once, synchronously, so a wrong URL fails at construction and not as a silent
        fallback at the first call. Raises ConnectionError naming the URL (password masked)."""
        import redis

        connect_timeout_s = self.connect_timeout_s
        options: dict[str, Any] = {
            "socket_connect_timeout": connect_timeout_s,
            "socket_timeout": connect_timeout_s,
        }
        try:
            if self.cluster:
                client: Any = redis.RedisCluster.from_url(self.url, **options)
            else:
                client = redis.Redis.from_url(self.url, **options)
            try:
                client.ping()
            finally:
                client.close()
        except (redis.RedisError, OSError) as exc:
            kind = "Redis cluster" if self.cluster else "Redis"
            raise ConnectionError(
                f"RedisStore url {self.name!r}: no {kind} answered within {connect_timeout_s:g} s "
                f"({_describe(exc)}). Start one there, or correct url"
            ) from None

    @property
    def down(self) -> bool:
        """Whether the last command failed and none has succeeded since."""
        return self._down_since is not None

    def take_events(self) -> list[Event] | None:
        if not self._events:
            return None
        events, self._events = self._events, []
        return events

    async def run(self, name: str, keys: Sequence[str], args: Sequence[str | float | bytes]) -> Any:
        """The reply of script ``name``, or ``DOWN`` (within ``timeout_s``, never raising for
        Redis' sake; cancellation still propagates)."""
        probing = False
        if self._down_since is not None:
            if self._probing or self.clock.now() < self._recheck_at:
                return DOWN
            self._probing = probing = True
        try:
            client = self._client()
            async with asyncio.timeout(client.bound_s):
                reply = await client.scripts[name](keys, args)
            client.bound_s = self.timeout_s
        except Exception as exc:  # redis errors, OSError, TimeoutError, a loop shutting down
            self._failed(exc)
            return DOWN
        finally:
            if probing:
                self._probing = False
        if self._down_since is not None:
            self._recovered()
        return reply

    def _failed(self, error: Exception) -> None:
        now = self.clock.now()
        self.failed_once = True
        self._recheck_at = now + self.recheck_s
        if self._down_since is None:
            self._down_since = now
            self._events.append(StoreDegraded(self.name, _describe(error)))
        # A command cut short leaves its connection unusable: start over with fresh ones.
        client = self._current
        if client is not None:
            self._forget(client)

    def _recovered(self) -> None:
        since, self._down_since = self._down_since, None
        self._events.append(StoreRecovered(self.name, self.clock.now() - (since or 0.0)))

    def _client(self) -> _Client:
        loop = asyncio.get_running_loop()
        client = self._current
        if client is not None and client.loop is loop:
            return client
        client = self._clients.get(loop)
        if client is None:
            client = self._clients[loop] = self._connect(loop)
        self._current = client
        return client

    def _connect(self, loop: asyncio.AbstractEventLoop) -> _Client:
        import redis.asyncio
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        # No retries inside redis-py: the time bound is ours, and a retry would spend it. A
        # call finding every connection busy waits for one (within the bound) instead of
        # failing, so a burst of calls queues rather than opening a socket each.
        no_retry = Retry(NoBackoff(), 0)
        redis_client: Any
        if self.cluster:
            redis_client = redis.asyncio.RedisCluster.from_url(
                self.url, max_connections=self.max_connections, retry=no_retry
            )
        else:
            pool = redis.asyncio.BlockingConnectionPool.from_url(
                self.url, max_connections=self.max_connections, timeout=None, retry=no_retry
            )
            redis_client = redis.asyncio.Redis.from_pool(pool)  # closes the pool with it
        scripts = {name: redis_client.register_script(source) for name, source in SCRIPTS.items()}
        bound = self.timeout_s if self.failed_once else max(self.connect_timeout_s, self.timeout_s)
        return _Client(loop, redis_client, scripts, bound)

    def _forget(self, client: _Client) -> None:
        if self._clients.get(client.loop) is client:
            del self._clients[client.loop]
        if self._current is client:
            self._current = None
        self._closing.spawn(client.redis.aclose())  # never awaited by the failing call

    async def aclose(self) -> None:
        """Close the client of the running loop (clients of other loops go with their loops)."""
        await self._closing.drain()
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if self._current is client:
            self._current = None
        if client is not None:
            await client.redis.aclose()


def _describe(error: BaseException) -> str:
    if isinstance(error, TimeoutError) and not str(error):
        return "no answer within the time bound"
    text = str(error) or type(error).__name__
    return masked_url(text)
