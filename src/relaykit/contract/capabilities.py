"""What a middleware may offer besides ``__call__``: each optional capability is a Protocol.

A middleware is any ``async (request, ctx, call_next)`` callable. Some also offer more, and the
Relay looks for exactly these, once, when it is built:

- ``KeysRequests``: ``keys_requests = True``. The Relay derives each request's identity from the
  caller's arguments as it validates them (the Cache keys on it); other Relays skip that work.
- ``ObservesEvents``: ``def on_event(self, event) -> None``. Registered as a listener, so
  observing a call (Logging, OpenTelemetry) costs nothing in its path.
- ``WantsEvents``: ``wants: frozenset[type[Event]]``, on an observer or a plain listener. A call
  builds only the events some listener wants.
- ``ClosesResources``: ``async def aclose(self) -> None``. Awaited by ``Relay.aclose()``.
- ``RetriesCalls``: ``stacks_with_retry = False``. The Relay refuses two of them on one call
  path, where attempts would multiply.
- ``AdmitsCalls``: ``def refusal(self, target, ctx) -> RelayError | None``, on a per-target
  middleware (CircuitBreaker, RateLimit, a budget). A strategy that picks among targets
  (LoadBalance, Hedge) asks it first and skips a target that cannot take the call now, with
  no request and no await.

A user's class fits by having the attribute; nothing needs to inherit from these. A near miss
(``keys_request``, ``on_events``) would silently turn the capability off, so ``Relay`` refuses
it when it is built (``check_capabilities``).
"""

from __future__ import annotations

import difflib
from collections.abc import Collection
from typing import Protocol, runtime_checkable

from relaykit.contract.errors import RelayError
from relaykit.contract.events import Event
from relaykit.contract.pipeline import CallContext

__all__ = [
    "CAPABILITIES",
    "AdmitsCalls",
    "ClosesResources",
    "KeysRequests",
    "ObservesEvents",
    "RetriesCalls",
    "WantsEvents",
    "check_capabilities",
]


@runtime_checkable
class KeysRequests(Protocol):
    """Keys requests by what they ask (a cache): the Relay hands it each request's identity."""

    keys_requests: bool


@runtime_checkable
class ObservesEvents(Protocol):
    """Observes the call through events (logging, tracing) instead of wrapping it."""

    def on_event(self, event: Event) -> None: ...


@runtime_checkable
class WantsEvents(Protocol):
    """Narrows which event kinds it reads, so a call builds no event nobody reads."""

    wants: Collection[type[Event]]


@runtime_checkable
class ClosesResources(Protocol):
    """Holds resources (connections, background writes) that ``Relay.aclose()`` releases."""

    async def aclose(self) -> None: ...


@runtime_checkable
class RetriesCalls(Protocol):
    """Calls ``call_next`` again after failures; ``stacks_with_retry = False`` tells the Relay
    that a second such layer on one call path would multiply attempts."""

    stacks_with_retry: bool


@runtime_checkable
class AdmitsCalls(Protocol):
    """Knows, without a request or an await, when its target cannot take a call now.

    ``refusal`` returns the error the middleware would raise for a call to ``target`` at this
    moment (``CircuitOpenError``, ``LocalRateLimitError``), or None when it would let it
    through. It is a cheap local answer from what this process has seen, never a store round
    trip: a shared store's state is learnt at the next call the middleware itself refuses.
    The middleware's own check stays the authority when a call does go.
    """

    def refusal(self, target: str, ctx: CallContext) -> RelayError | None: ...


CAPABILITIES: dict[str, type] = {
    "refusal": AdmitsCalls,
    "keys_requests": KeysRequests,
    "on_event": ObservesEvents,
    "wants": WantsEvents,
    "aclose": ClosesResources,
    "stacks_with_retry": RetriesCalls,
}
"""Each capability's attribute name and the Protocol that declares it."""

# Close enough to be a typo of a capability's name, far enough to leave ordinary names alone
# ("close" is not "aclose": ratio 0.91 ≥ 0.8, so a sync close() is refused with advice too).
_NEAR_MISS = 0.8


def check_capabilities(where: str, layer: object) -> None:
    """Refuse an attribute named almost like a capability that the layer does not offer.

    ``keys_request = True`` on a cache-like middleware would otherwise leave request identity
    off without a word; a ``ValueError`` names the attribute and the Protocol it misses.
    """
    names = {n for n in dir(layer) if not n.startswith("_")}
    for name in sorted(names - CAPABILITIES.keys()):
        for meant in difflib.get_close_matches(name, CAPABILITIES, n=1, cutoff=_NEAR_MISS):
            if meant in names:
                continue  # it offers the capability itself; the look-alike is its own business
            protocol = CAPABILITIES[meant].__name__
            raise ValueError(
                f"{where} {layer!r} has {name!r}, which the Relay does not read; did you mean "
                f"{meant!r} (the {protocol} capability)? Rename it, or the capability stays off"
            )
