"""Budget stores: spend counters that many concurrent calls (or processes) reserve from.

A budget is one number per key, the dollars spent (and reserved) in one window. The store's one
decision is atomic: *add this reservation if the total stays within the limit, else add
nothing and say what is spent*. Settling afterwards adds the difference between what the call
really cost and what it reserved, which is negative in the usual case (the reservation is a
worst case) and never checked against the limit: the money is spent either way. So N callers
sharing a store overspend only by how much a call's real cost exceeded its own reservation.

The in-process store decides without an ``await`` between check and add, so concurrent calls
on one event loop never overspend; a shared store (Redis) decides in one script::

    -- KEYS[1]: the window's key; ARGV: amount, limit, expires_at_ms
    -- spent = tonumber(GET key or 0)
    -- if spent + amount > limit: return {0, spent}
    -- INCRBYFLOAT key amount; PEXPIREAT key expires_at_ms; return {1, spent + amount}
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple, Protocol, runtime_checkable

__all__ = ["BudgetStore", "MemoryBudgetStore", "Spend"]

# Sums of float reservations and settlements drift by ~1e-15 $; a reservation that reaches the
# limit exactly must not be refused over rounding.
_SLACK_USD = 1e-9
# Windows that have ended are swept once the table doubles past this size.
_SWEEP_MIN = 1024


class Spend(NamedTuple):
    """The store's answer to ``reserve``: whether the amount was ``granted`` (added), and the
    dollars ``spent_usd`` in the window (with it when granted, without it when not)."""

    granted: bool
    spent_usd: float


@runtime_checkable
class BudgetStore(Protocol):
    """Where budgets' spend lives. Both methods must be atomic with respect to other callers.

    ``key`` names one budget's window (``budget:{name}:{tenant}:{window}``); every process that
    uses the same key through a shared store draws from the same budget. ``expires_at`` (Unix
    seconds) is when the window is over and its key may be forgotten.
    """

    async def reserve(
        self, key: str, amount_usd: float, *, limit_usd: float, expires_at: float
    ) -> Spend:
        """Add ``amount_usd`` if the window's spend stays within ``limit_usd``; else nothing."""
        ...

    async def settle(self, key: str, amount_usd: float, *, expires_at: float) -> None:
        """Add ``amount_usd`` (negative: give part of a reservation back) without checking the
        limit; the spend never goes below zero."""
        ...


class MemoryBudgetStore:
    """Budgets in this process, atomic within one event loop; the default.

    Nothing is awaited between checking a budget and adding to it, so concurrent calls never
    reserve past the limit. Windows that have ended (by ``wall_clock``, Unix seconds) are
    forgotten.
    """

    __slots__ = ("_spent", "_sweep_at", "wall_clock")

    def __init__(self, *, wall_clock: Callable[[], float] = time.time) -> None:
        self.wall_clock = wall_clock
        # key -> (dollars spent and reserved, Unix time the window ends)
        self._spent: dict[str, tuple[float, float]] = {}
        self._sweep_at = _SWEEP_MIN

    def __repr__(self) -> str:
        return f"MemoryBudgetStore(windows={len(self._spent)})"

    async def reserve(
        self, key: str, amount_usd: float, *, limit_usd: float, expires_at: float
    ) -> Spend:
        return self.reserve_now(key, amount_usd, limit_usd=limit_usd, expires_at=expires_at)

    async def settle(self, key: str, amount_usd: float, *, expires_at: float) -> None:
        self.settle_now(key, amount_usd, expires_at=expires_at)

    def reserve_now(
        self, key: str, amount_usd: float, *, limit_usd: float, expires_at: float
    ) -> Spend:
        """``reserve`` as a plain function: the whole decision, with no await inside."""
        spent = self._spent.get(key, (0.0, expires_at))[0]
        if spent + amount_usd > limit_usd + _SLACK_USD:
            return Spend(False, spent)
        self._spent[key] = (spent + amount_usd, expires_at)
        if len(self._spent) > self._sweep_at:
            self._sweep()
        return Spend(True, spent + amount_usd)

    def settle_now(self, key: str, amount_usd: float, *, expires_at: float) -> None:
        """``settle`` as a plain function."""
        spent = self._spent.get(key, (0.0, expires_at))[0]
        self._spent[key] = (max(spent + amount_usd, 0.0), expires_at)

    def spent_usd(self, key: str) -> float:
        """Dollars spent and reserved in the window ``key``, for tests and metrics."""
        return self._spent.get(key, (0.0, 0.0))[0]

    def _sweep(self) -> None:
        now = self.wall_clock()
        for key in [key for key, (_, expires) in self._spent.items() if expires <= now]:
            del self._spent[key]
        self._sweep_at = max(_SWEEP_MIN, 2 * len(self._spent))
