"""The pipeline contract: handlers, middlewares, the per-call context, and composition.

A handler answers a request; a middleware is ``async (request, ctx, call_next)`` and may call
``call_next`` zero, one or several times. ``compose`` nests them once, at construction, so a call
pays only for the layers themselves. Data goes down once and comes back once.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

from relaykit.contract.clock import Clock
from relaykit.contract.errors import Attempt, RouteStep
from relaykit.contract.events import Event, Listener
from relaykit.contract.pricing import Price
from relaykit.contract.schema import ChatCompletion, ChatRequest
from relaykit.contract.stream import ChatStream

__all__ = [
    "NO_BOUNDS",
    "PLAIN_CALL",
    "CacheMode",
    "CallContext",
    "CallOptions",
    "Handler",
    "Middleware",
    "Response",
    "TimeBounds",
    "compose",
]

Response: TypeAlias = ChatCompletion | ChatStream
Handler: TypeAlias = Callable[[ChatRequest, "CallContext"], Awaitable[Response]]
Middleware: TypeAlias = Callable[[ChatRequest, "CallContext", Handler], Awaitable[Response]]
CacheMode: TypeAlias = Literal["use", "bypass", "refresh", "only"]

_log = logging.getLogger("relaykit")


@dataclass(frozen=True, slots=True)
class CallOptions:
    """What the caller asked of this one call besides the request: fixed for the whole call.

    ``tenant`` keys the cache and per-tenant rate limits; ``cache``, ``cache_ttl_s`` and
    ``cache_max_age_s`` steer the Cache; ``extra_headers`` go upstream with every attempt;
    ``validate`` may reject an answer (``BadResponseError``), which then counts as a failed
    attempt, so Retry and Fallback take over.
    """

    tenant: str | None = None
    cache: CacheMode = "use"
    cache_ttl_s: float | None = None
    cache_max_age_s: float | None = None
    # Left out of the repr: a call's headers may carry a key (relaykit._support.secrets).
    extra_headers: Mapping[str, str] | None = field(default=None, repr=False)
    validate: Callable[[ChatCompletion], None] | None = None


PLAIN_CALL = CallOptions()
"""The options of a call that gave none, shared by every such call."""


class TimeBounds:
    """How long the upstream requests inside the Timeouts around them may take.

    A value nobody changes: a Timeout puts tighter bounds on ``ctx.bounds`` for the layers
    inside it and the bounds it found back on its way out; a Fallback that continues a broken
    stream later puts back the bounds that stream's attempt had. Saving and restoring is one
    reference, whoever does it, and the attempt reads the bounds where it is made.

    ``deadline`` is absolute, in ``clock.now()`` seconds (``Timeout(total_s=...)``);
    ``attempt_s`` bounds each upstream request (for a stream: until its commit point),
    ``first_token_s`` a stream's first chunk, ``idle_s`` the silence between two chunks of an
    attempt's stream. None is unbounded, and costs nothing.
    """

    __slots__ = ("attempt_s", "deadline", "first_token_s", "idle_s", "limits_attempts")

    def __init__(
        self,
        deadline: float | None = None,
        attempt_s: float | None = None,
        first_token_s: float | None = None,
        idle_s: float | None = None,
    ) -> None:
        self.deadline = deadline
        self.attempt_s = attempt_s
        self.first_token_s = first_token_s
        self.idle_s = idle_s
        # Read by every attempt: without one of these, no timeout scope is entered at all.
        self.limits_attempts = attempt_s is not None or first_token_s is not None

    def within(
        self,
        *,
        deadline: float | None = None,
        attempt_s: float | None = None,
        first_token_s: float | None = None,
        idle_s: float | None = None,
    ) -> TimeBounds:
        """These bounds tightened by the ones given (a bound only ever gets shorter); the same
        object when none is tighter."""
        new_deadline = _shorter(self.deadline, deadline)
        new_attempt = _shorter(self.attempt_s, attempt_s)
        new_first = _shorter(self.first_token_s, first_token_s)
        new_idle = _shorter(self.idle_s, idle_s)
        if (
            new_deadline is self.deadline
            and new_attempt is self.attempt_s
            and new_first is self.first_token_s
            and new_idle is self.idle_s
        ):
            return self
        return TimeBounds(new_deadline, new_attempt, new_first, new_idle)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TimeBounds):
            return NotImplemented
        return (self.deadline, self.attempt_s, self.first_token_s, self.idle_s) == (
            other.deadline,
            other.attempt_s,
            other.first_token_s,
            other.idle_s,
        )

    def __hash__(self) -> int:
        return hash((self.deadline, self.attempt_s, self.first_token_s, self.idle_s))

    def __repr__(self) -> str:
        given = [
            f"{name}={value!r}"
            for name in ("deadline", "attempt_s", "first_token_s", "idle_s")
            if (value := getattr(self, name)) is not None
        ]
        return f"TimeBounds({', '.join(given)})"


NO_BOUNDS = TimeBounds()
"""The bounds of a call no Timeout has bounded."""


def _shorter(bound: float | None, other: float | None) -> float | None:
    if other is None:
        return bound
    return other if bound is None or other < bound else bound


@dataclass(slots=True, eq=False)
class CallContext:
    """Everything about one call that is not the request itself, by purpose.

    - what the call runs with, set by the Relay: ``clock``, ``started`` (``clock.now()`` when
      the call began), the ``listeners`` and the event kinds they want (``observed``);
    - ``options``: the caller's per-call options (``CallOptions``), fixed for the call;
    - ``bounds``: the time bounds (``TimeBounds``) the Timeouts around a layer set;
    - the record of what happened, which the layers write as the call goes: ``attempt``
      (upstream requests made so far), ``target`` (the target being tried, then the one that
      answered), ``price`` (that target's), ``failures``, ``targets_left``,
      ``continued_from`` and ``route``.
    """

    clock: Clock
    started: float = 0.0
    listeners: Sequence[Listener] = ()
    # The event kinds some listener wants; emit sites build an event only when its kind is here.
    observed: frozenset[type[Event]] = frozenset()
    options: CallOptions = PLAIN_CALL
    bounds: TimeBounds = NO_BOUNDS
    # --- the record of what happened
    attempt: int = 0
    target: str | None = None
    failures: list[Attempt] = field(default_factory=list)
    # Set by Fallback while a target is tried: how many targets come after it in the chain.
    # A Retry inside that target does not retry a timeout while another target can answer.
    targets_left: int = 0
    # Set by Fallback(continue_streams=True) when the stream broke and another target finished
    # it: the targets whose streams broke, in order. The answer joins two generations, so the
    # Cache does not store it, and RelayInfo says who wrote it.
    continued_from: tuple[str, ...] = ()
    # The routing trace (``RelayInfo.route``): what each target considered did, in order. None
    # until something other than an answer happens, so a call answered at once records nothing.
    route: list[RouteStep] | None = None
    # The price of what this call may cost (``relaykit.contract.pricing``): the most expensive
    # target's for the layers outside the targets (set by the Relay), narrowed by each Target to its
    # own while it is tried; after an answer, the answering target's. None when a target has none.
    price: Price | None = None

    @property
    def continued(self) -> bool:
        """Whether the answer was continued on another target after its stream broke."""
        return bool(self.continued_from)

    def record(self, step: RouteStep) -> None:
        """Add ``step`` to the call's routing trace."""
        if self.route is None:
            self.route = [step]
        else:
            self.route.append(step)

    def emit(self, event: Event) -> None:
        """Send ``event`` to every listener; a failing listener never fails the call."""
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:
                _log.exception("relaykit listener %r failed on %s", listener, type(event).__name__)

    def remaining(self) -> float | None:
        """Seconds left before the deadline (may be negative), or None when there is none."""
        deadline = self.bounds.deadline
        return None if deadline is None else deadline - self.clock.now()


def compose(middleware: Sequence[Middleware], handler: Handler) -> Handler:
    """Nest ``middleware`` around ``handler``; the first listed is the outermost."""
    for layer in reversed(middleware):
        handler = _bind(layer, handler)
    return handler


def _bind(layer: Middleware, call_next: Handler) -> Handler:
    # A plain function, not a coroutine: the layer's own coroutine is the only frame per call.
    def call(request: ChatRequest, ctx: CallContext) -> Awaitable[Response]:
        return layer(request, ctx, call_next)

    return call
