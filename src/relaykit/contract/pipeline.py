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

__all__ = ["CacheMode", "CallContext", "Handler", "Middleware", "Response", "compose"]

Response: TypeAlias = ChatCompletion | ChatStream
Handler: TypeAlias = Callable[[ChatRequest, "CallContext"], Awaitable[Response]]
Middleware: TypeAlias = Callable[[ChatRequest, "CallContext", Handler], Awaitable[Response]]
CacheMode: TypeAlias = Literal["use", "bypass", "refresh", "only"]

_log = logging.getLogger("relaykit")


@dataclass(slots=True, eq=False)
class CallContext:
    """Everything about one call that is not the request itself.

    ``deadline`` is absolute, in ``clock.now()`` seconds; every layer that waits (backoff,
    HTTP, rate-limit queues) stays inside it. ``attempt`` counts upstream requests made so far;
    ``target`` names the target that answered, once one has.
    """

    clock: Clock
    started: float = 0.0
    listeners: Sequence[Listener] = ()
    # The event kinds some listener wants; emit sites build an event only when its kind is here.
    observed: frozenset[type[Event]] = frozenset()
    deadline: float | None = None
    tenant: str | None = None
    cache: CacheMode = "use"
    cache_ttl_s: float | None = None
    cache_max_age_s: float | None = None
    # Left out of the repr: a call's headers may carry a key (relaykit._support.secrets).
    extra_headers: Mapping[str, str] | None = field(default=None, repr=False)
    attempt: int = 0
    target: str | None = None
    failures: list[Attempt] = field(default_factory=list)
    # Set by Timeout for the layers inside it; the target's upstream request reads them. None
    # means unbounded (and costs nothing). first_token_timeout_s is only set for streams.
    attempt_timeout_s: float | None = None
    first_token_timeout_s: float | None = None
    # The longest silence between two chunks of an attempt's stream, watched on that attempt's
    # own stream, so a stall breaks the attempt and a continuing Fallback can finish it.
    idle_timeout_s: float | None = None
    # Set by Fallback while a target is tried: how many targets come after it in the chain.
    # A Retry inside that target does not retry a timeout while another target can answer.
    targets_left: int = 0
    # Raises BadResponseError for an answer the caller cannot use (e.g. structured output that
    # does not validate); the attempt then counts as failed, so Retry and Fallback take over.
    validate: Callable[[ChatCompletion], None] | None = None
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
        return None if self.deadline is None else self.deadline - self.clock.now()


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
