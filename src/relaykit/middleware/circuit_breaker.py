"""CircuitBreaker: stop sending requests to a target that keeps failing, and try it again later.

A per-target middleware: ``Target(backend, name="primary", middleware=[CircuitBreaker()])``.
While a circuit is open, calls to its target raise ``CircuitOpenError`` before any request is
made, so the fallback moves on to the next target with no added latency. The state machine
lives in a ``BreakerStore`` (in-process by default, shareable across processes); this module
decides which outcomes count (``CircuitBreaker.outcome_of``) and acts on the store's answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from relaykit._support.background import BackgroundTasks
from relaykit._support.checks import fraction, positive_seconds, whole_number
from relaykit.contract.error_rules import ErrorRule, check_rules, matches
from relaykit.contract.errors import (
    AuthenticationError,
    BadResponseError,
    CircuitOpenError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeout,
    QuotaExceededError,
    RateLimitError,
    RelayError,
    StreamInterruptedError,
)
from relaykit.contract.events import CircuitClosed, CircuitOpened
from relaykit.contract.pipeline import CallContext, Handler, Response
from relaykit.contract.schema import ChatRequest
from relaykit.contract.stream import ChatStream
from relaykit.stores.breaker import (
    PROBE_SUCCESS,
    SUCCESS,
    Admission,
    BreakerPolicy,
    BreakerStore,
    MemoryBreakerStore,
    Outcome,
    Transition,
)
from relaykit.stores.health import health_of, report_health

__all__ = ["DEFAULT_FAILURES", "CircuitBreaker"]

DEFAULT_FAILURES: tuple[type[RelayError], ...] = (
    ProviderError,
    ProviderTimeout,
    ProviderConnectionError,
    BadResponseError,
    RateLimitError,  # QuotaExceededError included
    AuthenticationError,
    StreamInterruptedError,
)
"""Provider-side failures. Invalid requests (context window and content filter included) are
the caller's fault, and an open circuit or a local rate limit sent nothing: none of them count."""

# A probe that never reports (its process died, with a shared store) frees its slot after this
# long, or after the cool-down when that is longer. In-process, cancellation frees it at once.
_PROBE_LEASE_FLOOR_S = 60.0


class CircuitBreaker:
    """Fails calls to a target at once, without a request, while that target is failing.

    The circuit opens after ``failures`` consecutive failures, or when at least ``failure_rate``
    of at least ``min_calls`` calls in the last ``window_s`` seconds failed (checked as each
    failure is recorded). It stays open for ``cooldown_s``, then lets ``half_open_probes``
    concurrent calls through: a probe that succeeds closes it, one that fails reopens it for
    another cool-down, the same length each time. A 429 with Retry-After opens the circuit for
    exactly that long (at most ``max_open_s``), a quota error for the cool-down. A stream counts
    as a success at its commit point and as a failure if it breaks after it.

    Why a 5 s cool-down: a circuit exists to spare a failing provider and skip it at no cost
    while the fallback answers; it does not need to stay open long to do that. A short, fixed
    cool-down gives a recovered provider its traffic back within one cool-down plus the gap to
    the next call (LiteLLM's Router and Polly also cool down for 5 s), where a long or growing
    one kept a provider that had recovered idle for half a minute or more. A provider that asks
    for longer says so with Retry-After, which is honoured up to ``max_open_s`` (60 s), so no
    single answer can take a provider out of service for longer than that.

    Which errors count is ``failure_on`` (error types and predicates on errors) when given,
    else ``DEFAULT_FAILURES``. State is kept per target name, so one instance may guard several
    targets, in ``store`` (a private ``MemoryBreakerStore`` unless given; pass a shared store to
    let several processes see one circuit).

    >>> Target(backend, name="primary", middleware=[CircuitBreaker(failures=3, cooldown_s=10)])
    """

    def __init__(
        self,
        *,
        failures: int = 5,
        failure_rate: float = 0.5,
        min_calls: int = 10,
        window_s: float = 30.0,
        cooldown_s: float = 5.0,
        max_open_s: float = 60.0,
        half_open_probes: int = 1,
        store: BreakerStore | None = None,
        failure_on: Sequence[ErrorRule] | None = None,
    ) -> None:
        # Every bound is finite: a circuit opened for math.inf seconds would never close.
        cooldown = positive_seconds("cooldown_s", cooldown_s)
        self.max_open_s = positive_seconds("max_open_s", max_open_s)
        if self.max_open_s < cooldown:
            raise ValueError(
                f"max_open_s must be at least cooldown_s ({cooldown:g}), got {max_open_s!r}"
            )
        self.policy = BreakerPolicy(
            failures=whole_number("failures", failures, minimum=1),
            failure_rate=fraction("failure_rate", failure_rate),
            min_calls=whole_number("min_calls", min_calls, minimum=1),
            window_s=positive_seconds("window_s", window_s),
            cooldown_s=cooldown,
            half_open_probes=whole_number("half_open_probes", half_open_probes, minimum=1),
            probe_lease_s=max(cooldown, _PROBE_LEASE_FLOOR_S),
        )
        if store is not None and not isinstance(store, BreakerStore):
            raise ValueError(
                "store must implement BreakerStore (async admit, record and release), "
                f"got {store!r}"
            )
        self.store: BreakerStore = store if store is not None else MemoryBreakerStore()
        # A shared store that falls back to in-process state says so through calls' events.
        self._health = health_of(store)
        self.failure_on = check_rules(
            "failure_on", failure_on if failure_on is not None else DEFAULT_FAILURES
        )
        # Late verdicts (a stream broken after its commit point) are recorded from a sync
        # finalizer, so they run as tasks; the next admission waits for them.
        self._late = BackgroundTasks()
        # Circuits this process saw open, by target: until when, and why. ``refusal`` answers
        # from here, so a strategy skips an open target without asking the store.
        self._seen_open: dict[str, tuple[float, str]] = {}

    def __repr__(self) -> str:
        p = self.policy
        return (
            f"CircuitBreaker(failures={p.failures}, failure_rate={p.failure_rate}, "
            f"min_calls={p.min_calls}, window_s={p.window_s}, cooldown_s={p.cooldown_s}, "
            f"max_open_s={self.max_open_s}, half_open_probes={p.half_open_probes}, "
            f"store={self.store!r})"
        )

    # --- policy: pure decisions, no clock, no store --------------------------------------------

    def counts_as_failure(self, error: RelayError) -> bool:
        """Whether ``error`` counts against its target's health."""
        return matches(error, self.failure_on)

    def outcome_of(self, error: RelayError, *, probe: bool = False) -> Outcome | None:
        """What ``error`` means for the circuit: a failure to count, one that opens it at once
        (429 with Retry-After: for exactly that long; quota: for the cool-down), or None when
        it does not count."""
        if not self.counts_as_failure(error):
            return None
        if isinstance(error, QuotaExceededError):
            return Outcome(False, probe, self.policy.cooldown_s, "a quota-exceeded error")
        if isinstance(error, RateLimitError) and error.retry_after and error.retry_after > 0:
            asked = error.retry_after
            reason = f"a 429 asking to retry after {asked:.1f} s"
            return Outcome(False, probe, min(asked, self.max_open_s), reason)
        return Outcome(False, probe)

    # --- the middleware ------------------------------------------------------------------------

    async def __call__(
        self, request: ChatRequest, ctx: CallContext, call_next: Handler
    ) -> Response:
        key = ctx.target or ""
        if self._late:
            await self._late.drain()
        store, policy = self.store, self.policy
        now = ctx.clock.now()
        admission = await store.admit(key, now, policy)
        if self._health is not None:
            report_health(self._health, ctx)
        if not admission.allowed:
            if admission.wait_s is not None:
                self._seen_open[key] = (now + admission.wait_s, admission.reason)
            raise self._open_error(key, admission)
        if self._seen_open:
            self._seen_open.pop(key, None)
        probe = admission.probe
        try:
            result = await call_next(request, ctx)
        except RelayError as exc:
            outcome = self.outcome_of(exc, probe=probe)
            if outcome is not None:
                self._report(ctx, key, await store.record(key, ctx.clock.now(), policy, outcome))
            elif probe:
                await store.release(key, ctx.clock.now(), policy)
            raise
        except BaseException:
            # Cancelled, or not a relaykit error: says nothing about the target's health.
            if probe:
                await asyncio.shield(store.release(key, ctx.clock.now(), policy))
            raise
        change = await store.record(
            key, ctx.clock.now(), policy, PROBE_SUCCESS if probe else SUCCESS
        )
        if change is not None:
            self._report(ctx, key, change)
        if isinstance(result, ChatStream):
            result.on_finish(self._finalizer(ctx, key))
        return result

    def _finalizer(
        self, ctx: CallContext, key: str
    ) -> Callable[[ChatStream, RelayError | None], None]:
        def finished(stream: ChatStream, error: RelayError | None) -> None:
            if error is None:
                return
            outcome = self.outcome_of(error)
            if outcome is None:
                return
            late = Outcome(False, open_s=outcome.open_s, reason=outcome.reason, late=True)
            self._late.spawn(self._record_late(ctx, key, late))

        return finished

    async def _record_late(self, ctx: CallContext, key: str, outcome: Outcome) -> None:
        self._report(ctx, key, await self.store.record(key, ctx.clock.now(), self.policy, outcome))

    def refusal(self, target: str, ctx: CallContext) -> CircuitOpenError | None:
        """The error a call to ``target`` would get now if its circuit is open as this process
        last saw it (``relaykit.contract.capabilities.AdmitsCalls``); None once the open period is
        over, when the call goes to the store's admission and may be the half-open probe."""
        seen = self._seen_open.get(target)
        if seen is None:
            return None
        wait_s = seen[0] - ctx.clock.now()
        if wait_s <= 0:
            return None
        return self._open_error(target, Admission(False, wait_s=wait_s, reason=seen[1]))

    def _report(self, ctx: CallContext, key: str, change: Transition | None) -> None:
        if change is None:
            return
        if change.opened:
            self._seen_open[key] = (ctx.clock.now() + change.open_s, change.reason)
            if CircuitOpened in ctx.observed:
                ctx.emit(CircuitOpened(key, change.open_s, change.reason))
        else:
            self._seen_open.pop(key, None)
            if CircuitClosed in ctx.observed:
                ctx.emit(CircuitClosed(key))

    def _open_error(self, key: str, admission: Admission) -> CircuitOpenError:
        if admission.wait_s is not None:
            message = (
                f"is skipped: its circuit is open for {admission.wait_s:.1f} s more "
                f"after {admission.reason}"
            )
        else:
            probes = self.policy.half_open_probes
            message = (
                f"is skipped: its circuit is half-open after {admission.reason} and "
                f"{'its probe call is' if probes == 1 else f'all {probes} probe calls are'} "
                "still in flight"
            )
        return CircuitOpenError(message, target=key or None, retry_after=admission.wait_s)

    async def aclose(self) -> None:
        """Wait for verdicts still being recorded, so none is lost when the Relay closes."""
        await self._late.drain()
