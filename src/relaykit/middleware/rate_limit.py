"""RateLimit: keep a target under its requests- and tokens-per-minute limits before it says 429.

Each call takes one request unit and its estimated tokens from the target's buckets before it
is sent, and settles the token estimate with the usage that comes back. A call that does not
fit waits (up to ``max_wait_s``, never past the call's deadline) or fails at once with
``LocalRateLimitError`` and no upstream request, which the fallback treats as "try the next
target".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final

from relaykit._support.background import BackgroundTasks
from relaykit._support.checks import is_number, positive_number, positive_seconds
from relaykit.contract.clock import Clock
from relaykit.contract.errors import LocalRateLimitError
from relaykit.contract.events import RateLimited
from relaykit.contract.pipeline import CallContext, Handler, Response
from relaykit.contract.schema import ChatRequest, Usage
from relaykit.contract.stream import ChatStream
from relaykit.contract.tokens import estimate_completion_tokens, estimate_prompt_tokens
from relaykit.stores.health import health_of, report_health
from relaykit.stores.rate_limit import Bucket, MemoryRateLimitStore, RateLimitStore

__all__ = ["RateLimit"]

# The bucket keys of a call with no target (RateLimit used outside a Target) use this name.
_NO_TARGET: Final = "*"
# Per-tenant bucket definitions are remembered to spare building key strings on every call;
# past this many (target, tenant) pairs the memo starts over rather than grow without bound.
_MEMO_MAX: Final = 10_000
_ONE_REQUEST: Final = (1.0,)


class RateLimit:
    """Keeps one target within ``rpm`` requests and ``tpm`` tokens per minute, without a 429.

    ``burst`` is how many requests may go at once after a quiet spell (default: ``rpm``, so a
    whole minute's budget may be used at once); ``burst=1`` spaces requests evenly. The token
    bucket's capacity is ``tpm``. Tokens are estimated before the call (the prompt at ~4 bytes
    per token, plus ``max_completion_tokens`` or ``max_tokens`` — or 256 when neither is set)
    and settled with ``usage.total_tokens`` when the answer arrives; for a stream when it ends,
    if it reported usage (``stream_options={"include_usage": True}``), else the estimate stands.

    A call that does not fit waits up to ``max_wait_s`` (never past the call's deadline), in
    arrival order; otherwise it raises ``LocalRateLimitError`` with ``retry_after`` set and
    sends nothing, and the default ``Fallback`` moves on to the next target. A call whose
    estimate exceeds ``tpm`` on its own can never pass and fails at once.

    State is keyed by target (and by ``ctx.options.tenant`` when ``per_tenant=True``) and lives in
    ``store``: an in-process ``MemoryRateLimitStore`` owned by this instance unless a shared
    one is given. Keys are ``rate:{target}:requests`` and ``rate:{target}:tokens``, with
    ``:tenant:{tenant}`` after the target when per tenant.

    With a shared store (``RedisStore``) every process draws from the same buckets. When that
    store cannot reach its server, it decides from this process's own buckets (each process
    then allows the whole limit) and a ``StoreDegraded`` event says so; ``fail_closed=True``
    refuses those calls instead, with ``LocalRateLimitError`` and no request.

    A call that fails before anything was sent upstream gives its units back; one that failed
    after keeps them, since the provider counts failed requests too. A queued or refused call
    emits ``RateLimited(target, wait_s, limit)`` (``limit`` like ``"600 requests/min"``).

    >>> Target(backend, name="primary", middleware=[RateLimit(rpm=600, tpm=200_000)])
    """

    __slots__ = (
        "_buckets",
        "_full_until",
        "_health",
        "_limits",
        "_settlements",
        "burst",
        "fail_closed",
        "max_wait_s",
        "per_tenant",
        "rpm",
        "store",
        "tpm",
    )

    def __init__(
        self,
        *,
        rpm: float | None = None,
        tpm: float | None = None,
        burst: float | None = None,
        max_wait_s: float = 0.0,
        store: RateLimitStore | None = None,
        per_tenant: bool = False,
        fail_closed: bool = False,
    ) -> None:
        if rpm is None and tpm is None:
            raise ValueError("RateLimit needs rpm, tpm or both (per-minute limits); got neither")
        _check_rate("rpm", rpm, "requests")
        _check_rate("tpm", tpm, "tokens")
        if burst is not None:
            if rpm is None:
                raise ValueError(
                    "burst is the capacity of the request bucket, so it needs rpm; "
                    "the token bucket's capacity is tpm"
                )
            if not is_number(burst) or not 1 <= burst < math.inf:
                raise ValueError(
                    f"burst must be a number of requests, at least 1 and finite, got {burst!r}"
                )
        positive_seconds(
            "max_wait_s",
            max_wait_s,
            allow_zero=True,
            allow_inf=True,
            hint="0: never wait; math.inf: wait as long as the deadline allows",
        )
        if store is not None and not isinstance(store, RateLimitStore):
            raise ValueError(
                f"store must be a RateLimitStore (async acquire and adjust), got {store!r}"
            )
        if not isinstance(fail_closed, bool):
            raise ValueError(f"fail_closed must be True or False, got {fail_closed!r}")
        health = health_of(store)
        if fail_closed and health is None:
            raise ValueError(
                "fail_closed=True needs a shared store that can fail (store=RedisStore(...)); "
                f"the store here never does: {store!r}"
            )
        self.fail_closed = fail_closed
        self._health = health
        self.rpm = rpm
        self.tpm = tpm
        self.burst = burst if burst is not None else rpm
        self.max_wait_s = max_wait_s
        self.per_tenant = per_tenant
        self.store: RateLimitStore = store if store is not None else MemoryRateLimitStore()
        limits: list[str] = []
        if rpm is not None:
            limits.append(f"{rpm:g} requests/min")
        if tpm is not None:
            limits.append(f"{tpm:g} tokens/min")
        self._limits = tuple(limits)
        self._buckets: dict[tuple[str, str | None], tuple[Bucket, ...]] = {}
        # Stream settlements run as tasks (a finalizer cannot await); kept so none is lost.
        self._settlements = BackgroundTasks()
        # Until when each (target, tenant) refused a call here, with the limit that refused
        # it: ``refusal`` answers from this, so a strategy skips a full target without a store
        # round trip. Cleared by time, and rebuilt whenever the table gets large.
        self._full_until: dict[tuple[str, str | None], tuple[float, str]] = {}

    def __repr__(self) -> str:
        parts = [f"rpm={self.rpm!r}"] if self.rpm is not None else []
        if self.tpm is not None:
            parts.append(f"tpm={self.tpm!r}")
        if self.burst != self.rpm:
            parts.append(f"burst={self.burst!r}")
        if self.max_wait_s:
            parts.append(f"max_wait_s={self.max_wait_s!r}")
        if self.per_tenant:
            parts.append("per_tenant=True")
        if self.fail_closed:
            parts.append("fail_closed=True")
        return f"RateLimit({', '.join(parts)})"

    async def __call__(
        self, request: ChatRequest, ctx: CallContext, call_next: Handler
    ) -> Response:
        tenant = ctx.options.tenant if self.per_tenant else None
        target = ctx.target or _NO_TARGET
        buckets = self._buckets.get((target, tenant)) or self._make_buckets(target, tenant)
        estimate = 0
        if self.tpm is None:
            amounts: Sequence[float] = _ONE_REQUEST
        else:
            estimate = estimate_prompt_tokens(request) + estimate_completion_tokens(request)
            if estimate > self.tpm:
                raise self._never_fits(request, estimate, target, tenant)
            amounts = (1.0, estimate) if self.rpm is not None else (estimate,)
        clock = ctx.clock
        budget = self.max_wait_s
        remaining = ctx.remaining()
        if remaining is not None and remaining < budget:
            budget = max(remaining, 0.0)
        verdict = await self.store.acquire(buckets, amounts, now=clock.now(), max_wait_s=budget)
        if self._health is not None:
            report_health(self._health, ctx)
            if verdict.degraded and self.fail_closed:
                if verdict.granted:
                    await self._give_back(buckets, amounts, clock)
                raise self._store_down(target, tenant)
        if verdict.wait_s:
            limit = self._limits[verdict.limited_by]
            if RateLimited in ctx.observed:
                ctx.emit(RateLimited(target, verdict.wait_s, limit))
            if not verdict.granted:
                if len(self._full_until) >= _MEMO_MAX:
                    self._full_until.clear()
                # From then on a call would wait no longer than max_wait_s: it may go again.
                until = clock.now() + verdict.wait_s - self.max_wait_s
                self._full_until[(target, tenant)] = (until, limit)
                raise self._over_limit(verdict.wait_s, limit, target, tenant, remaining)
            try:
                await clock.sleep(verdict.wait_s)
            except BaseException:  # cancelled while queued: the reservation goes back unused
                await self._give_back(buckets, amounts, clock)
                raise

        attempt = ctx.attempt
        try:
            result = await call_next(request, ctx)
        except BaseException:
            if ctx.attempt == attempt:  # nothing was sent upstream, so nothing was used
                await self._give_back(buckets, amounts, clock)
            raise
        if estimate:
            if isinstance(result, ChatStream):
                result.on_finish(_StreamSettlement(self, buckets[-1], estimate, clock))
            else:
                used = _used(result.usage)
                if used and used != estimate:
                    await self.store.adjust(buckets[-1], used - estimate, now=clock.now())
        return result

    def refusal(self, target: str, ctx: CallContext) -> LocalRateLimitError | None:
        """The error a call to ``target`` would get now, if this process saw its limit refuse
        a call moments ago and the slot it named has not come yet
        (``relaykit.contract.capabilities.AdmitsCalls``); None when the call may try."""
        key = (target, ctx.options.tenant if self.per_tenant else None)
        full = self._full_until.get(key)
        if full is None:
            return None
        wait_s = full[0] - ctx.clock.now()
        if wait_s <= 0:
            del self._full_until[key]
            return None
        wait_s += self.max_wait_s
        return self._over_limit(wait_s, full[1], target, key[1], ctx.remaining())

    async def aclose(self) -> None:
        """Wait for settlements of ended streams still being written to the store."""
        await self._settlements.drain()

    def _make_buckets(self, target: str, tenant: str | None) -> tuple[Bucket, ...]:
        prefix = f"rate:{target}:" if tenant is None else f"rate:{target}:tenant:{tenant}:"
        buckets: list[Bucket] = []
        if self.rpm is not None and self.burst is not None:
            buckets.append(Bucket(f"{prefix}requests", self.burst, self.rpm / 60.0))
        if self.tpm is not None:
            buckets.append(Bucket(f"{prefix}tokens", self.tpm, self.tpm / 60.0))
        if len(self._buckets) >= _MEMO_MAX:
            self._buckets.clear()
        made = self._buckets[(target, tenant)] = tuple(buckets)
        return made

    async def _give_back(
        self, buckets: Sequence[Bucket], amounts: Sequence[float], clock: Clock
    ) -> None:
        for bucket, amount in zip(buckets, amounts, strict=True):
            await self.store.adjust(bucket, -amount, now=clock.now())

    def _settle_later(self, bucket: Bucket, amount: float, clock: Clock) -> None:
        # Finished outside any loop, nothing can be awaited: spawn drops it, the estimate stands.
        self._settlements.spawn(self.store.adjust(bucket, amount, now=clock.now()))

    def _over_limit(
        self,
        wait_s: float,
        limit: str,
        target: str,
        tenant: str | None,
        remaining: float | None,
    ) -> LocalRateLimitError:
        whose = f" for tenant {tenant!r}" if tenant is not None else ""
        head = f"is over its local limit of {limit}{whose}; next slot in {_seconds(wait_s)}"
        if wait_s <= self.max_wait_s and remaining is not None:  # the deadline said no
            advice = f", after the call's deadline ({_seconds(max(remaining, 0.0))} left)"
        elif self.max_wait_s:
            advice = (
                f", longer than max_wait_s={self.max_wait_s:g}. Raise RateLimit(max_wait_s=...) "
                "to queue longer, or add a target"
            )
        else:
            advice = ". Raise RateLimit(max_wait_s=...) to queue instead"
        return LocalRateLimitError(
            head + advice, target=None if target == _NO_TARGET else target, retry_after=wait_s
        )

    def _store_down(self, target: str, tenant: str | None) -> LocalRateLimitError:
        whose = f" for tenant {tenant!r}" if tenant is not None else ""
        return LocalRateLimitError(
            f"is refused: its shared rate-limit store {self.store!r} cannot be reached and "
            f"RateLimit(fail_closed=True) refuses rather than count {', '.join(self._limits)}"
            f"{whose} in this process alone. Bring the store back, or use fail_closed=False",
            target=None if target == _NO_TARGET else target,
        )

    def _never_fits(
        self, request: ChatRequest, estimate: int, target: str, tenant: str | None
    ) -> LocalRateLimitError:
        completion = estimate_completion_tokens(request)
        source = (
            "max_completion_tokens"
            if request.max_completion_tokens
            else "max_tokens"
            if request.max_tokens
            else "the default completion estimate"
        )
        whose = f" for tenant {tenant!r}" if tenant is not None else ""
        return LocalRateLimitError(
            f"can never pass its local limit of {self.tpm:g} tokens/min{whose}: this request is "
            f"estimated at {estimate} tokens ({estimate - completion} prompt + {completion} from "
            f"{source}), more than a whole minute's budget. Lower max_tokens, or raise tpm",
            target=None if target == _NO_TARGET else target,
        )


class _StreamSettlement:
    """A stream's finalizer: settles the token estimate with the usage the stream reported."""

    __slots__ = ("bucket", "clock", "estimate", "limit")

    def __init__(self, limit: RateLimit, bucket: Bucket, estimate: int, clock: Clock) -> None:
        self.limit = limit
        self.bucket = bucket
        self.estimate = estimate
        self.clock = clock

    def __call__(self, stream: ChatStream, error: object) -> None:
        used = _used(stream.partial().usage)
        if used and used != self.estimate:
            self.limit._settle_later(self.bucket, used - self.estimate, self.clock)


def _used(usage: Usage | None) -> int:
    """Tokens the provider says the call used; 0 when it did not say."""
    if usage is None:
        return 0
    return usage.total_tokens or usage.prompt_tokens + usage.completion_tokens


def _check_rate(name: str, value: float | None, unit: str) -> None:
    if value is not None:
        positive_number(name, value, unit=f"{unit} per minute", hint="or None: no limit")


def _seconds(value: float) -> str:
    return f"{value:.1f} s" if value >= 0.1 else f"{value:.3f} s"
