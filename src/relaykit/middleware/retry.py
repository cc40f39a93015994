"""Retry: call again after a failure that another try can fix, within a budget and a deadline.

The work is split the way tower splits it: ``RetryPolicy.decide`` is a pure function that says
whether a failure is retried and after how long; ``Retry`` is the small loop that sleeps on
``ctx.clock`` and calls again; ``RetryBudget`` caps retries to a share of calls, so an outage
does not multiply the load on a provider that is already failing.

What is retried: errors whose ``retryable`` is True (5xx, timeouts, broken connections, 429
rate limits), never quota, auth, invalid-request or context-window errors, unless ``retry_on``
replaces that rule. A stream is retried only before its commit point, which is automatic:
``call_next`` returns a stream only once its first content arrived, and a break after that
surfaces while the caller iterates, as ``StreamInterruptedError``, which is never retried.

Stacking: a Retry inside a Retry multiplies attempts (``Retry(attempts=3)`` around a target that
has its own ``Retry(attempts=3)`` may send 9 requests), and each layer spends its own budget.
Keep one Retry per path, either around the whole fallback chain or per target; ``Relay`` may
reject two Retry layers on one chain, which is what ``Retry.stacks_with_retry = False`` tells it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Final, TypeAlias, cast

from relaykit._support.checks import positive_seconds, whole_number
from relaykit.contract.error_rules import ErrorRule, check_rules, matches
from relaykit.contract.errors import (
    AllTargetsFailedError,
    ProviderTimeout,
    RelayError,
    StreamInterruptedError,
)
from relaykit.contract.events import Retrying
from relaykit.contract.pipeline import CallContext, Handler, Response
from relaykit.contract.schema import ChatRequest
from relaykit.middleware.retry_budget import RetryBudget

if TYPE_CHECKING:
    from tenacity import RetryCallState

__all__ = [
    "Backoff",
    "GiveUp",
    "Retry",
    "RetryBudget",
    "RetryDecision",
    "RetryPolicy",
    "StopStrategy",
    "WaitStrategy",
]

WaitStrategy = Callable[["RetryCallState"], float]
"""A tenacity ``wait_*`` object (or any callable of a RetryCallState giving seconds)."""
StopStrategy = Callable[["RetryCallState"], bool]
"""A tenacity ``stop_*`` object (or any callable of a RetryCallState giving True to stop)."""

# 2 ** 64 times any base delay is far past every cap; a larger exponent would overflow a float.
_MAX_EXPONENT: Final = 64


class _Default:
    """Marks ``Retry(budget=...)`` left out: each Retry then gets a fresh ``RetryBudget()``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "RetryBudget()"


_DEFAULT_BUDGET: Final = _Default()


@dataclass(frozen=True, slots=True)
class Backoff:
    """Retry after waiting ``delay_s`` seconds (0: at once)."""

    delay_s: float


@dataclass(frozen=True, slots=True)
class GiveUp:
    """Do not retry. ``note`` says why, for the error the caller gets; None when the error
    says it itself (it is not a failure this policy retries)."""

    note: str | None = None


RetryDecision: TypeAlias = Backoff | GiveUp
"""What ``RetryPolicy.decide`` answers: wait and call again, or give up (and why)."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Decides, without a clock or a network, whether a failure is retried and after how long.

    >>> policy = RetryPolicy(attempts=3, base_delay_s=0.5, jitter=False)
    >>> policy.decide(ProviderError("answered 503"), 1, elapsed_s=0.2, remaining_s=None)
    Backoff(delay_s=0.5)
    """

    attempts: int = 3
    base_delay_s: float = 0.5
    max_delay_s: float = 20.0
    max_wait_s: float = 60.0
    jitter: bool = True
    retry_on: tuple[ErrorRule, ...] | None = None
    wait: WaitStrategy | None = None
    stop: StopStrategy | None = None

    def __post_init__(self) -> None:
        whole_number("attempts", self.attempts, minimum=1, hint="1 means no retry")
        positive_seconds("base_delay_s", self.base_delay_s, allow_zero=True)
        positive_seconds("max_delay_s", self.max_delay_s, allow_zero=True)
        positive_seconds("max_wait_s", self.max_wait_s, allow_zero=True)
        if self.max_delay_s < self.base_delay_s:
            raise ValueError(
                f"max_delay_s must be at least base_delay_s ({self.base_delay_s}), "
                f"got {self.max_delay_s}"
            )
        if self.max_delay_s > self.max_wait_s:
            raise ValueError(
                f"max_delay_s must not exceed max_wait_s ({self.max_wait_s}): a backoff longer "
                f"than max_wait_s would never be waited; got {self.max_delay_s}"
            )
        if self.retry_on is not None:
            # A frozen dataclass: normalise a list given by hand to the tuple the type promises.
            object.__setattr__(self, "retry_on", check_rules("retry_on", self.retry_on))
        for name, strategy in (("wait", self.wait), ("stop", self.stop)):
            if strategy is not None and not callable(strategy):
                raise ValueError(
                    f"{name} must be a tenacity {name}_* object (a callable of the retry state), "
                    f"got {strategy!r}"
                )

    def decide(
        self,
        error: RelayError,
        attempt_number: int,
        elapsed_s: float,
        remaining_s: float | None,
        *,
        draw: float = 1.0,
        elsewhere: bool = False,
    ) -> RetryDecision:
        """Whether to call again after ``error``, and after how long; or why not.

        ``attempt_number`` counts attempts made so far (1 after the first failure),
        ``elapsed_s`` is the time since the call started, ``remaining_s`` the time left before
        its deadline (None: no deadline), and ``draw`` a uniform number in [0, 1) for full
        jitter (the middleware passes ``ctx.clock.random()``; 1.0 gives the jitter's ceiling).
        ``elsewhere`` says another target can answer this call (a Retry inside a target of a
        fallback chain that has targets left): a timeout is then not retried here.
        """
        if not self.retries(error):
            return GiveUp()
        if elsewhere and isinstance(error, ProviderTimeout):
            # A silent or slow provider costs a whole attempt timeout each try, while another
            # target could be answering now.
            return GiveUp(
                "relaykit: not retried on this target: it timed out, and another target can "
                "answer the call"
            )
        if self.stop is None and attempt_number >= self.attempts:
            return GiveUp(_gave_up(attempt_number))
        tenacity_given = self.wait is not None or self.stop is not None
        state = _state(error, attempt_number, elapsed_s) if tenacity_given else None
        if error.retry_after is not None:
            delay = float(error.retry_after)
            if delay > self.max_wait_s:
                return GiveUp(
                    f"{_gave_up(attempt_number)}: the provider asked to retry after {delay:.1f} s, "
                    f"more than max_wait_s={self.max_wait_s:g}"
                )
        elif self.wait is not None:
            delay = max(0.0, float(self.wait(_as_call_state(state))))
            if delay > self.max_wait_s:
                return GiveUp(
                    f"{_gave_up(attempt_number)}: the wait strategy asked for {delay:.1f} s, "
                    f"more than max_wait_s={self.max_wait_s:g}"
                )
        else:
            exponent = min(attempt_number - 1, _MAX_EXPONENT)
            delay = min(self.max_delay_s, self.base_delay_s * 2.0**exponent)
            if self.jitter:
                delay *= draw
        if self.stop is not None:
            assert state is not None
            state.upcoming_sleep = delay
            if self.stop(_as_call_state(state)):
                return GiveUp(_gave_up(attempt_number))
        if remaining_s is not None and delay >= remaining_s:
            return GiveUp(
                f"{_gave_up(attempt_number)}: waiting {delay:.1f} s for the next attempt would "
                f"pass the deadline ({max(remaining_s, 0.0):.1f} s left)"
            )
        return Backoff(float(delay))

    def retries(self, error: RelayError) -> bool:
        """Whether ``error`` is the kind of failure this policy retries at all.

        A rule in ``retry_on`` matches an ``AllTargetsFailedError`` when it matches the group
        or any target's error in it, the way the group's own ``retryable`` is any of theirs.
        """
        if isinstance(error, StreamInterruptedError):
            return False  # the caller already holds part of the answer
        rules = self.retry_on
        if rules is None:
            return error.retryable
        if isinstance(error, AllTargetsFailedError):
            return matches(error, rules) or any(matches(a.error, rules) for a in error.attempts)
        return matches(error, rules)


class Retry:
    """Calls again after failures that a retry can fix, with jittered exponential backoff.

    Only ``retryable`` errors are retried (never quota, auth, invalid requests or context-window
    errors; ``retry_on`` replaces that rule with error types and predicates). The wait is
    full-jitter exponential, ``base_delay_s * 2**(n-1)`` capped at ``max_delay_s``, or exactly
    the provider's Retry-After; a wait longer than ``max_wait_s`` or than the time left before
    the call's deadline is not taken: the error surfaces at once (or the fallback moves on).
    tenacity's ``wait_*`` and ``stop_*`` objects may replace the backoff and ``attempts``.
    ``budget`` caps retries to a share of calls (``None``: no cap). When retries are used up,
    the last error is raised as it is, with a note saying how many attempts were made.

    >>> Relay(targets=[backend], middleware=[Retry(attempts=4, max_wait_s=30)])
    >>> Retry(wait=tenacity.wait_fixed(2), stop=tenacity.stop_after_delay(20))
    """

    stacks_with_retry: ClassVar[bool] = False
    """A Retry inside another Retry multiplies attempts; Relay may refuse that combination."""

    __slots__ = ("budget", "policy")

    def __init__(
        self,
        *,
        attempts: int = 3,
        base_delay_s: float = 0.5,
        max_delay_s: float = 20.0,
        max_wait_s: float = 60.0,
        jitter: bool = True,
        retry_on: Sequence[ErrorRule] | None = None,
        wait: WaitStrategy | None = None,
        stop: StopStrategy | None = None,
        budget: RetryBudget | _Default | None = _DEFAULT_BUDGET,
    ) -> None:
        self.policy = RetryPolicy(
            attempts=attempts,
            base_delay_s=base_delay_s,
            max_delay_s=max_delay_s,
            max_wait_s=max_wait_s,
            jitter=jitter,
            retry_on=check_rules("retry_on", retry_on) if retry_on is not None else None,
            wait=wait,
            stop=stop,
        )
        if isinstance(budget, _Default):
            budget = RetryBudget()  # one per Retry, so two Relays never share a budget
        elif budget is not None and not isinstance(budget, RetryBudget):
            raise ValueError(f"budget must be a RetryBudget or None, got {budget!r}")
        self.budget: RetryBudget | None = budget

    def __repr__(self) -> str:
        p = self.policy
        return (
            f"Retry(attempts={p.attempts}, base_delay_s={p.base_delay_s:g}, "
            f"max_delay_s={p.max_delay_s:g}, max_wait_s={p.max_wait_s:g}, budget={self.budget!r})"
        )

    async def __call__(
        self, request: ChatRequest, ctx: CallContext, call_next: Handler
    ) -> Response:
        budget = self.budget
        if budget is not None:
            budget.deposit(ctx.clock.now())
        try:
            return await call_next(request, ctx)
        except RelayError as exc:
            error = exc
        # Retried outside the except block, so a later error is not chained to this one.
        return await self._retry(request, ctx, call_next, error)

    async def _retry(
        self, request: ChatRequest, ctx: CallContext, call_next: Handler, error: RelayError
    ) -> Response:
        policy, budget, clock = self.policy, self.budget, ctx.clock
        attempt = 1
        while True:
            decision = policy.decide(
                error,
                attempt,
                clock.now() - ctx.started,
                ctx.remaining(),
                draw=clock.random(),
                elsewhere=ctx.targets_left > 0,
            )
            if isinstance(decision, GiveUp):
                if decision.note is not None:
                    error.add_note(decision.note)
                raise error
            if budget is not None and not budget.withdraw(clock.now()):
                error.add_note(
                    f"{_gave_up(attempt)}: the retry budget is spent ({budget!r}); "
                    "too many calls are failing right now"
                )
                raise error
            attempt += 1
            if Retrying in ctx.observed:
                ctx.emit(Retrying(error.target, attempt, decision.delay_s, error))
            if decision.delay_s > 0:
                await clock.sleep(decision.delay_s)
            try:
                return await call_next(request, ctx)
            except RelayError as exc:
                error = exc


class _CallState:
    """The parts of tenacity's RetryCallState that its wait and stop strategies read."""

    __slots__ = (
        "args",
        "attempt_number",
        "fn",
        "idle_for",
        "kwargs",
        "next_action",
        "outcome",
        "outcome_timestamp",
        "retry_object",
        "seconds_since_start",
        "start_time",
        "upcoming_sleep",
    )

    def __init__(self, outcome: Any, attempt_number: int, elapsed_s: float) -> None:
        self.attempt_number = attempt_number
        self.outcome = outcome
        self.seconds_since_start = elapsed_s
        self.upcoming_sleep = 0.0
        self.idle_for = 0.0  # time already slept is not tracked by the pure policy
        self.start_time = 0.0
        self.outcome_timestamp = elapsed_s
        self.next_action = None
        self.retry_object = None
        self.fn = None
        self.args: tuple[object, ...] = ()
        self.kwargs: dict[str, object] = {}


def _state(error: RelayError, attempt_number: int, elapsed_s: float) -> _CallState:
    # Imported here, on a failure with tenacity strategies configured: tenacity stays off the
    # happy path and out of ``import relaykit``.
    import tenacity

    outcome = tenacity.Future.construct(attempt_number, error, has_exception=True)
    return _CallState(outcome, attempt_number, elapsed_s)


def _as_call_state(state: _CallState | None) -> RetryCallState:
    return cast("RetryCallState", state)


def _gave_up(attempts: int) -> str:
    return f"relaykit: gave up after {attempts} attempt{'s' if attempts != 1 else ''}"
