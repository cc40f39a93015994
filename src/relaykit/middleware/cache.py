"""Cache: answer a repeated request from a store instead of asking a provider again.

**The key** is a 128-bit blake2b hash of the request's identity (``ChatRequest.identity()``):
canonical JSON, sorted keys, of every argument the caller gave — ``messages``, ``model`` (the
name or route alias the caller asked for), ``temperature``, ``top_p``, ``max_tokens``, ``stop``,
``seed``, ``tools``, ``tool_choice``, ``response_format``, ``n``, ``logprobs``, ``user`` and
provider extras from ``extra_body``. Only ``stream`` and ``stream_options`` are left out, so a
streamed and a plain call share one entry. The Relay takes it from the arguments as it validates
them (so a call whose arguments it accepted is keyed by exactly those, before any layer runs);
when they are not plain JSON (pydantic message objects), or a layer before the Cache replaced the
request, it comes from the validated request's body instead. Arguments that differ only in form
(``temperature=1`` and ``1.0``, an explicit ``None``) may then make two entries for one
question; never one entry for two. Not in the key: ``extra_headers``, and which target or
upstream model answers — give each differently configured Relay its own ``namespace=`` when they
share a store.

The hash is prefixed by the namespace and the tenant (``Relay.acomplete(..., tenant=...)``), each
length-prefixed, so one tenant never reads another's answer and no two (namespace, tenant)
pairs can produce the same key. The layout, for stores that show keys (Redis)::

    <len(namespace)>:<namespace><tenant>:<32 hex digits>
    tenant = "-" for no tenant, else <len(tenant)>:<tenant>      e.g. "0:4:acme:9f86d081..."

**What is stored**: complete answers only — every choice has a ``finish_reason`` and none is
``length`` or ``content_filter``. A stream is stored when it ends cleanly; a broken stream, one
the caller closed early, one that broke and was finished by another target
(``Fallback(continue_streams=True)``: two generations joined), and every error are never stored.

**Single flight**: concurrent misses on one key make one upstream call; the others wait for it
and get a copy of its answer (a streaming follower gets it replayed as chunks). When the leader
fails with a ``RelayError`` before it has an answer, the followers waiting at that moment raise
the same error (each its own copy, raised from the leader's) — they asked the same question
within the same moment, and a herd of doomed retries would only add load to a struggling
provider. When the leader ends without an answer for reasons of its own (cancelled), the
followers go on as misses, one new leader at a time. A streamed leader is waited for only
until its first chunk: after that the stream belongs to its caller, who may stop reading at any
moment and still hold it, so its followers go on as misses then (one new leader at a time, and
the stream's answer is stored once it ends cleanly).

**Across processes**, with a store shared by several (``RedisStore``, a ``FlightStore``): of
concurrent identical misses in different processes one asks upstream and the others wait for
its answer in the store, for at most the store's bound (``flight_s``) and the call's deadline;
if the leader fails, streams or dies, a waiter asks itself. A store that reports its health
(``ReportsHealth``) has its ``StoreDegraded``/``StoreRecovered`` events passed on.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import math
from dataclasses import dataclass
from hashlib import blake2b

from relaykit._support.background import BackgroundTasks
from relaykit._support.checks import positive_seconds
from relaykit.contract.errors import CacheMissError, RelayError
from relaykit.contract.events import CacheHit, CacheMiss
from relaykit.contract.pipeline import CallContext, Handler, Response
from relaykit.contract.schema import ChatCompletion, ChatRequest, RelayInfo, set_relay_info
from relaykit.contract.stream import ChatStream
from relaykit.stores.cache import CacheStore, FlightStore, FrozenCompletion, MemoryCacheStore
from relaykit.stores.health import health_of, report_health

__all__ = ["Cache"]

_log = logging.getLogger("relaykit")

_TRUNCATED = frozenset({"length", "content_filter"})


@dataclass(frozen=True, slots=True)
class _SharedError:
    """A leader's error as it was when its flight landed; each follower raises its own copy.

    Raising one instance from several tasks would pile every caller's notes and traceback onto
    it ("gave up after 2 attempts" once per follower), and the leader's outer layers keep adding
    to it after the landing, so the notes are taken now.
    """

    error: RelayError
    notes: tuple[str, ...]

    @classmethod
    def of(cls, error: RelayError) -> _SharedError:
        return cls(error, tuple(getattr(error, "__notes__", ())))

    def copy(self) -> RelayError:
        """A fresh error for one follower: same type and attributes, the landing's notes, no
        traceback (raise it ``from self.error`` to show where it came from)."""
        twin = copy.copy(self.error)  # RelayError.__reduce__ keeps type and attributes
        twin.__traceback__ = None
        if self.notes:
            twin.__notes__ = list(self.notes)
        else:
            twin.__dict__.pop("__notes__", None)
        return twin


# What a flight lands with: an answer to share (a private copy, which each follower copies
# again, since the leader's caller may mutate its own object meanwhile), an error to share, or
# None (nothing to share: the followers ask themselves).
_Outcome = FrozenCompletion | _SharedError | None
_Flight = asyncio.Future[_Outcome]


class Cache:
    """Answers identical requests from a cache, per tenant, with one upstream call per miss.

    ``ttl_s`` is how long an answer stays (per call: ``cache_ttl_s=``); ``max_entries`` bounds
    the default in-memory store (ignored when you pass ``store=``, e.g. a shared Redis store).
    Per call, ``cache=`` chooses: ``"use"`` (default), ``"bypass"`` (neither read nor write),
    ``"refresh"`` (skip the read, store the new answer) or ``"only"`` (never call upstream
    nor wait for an identical call in flight: a miss raises ``CacheMissError``);
    ``cache_max_age_s=`` treats older entries as misses; ``cache_ttl_s=0`` stores nothing.
    A hit reports ``answer.relay.cached`` True and streams replay the stored answer as chunks.

    >>> relay = Relay(targets=[backend], middleware=[Cache(ttl_s=600)])
    >>> await relay.acomplete(messages=msgs, tenant="acme", cache_max_age_s=60)
    """

    # Tells the Relay to take each request's identity as it validates the arguments.
    keys_requests = True

    def __init__(
        self,
        *,
        ttl_s: float = 600,
        max_entries: int = 10_000,
        store: CacheStore | None = None,
        namespace: str = "",
    ) -> None:
        self.ttl_s = positive_seconds("ttl_s", ttl_s)
        if not isinstance(namespace, str):
            raise ValueError(f"namespace must be a str, got {namespace!r}")
        if store is not None and not isinstance(store, CacheStore):
            raise ValueError(
                f"store must implement CacheStore (async get, set and delete), got {store!r}"
            )
        self.namespace = namespace
        # MemoryCacheStore validates max_entries, even when a store is given, so a typo in an
        # unused argument still fails here rather than silently later.
        default = MemoryCacheStore(max_entries=max_entries)
        self.store: CacheStore = store if store is not None else default
        self._shared = store if isinstance(store, FlightStore) else None
        self._health = health_of(store)
        self._prefix = f"{len(namespace)}:{namespace}"
        self._flights: dict[str, _Flight] = {}
        self._writes = BackgroundTasks()
        # The write of each key still in progress: a later write waits for it, so the newest
        # answer is the one that stays (a refresh racing a stream's late write).
        self._writing: dict[str, asyncio.Task[None]] = {}

    def __repr__(self) -> str:
        return f"Cache(ttl_s={self.ttl_s:g}, store={self.store!r}, namespace={self.namespace!r})"

    def key(self, request: ChatRequest, tenant: str | None = None) -> str | None:
        """The store key of ``request`` for ``tenant``; None when the request is not JSON (a
        Python object in ``extra_body``, for a FunctionBackend): such a call is not cached."""
        identity = request.identity()
        if identity is None:
            return None
        digest = blake2b(identity.encode(), digest_size=16).hexdigest()
        owner = "-" if tenant is None else f"{len(tenant)}:{tenant}"
        return f"{self._prefix}{owner}:{digest}"

    async def __call__(
        self, request: ChatRequest, ctx: CallContext, call_next: Handler
    ) -> Response:
        mode = ctx.options.cache
        if mode == "bypass":
            return await call_next(request, ctx)
        key = self.key(request, ctx.options.tenant)
        if key is None:
            return await call_next(request, ctx)
        if mode == "refresh":
            if CacheMiss in ctx.observed:
                ctx.emit(CacheMiss(key))
            return await self._lead(request, ctx, call_next, key, None)
        cached = await self.store.get(key, ctx.clock.now())
        if self._health is not None:
            report_health(self._health, ctx)
        if cached is not None and (
            ctx.options.cache_max_age_s is None or cached.age_s <= ctx.options.cache_max_age_s
        ):
            if CacheHit in ctx.observed:
                ctx.emit(CacheHit(key, cached.age_s))
            return cached.entry.thaw()  # a fresh copy: the caller may mutate it
        if mode == "only":
            if CacheMiss in ctx.observed:
                ctx.emit(CacheMiss(key))
            raise CacheMissError(self._only_miss(cached is not None, ctx.options.cache_max_age_s))
        return await self._miss(request, ctx, call_next, key)

    async def _miss(
        self, request: ChatRequest, ctx: CallContext, call_next: Handler, key: str
    ) -> Response:
        # Bounded: each round waits for one leader to land, and a landing without an answer
        # makes the first waiter to wake the next leader.
        while (flight := self._flights.get(key)) is not None:
            # shield: a follower that gives up (its deadline, its caller) must not cancel the
            # flight the leader and the other followers share.
            outcome = await asyncio.shield(flight)
            if isinstance(outcome, FrozenCompletion):
                if CacheHit in ctx.observed:
                    ctx.emit(CacheHit(key, 0.0))
                return outcome.thaw()
            if outcome is not None:
                raise outcome.copy() from outcome.error
        if CacheMiss in ctx.observed:
            ctx.emit(CacheMiss(key))
        flight = asyncio.get_running_loop().create_future()
        self._flights[key] = flight
        if self._shared is not None:
            try:
                found = await self._shared.join_flight(key, ctx.clock.now(), _patience(ctx))
            except BaseException:
                self._land(key, flight, None)
                raise
            if found is not None:  # another process asked and stored the answer meanwhile
                self._land(key, flight, found.entry)
                if CacheHit in ctx.observed:
                    ctx.emit(CacheHit(key, found.age_s))
                return found.entry.thaw()
        return await self._lead(request, ctx, call_next, key, flight)

    async def _lead(
        self,
        request: ChatRequest,
        ctx: CallContext,
        call_next: Handler,
        key: str,
        flight: _Flight | None,
    ) -> Response:
        """Ask upstream, share the outcome with the flight's followers, store a complete answer.

        ``flight`` is None for ``cache="refresh"``, which neither joins nor leads a flight.
        """
        try:
            result = await call_next(request, ctx)
        except RelayError as exc:
            if flight is not None:
                self._land(key, flight, _SharedError.of(exc))
            self._end_shared_flight(key, flight)
            raise
        except BaseException:
            self._land(key, flight, None)
            self._end_shared_flight(key, flight)
            raise
        ttl_s = ctx.options.cache_ttl_s if ctx.options.cache_ttl_s is not None else self.ttl_s
        if isinstance(result, ChatStream):
            # Past its first chunk a stream is the caller's: it may stop reading at any moment
            # and keep the stream (even in the task that asks the same question next), so no
            # follower waits for its end. They go on as misses, one new leader at a time; the
            # stream is still stored once it ends cleanly.
            self._land(key, flight, None)
            self._end_shared_flight(key, flight)
            result.on_finish(_StreamLanding(self, key, ctx, ttl_s))
            return result
        _remember_target(result, ctx.target)
        # The caller owns ``result`` and may mutate it once we return: followers get a snapshot
        # taken now, and the store keeps its own (the CacheStore contract).
        whole = _complete(result)
        # One frozen copy serves the followers and the store.
        shared = FrozenCompletion.of(result) if flight is not None or whole else None
        if ttl_s > 0 and whole and shared is not None:
            if flight is not None and not flight.done():
                flight.set_result(shared)  # followers go on while the write happens
            if key in self._writing:
                # An earlier answer's write is still on its way: write after it, in the
                # background, so the newest answer is the one that stays.
                self._land(key, flight, shared)
                landed = self._landed(key, shared)
                self._write_after(key, shared, ctx.clock.now(), ttl_s, flight=landed)
                return result
            try:
                await self.store.set(key, shared, ctx.clock.now(), ttl_s)
            except Exception:
                # The answer is in hand; a failed write costs a later miss, not this call.
                _log.exception("relaykit cache store %r failed to store an answer", self.store)
            finally:
                self._land(key, flight, shared)
        else:
            self._land(key, flight, shared)
            self._end_shared_flight(key, flight)
        return result

    def _end_shared_flight(self, key: str, flight: _Flight | None) -> None:
        """Let another process's waiter ask at once when this leader stores nothing (its set
        would have ended the flight); in the background, as the caller should not wait."""
        if flight is not None and self._shared is not None:
            self._writes.spawn(self._shared.end_flight(key))

    def _land(self, key: str, flight: _Flight | None, outcome: _Outcome) -> None:
        """End a flight: share ``outcome`` with its followers and let the next miss lead."""
        if flight is None:
            return
        if self._flights.get(key) is flight:
            del self._flights[key]
        if not flight.done():
            flight.set_result(outcome)

    def _store_later(self, key: str, completion: ChatCompletion, now: float, ttl_s: float) -> None:
        """Store a finished stream's answer from a (synchronous) stream finalizer.

        Until the write is done the answer waits in a landed flight, so a call made right after
        the stream ended is a hit even before the store has it.
        """
        entry = FrozenCompletion.of(completion)
        self._write_after(key, entry, now, ttl_s, flight=self._landed(key, entry))

    def _landed(self, key: str, entry: FrozenCompletion) -> _Flight | None:
        """A flight that already holds ``entry``, answering identical calls until it is stored.

        It replaces an earlier landed flight (the newest answer wins) but never a live leader's.
        """
        current = self._flights.get(key)
        if current is not None and not current.done():
            return None
        try:
            flight: _Flight = asyncio.get_running_loop().create_future()
        except RuntimeError:  # no running loop: nothing can be waiting
            return None
        flight.set_result(entry)
        self._flights[key] = flight
        return flight

    def _write_after(
        self, key: str, entry: FrozenCompletion, now: float, ttl_s: float, *, flight: _Flight | None
    ) -> None:
        """Write ``entry`` in the background, after any write of the same key still running;
        then land ``flight``, however the write ends (even cancelled before it ever ran)."""
        task = self._writes.spawn(self._write(key, entry, now, ttl_s, self._writing.get(key)))
        if task is None:
            self._land(key, flight, None)  # no loop to write on (shutting down): nothing stored
            return
        self._writing[key] = task

        def written(_: asyncio.Task[None]) -> None:
            if self._writing.get(key) is task:
                del self._writing[key]
            self._land(key, flight, None)

        task.add_done_callback(written)

    async def _write(
        self,
        key: str,
        entry: FrozenCompletion,
        now: float,
        ttl_s: float,
        earlier: asyncio.Task[None] | None,
    ) -> None:
        try:
            if earlier is not None:
                await asyncio.wait((earlier,))  # never raises the earlier write's fate
            await self.store.set(key, entry, now, ttl_s)
        except Exception:
            _log.exception("relaykit cache store %r failed to store an answer", self.store)

    async def aclose(self) -> None:
        """Finish the writes of answers from streams that just ended.

        A store you passed in is yours to close: several Caches may share it.
        """
        await self._writes.drain()

    def _only_miss(self, too_old: bool, max_age_s: float | None) -> str:
        why = (
            f"the cached answer is older than cache_max_age_s={max_age_s:g}"
            if too_old and max_age_s is not None
            else "no answer to this request is cached"
        )
        return (
            f"cache='only' found nothing to serve ({why}) and sent no request. Call with "
            "cache='use' to ask a target on a miss"
        )


class _StreamLanding:
    """The finalizer of a stream a Cache leader returned: stores its answer if it is whole."""

    __slots__ = ("cache", "ctx", "key", "ttl_s")

    def __init__(self, cache: Cache, key: str, ctx: CallContext, ttl_s: float) -> None:
        self.cache = cache
        self.key = key
        self.ctx = ctx
        self.ttl_s = ttl_s

    def __call__(self, stream: ChatStream, error: RelayError | None) -> None:
        if error is not None or not stream.ended_cleanly or self.ttl_s <= 0:
            return
        if self.ctx.continued:  # it broke, and another target finished it: two generations
            return
        completion = stream.partial()  # a fresh object, which nobody else holds
        if _complete(completion):
            _remember_target(completion, stream.target)
            self.cache._store_later(self.key, completion, self.ctx.clock.now(), self.ttl_s)


def _patience(ctx: CallContext) -> float:
    """How long a miss may wait for another process's identical call: until its deadline."""
    remaining = ctx.remaining()
    return math.inf if remaining is None else max(remaining, 0.0)


def _remember_target(completion: ChatCompletion, target: str | None) -> None:
    """Note which target gave the answer, so a later hit can say so (``relay.target``)."""
    if completion.relay is None:
        set_relay_info(completion, RelayInfo(target, 0))


def _complete(completion: ChatCompletion) -> bool:
    """Whether the answer is whole: every choice finished, none cut short or filtered."""
    choices = completion.choices
    return bool(choices) and all(
        c.finish_reason is not None and c.finish_reason not in _TRUNCATED for c in choices
    )
