"""Typed events: what happened during a call, for logging, metrics and tracing to listen to.

Middlewares emit events; they never log. Structlog and OpenTelemetry are listeners like any
other, so the policy code stays free of telemetry. An event is built only when some listener
wants its kind (``ctx.observed``; a listener object may narrow what it wants with a ``wants``
attribute), so a call nobody listens to builds no events at all.

Events are slotted but not frozen: a frozen dataclass costs four times as much to build, and
the happy path builds one per call. Listeners must treat them as read-only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from relaykit.contract.errors import RelayError
from relaykit.contract.schema import RelayInfo, Usage

__all__ = [
    "ALL_EVENTS",
    "AttemptFailed",
    "AttemptStarted",
    "AttemptSucceeded",
    "CacheHit",
    "CacheMiss",
    "CircuitClosed",
    "CircuitOpened",
    "Completed",
    "Event",
    "Failed",
    "FallingBack",
    "HedgeStarted",
    "HedgeWon",
    "Listener",
    "RateLimited",
    "Retrying",
    "StoreDegraded",
    "StoreRecovered",
]


@dataclass(slots=True)
class Event:
    """Base of every event."""


@dataclass(slots=True)
class AttemptStarted(Event):
    target: str
    attempt: int
    model: str | None


@dataclass(slots=True)
class AttemptFailed(Event):
    target: str
    attempt: int
    error: RelayError
    latency_s: float


@dataclass(slots=True)
class AttemptSucceeded(Event):
    """The target answered (for a stream: its first chunk arrived)."""

    target: str
    attempt: int
    latency_s: float


@dataclass(slots=True)
class Retrying(Event):
    target: str | None
    attempt: int
    delay_s: float
    error: RelayError


@dataclass(slots=True)
class FallingBack(Event):
    from_target: str
    to_target: str
    error: RelayError


@dataclass(slots=True)
class HedgeStarted(Event):
    """``target`` was asked too, ``after_s`` after ``waiting_on`` had not committed (Hedge)."""

    waiting_on: str
    target: str
    after_s: float


@dataclass(slots=True)
class HedgeWon(Event):
    """A hedged request to ``target`` committed first; the requests to ``over`` were cancelled."""

    target: str
    over: tuple[str, ...]


@dataclass(slots=True)
class CacheHit(Event):
    key: str
    age_s: float


@dataclass(slots=True)
class CacheMiss(Event):
    key: str


@dataclass(slots=True)
class CircuitOpened(Event):
    target: str
    cooldown_s: float
    reason: str


@dataclass(slots=True)
class CircuitClosed(Event):
    target: str


@dataclass(slots=True)
class RateLimited(Event):
    target: str
    wait_s: float
    limit: str


@dataclass(slots=True)
class StoreDegraded(Event):
    """A shared store (Redis) stopped answering: until it recovers, caches miss and limits and
    breakers use this process's own state. ``store`` names it (password masked); ``error``
    says what failed. Sent once per outage, through the call that noticed it."""

    store: str
    error: str


@dataclass(slots=True)
class StoreRecovered(Event):
    """A shared store answers again after ``down_s`` seconds: state is shared once more."""

    store: str
    down_s: float


@dataclass(slots=True)
class Completed(Event):
    """The call succeeded (for a stream: the stream ended cleanly); ``relay`` is the answer's
    ``RelayInfo``, with its routing trace."""

    target: str | None
    model: str | None
    attempts: int
    latency_s: float
    usage: Usage | None
    cached: bool
    stream: bool
    tenant: str | None
    relay: RelayInfo | None = None


@dataclass(slots=True)
class Failed(Event):
    """The call failed with ``error``, the exception the caller gets (for a stream: it broke);
    ``error.route`` is the call's routing trace."""

    error: RelayError
    attempts: int
    latency_s: float
    stream: bool
    tenant: str | None


Listener = Callable[[Event], None]

ALL_EVENTS: frozenset[type[Event]] = frozenset(Event.__subclasses__())
"""What a listener that does not say otherwise (no ``wants`` attribute) receives."""
