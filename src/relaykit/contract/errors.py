"""One error taxonomy for every backend, so policies decide by type and never by provider.

Each error knows whether retrying the same target can help (``retryable``), the HTTP ``status``
it came from, which ``target`` raised it and how long the provider asked us to wait
(``retry_after``, seconds). Messages say what happened, where, and what to do next; they never
contain an API key (backends redact theirs before an error is built).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Self, TypeAlias

__all__ = [
    "AllTargetsFailedError",
    "Attempt",
    "AuthenticationError",
    "BadResponseError",
    "BudgetExceededError",
    "CacheMissError",
    "CircuitOpenError",
    "ConfigError",
    "ContentFilterError",
    "ContextWindowError",
    "InvalidRequestError",
    "LocalRateLimitError",
    "ModelNotFoundError",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderTimeout",
    "QuotaExceededError",
    "RateLimitError",
    "RelayClosedError",
    "RelayError",
    "RequestValidationError",
    "RouteOutcome",
    "RouteStep",
    "StreamInterruptedError",
]


class RelayError(Exception):
    """Base of every error relaykit raises about a call.

    ``route`` (set on the error the caller gets) lists each target the call considered and
    what happened there, in order: see ``RouteStep``. An error type whose ``skip_reason`` is
    set means "nothing was sent": the route lists its target as skipped for that reason.
    """

    retryable: bool = False
    default_status: ClassVar[int | None] = None
    skip_reason: ClassVar[str | None] = None
    route: tuple[RouteStep, ...] = ()

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        target: str | None = None,
        retry_after: float | None = None,
        code: str | None = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status if status is not None else self.default_status
        self.target = target
        self.retry_after = retry_after
        self.code = code
        if retryable is not None:
            self.retryable = retryable

    def __str__(self) -> str:
        # Messages are written to follow the target's name: "target 'main' answered 429: ...".
        return f"target {self.target!r} {self.message}" if self.target else self.message

    def __reduce__(self) -> tuple[Any, ...]:
        # copy and pickle rebuild without __init__ (subclasses take keyword-only arguments) and
        # restore every attribute, notes included.
        return (_rebuild, (type(self), self.args), self.__dict__)


def _rebuild(kind: type[RelayError], args: tuple[Any, ...]) -> RelayError:
    return kind.__new__(kind, *args)


class AuthenticationError(RelayError):
    """401/403: the key is wrong or lacks access. Never retried; the fallback may move on."""

    default_status = 401


class RateLimitError(RelayError):
    """429: too many requests right now. Retryable, after ``retry_after`` when given."""

    retryable = True
    default_status = 429


class QuotaExceededError(RateLimitError):
    """429 insufficient_quota: the account is out of credit; retrying that target never helps."""

    retryable = False


class InvalidRequestError(RelayError):
    """400/404/422: the request itself is wrong. Fails fast: no retry, no fallback by default."""

    default_status = 400


class RequestValidationError(InvalidRequestError):
    """A request argument was rejected before anything was sent; ``field`` names it."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field

    def __str__(self) -> str:
        return self.message


class ModelNotFoundError(InvalidRequestError):
    """404 (or ``model_not_found``): this target has no such model, deployment or endpoint.

    Another target may well have it, so the fallback moves on by default; retrying the same
    target never helps.
    """

    default_status = 404


class ContextWindowError(InvalidRequestError):
    """400 context_length_exceeded: too long for this model; a larger-context target may fit."""


class ContentFilterError(InvalidRequestError):
    """The provider's content filter refused the request or the answer."""


class ProviderError(RelayError):
    """5xx: the provider failed. Retryable."""

    retryable = True
    default_status = 500


class ProviderTimeout(RelayError):
    """No answer within the time allowed. Retryable."""

    retryable = True

    @classmethod
    def deadline_passed(cls, target: str | None = None) -> ProviderTimeout:
        """For a request not sent at all: the call's deadline (``Timeout(total_s=...)``) had
        passed before this attempt began."""
        return cls("was not called: the call's deadline had already passed", target=target)

    @classmethod
    def deadline_reached(cls, left_s: float, target: str | None = None) -> ProviderTimeout:
        """For a request cut short by the call's deadline, ``left_s`` seconds after it began
        (one message, whichever layer, Timeout's scope or the backend's own, noticed first)."""
        return cls(
            f"did not answer before the call's deadline ({left_s:.3g} s were left). "
            "Raise Timeout(total_s=...) or add a fallback target",
            target=target,
        )


class ProviderConnectionError(RelayError):
    """The connection could not be made, or broke. Retryable."""

    retryable = True


class BadResponseError(RelayError):
    """The provider answered with something that is not a valid completion. Retryable."""

    retryable = True


class StreamInterruptedError(RelayError):
    """A stream broke after its commit point; ``partial`` holds what had arrived.

    Past the commit point the caller already has output, so relaykit does not retry on its own:
    the caller decides, or ``Fallback(continue_streams=True)`` continues on the next target.
    """

    def __init__(self, message: str, *, partial: Any, target: str | None = None) -> None:
        super().__init__(message, target=target)
        # A ChatCompletion; typed loosely to keep this module free of the schema import.
        self.partial = partial


class CircuitOpenError(RelayError):
    """The target's circuit breaker is open: no request was sent."""

    skip_reason = "circuit open"


class LocalRateLimitError(RelayError):
    """relaykit's own rate limit for this target is used up: no request was sent."""

    skip_reason = "rate limit has no room"


class BudgetExceededError(RelayError):
    """A ``Budget`` has no room for this call's worst-case cost: no request was sent.

    ``budget`` names the budget, ``tenant`` whose it is (None for a budget shared by every
    call), ``limit_usd`` and ``spent_usd`` (reservations of calls in flight included) say how
    full it is, ``cost_usd`` what this call might have cost, and ``resets_at`` (an aware UTC
    datetime) when its window starts over; ``retry_after`` is the seconds until then. Not
    retryable: waiting that long is no retry. The fallback moves on to the next target, which
    another budget (or none) may admit.
    """

    skip_reason = "budget has no room"

    def __init__(
        self,
        message: str,
        *,
        budget: str,
        tenant: str | None,
        limit_usd: float,
        spent_usd: float,
        cost_usd: float,
        resets_at: Any,
        retry_after: float | None = None,
        target: str | None = None,
    ) -> None:
        super().__init__(message, target=target, retry_after=retry_after)
        self.budget = budget
        self.tenant = tenant
        self.limit_usd = limit_usd
        self.spent_usd = spent_usd
        self.cost_usd = cost_usd
        # A datetime; typed loosely to keep this module free of imports.
        self.resets_at = resets_at


class CacheMissError(RelayError):
    """A call with ``cache="only"`` found no usable cached answer: no request was sent."""


class RelayClosedError(RelayError, RuntimeError):
    """The Relay was closed (``with`` ended, ``close()``/``aclose()``): nothing was sent."""


class ConfigError(ValueError):
    """A configuration value is not allowed; ``path`` names it (``targets[1].base_url``)."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try at one target, as the fallback saw it."""

    target: str
    error: RelayError
    latency_s: float

    def describe(self) -> str:
        status = f" {self.error.status}" if self.error.status is not None else ""
        kind = type(self.error).__name__
        return (
            f"{self.target}: {kind}{status} after {self.latency_s * 1000:.0f} ms, "
            f"{_shortened(self.error.message)}"
        )


# An attempt's cause in AllTargetsFailedError's one-line summary: long enough for a provider's
# message and relaykit's advice, so the summary alone tells what went wrong where.
_MAX_REASON = 240


def _shortened(text: str) -> str:
    """``text`` up to ``_MAX_REASON`` characters, cut at a word, never inside one."""
    if len(text) <= _MAX_REASON:
        return text
    cut = text[:_MAX_REASON].rsplit(" ", 1)[0]
    return f"{cut.rstrip(' ,;:')} …"


RouteOutcome: TypeAlias = Literal["answered", "failed", "skipped", "lost"]
"""What happened at one target: it answered; it failed; it was skipped without a request; or it
was a hedged request that another target answered first (it was cancelled)."""


@dataclass(frozen=True, slots=True)
class RouteStep:
    """One target a call considered, and what happened there.

    ``reason`` says why a target was skipped (``"circuit open"``, ``"rate limit has no room"``,
    ``"context window too small"``, ...) or lost (``"'b' answered first"``); for a failure it is
    the error's type. ``error`` is the error a failed or skipped target raised, if any, and
    ``latency_s`` how long the target took to fail or to be given up (None when not measured,
    as for the answer: the call's own latency covers it).

    >>> [step.describe() for step in answer.relay.route]
    ["primary: failed (ProviderError 503 after 12 ms)", "backup: answered"]
    """

    target: str
    outcome: RouteOutcome
    reason: str = ""
    error: RelayError | None = None
    latency_s: float | None = None

    @classmethod
    def of_error(cls, target: str, error: RelayError, latency_s: float | None) -> RouteStep:
        """The step for ``target`` raising ``error``: skipped when the error says nothing was
        sent (an open circuit, a local rate limit), failed otherwise."""
        if error.skip_reason is not None:
            return cls(target, "skipped", error.skip_reason, error, latency_s)
        return cls(target, "failed", type(error).__name__, error, latency_s)

    def describe(self) -> str:
        """One line for logs and spans: ``"primary: failed (ProviderError 503 after 12 ms)"``."""
        if self.outcome == "answered":
            return f"{self.target}: answered"
        detail = self.reason
        if self.outcome == "failed" and self.error is not None and self.error.status is not None:
            detail += f" {self.error.status}"
        if self.latency_s is not None and self.outcome != "skipped":
            detail += f" after {self.latency_s * 1000:.0f} ms"
        return f"{self.target}: {self.outcome} ({detail})"


class AllTargetsFailedError(ExceptionGroup[RelayError], RelayError):  # type: ignore[override]
    """Every target failed. An ExceptionGroup, so ``except* RateLimitError`` works, and a
    RelayError, so ``except RelayError`` catches it too.

    ``attempts`` lists each try in order, with target, error and latency.
    """

    attempts: tuple[Attempt, ...]
    latest: tuple[Attempt, ...] | None
    exhausted: bool

    def __new__(
        cls,
        attempts: Sequence[Attempt],
        *,
        latest: Sequence[Attempt] | None = None,
        exhausted: bool = False,
    ) -> Self:
        lines = "; ".join(a.describe() for a in attempts)
        # An attempt is one request sent, counted as RelayInfo and the log lines count it; a
        # target skipped without one (an open circuit) is told apart.
        sent = sum(a.error.skip_reason is None for a in attempts)
        skipped = len(attempts) - sent
        count = f"all {sent} attempts failed" if sent != 1 else "the one attempt failed"
        if skipped:
            count = f"{count if sent else 'no attempt was made'} and {skipped} " + (
                "target was skipped" if skipped == 1 else "targets were skipped"
            )
        message = (
            f"{count} ({lines}). Check each target's error below, or add a target that can answer."
        )
        self = super().__new__(cls, message, [a.error for a in attempts])
        self.attempts = tuple(attempts)
        self.status = self.target = self.code = None
        # For an outer Retry: only the last pass counts (``latest``; an earlier pass's 503 says
        # nothing about now), nothing is retryable once every target failed for good
        # (``exhausted``), and the pushback honoured is the shortest among retryable errors
        # (an open circuit's remaining time is no reason to wait: that target is skipped).
        self.latest = None if latest is None else tuple(latest)
        self.exhausted = exhausted
        recent = [a.error for a in (attempts if latest is None else latest)]
        waits = [e.retry_after for e in recent if e.retryable and e.retry_after is not None]
        self.retry_after = min(waits) if waits else None
        self.retryable = not exhausted and any(e.retryable for e in recent)
        return self

    def __init__(
        self,
        attempts: Sequence[Attempt],
        *,
        latest: Sequence[Attempt] | None = None,
        exhausted: bool = False,
    ) -> None:
        # ExceptionGroup builds itself in __new__; this only keeps args printable.
        super().__init__(self.message, [a.error for a in self.attempts])

    def __reduce__(self) -> tuple[Any, ...]:
        # copy and pickle rebuild from the attempts, then restore retryable and retry_after.
        return (type(self), (self.attempts,), self.__dict__)

    def derive(self, excs: Sequence[RelayError]) -> ExceptionGroup[RelayError]:  # type: ignore[override]
        kept = [a for a in self.attempts if a.error in excs]
        if not kept:
            return ExceptionGroup(self.message, list(excs))
        latest = None if self.latest is None else [a for a in self.latest if a in kept]
        return AllTargetsFailedError(kept, latest=latest, exhausted=self.exhausted)
