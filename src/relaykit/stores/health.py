"""Store health: how a shared store says it stopped (or started again) reaching its server.

A shared store never fails a call because its server is slow or gone: it answers from
in-process state instead (``RedisStore``). It reports each change once, as a ``StoreDegraded``
or ``StoreRecovered`` event, through the next call that uses it; the middlewares holding a store
that implements ``ReportsHealth`` pass those events on with ``report_health`` after each store
call, so the Relay's listeners (logging, tracing, yours) see them like any other event.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

from relaykit.contract.events import Event

if TYPE_CHECKING:
    from relaykit.contract.pipeline import CallContext

__all__ = ["ReportsHealth", "health_of", "report_health"]


@runtime_checkable
class ReportsHealth(Protocol):
    """A store that can lose its server: it keeps the health events nobody has sent yet."""

    def take_health_events(self) -> list[Event] | None:
        """The events since the last call (each returned once), or None when there are none."""
        ...


def health_of(store: object) -> ReportsHealth | None:
    """``store`` when it reports its health, else None (checked once, at construction)."""
    return store if isinstance(store, ReportsHealth) else None


def report_health(store: ReportsHealth | None, ctx: CallContext) -> None:
    """Send ``store``'s pending health events through ``ctx`` to the listeners that want them."""
    if store is None:
        return
    events = store.take_health_events()
    if events:
        for event in events:
            if type(event) in ctx.observed:
                ctx.emit(event)
