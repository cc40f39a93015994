"""Budget: spend limits per tenant and calendar window, enforced before any request is sent.

Each call reserves its worst-case cost first: the prompt estimate (``relaykit.contract.tokens``)
plus its completion limit (``max_completion_tokens``, ``max_tokens``, else ``default_max_tokens``)
at the target's ``Price``. A call that does not fit is refused with ``BudgetExceededError``
and nothing is sent. When the answer is in, the reservation is settled to what the call
really cost (``relaykit.contract.pricing.answer_cost``: from its usage, or for a stream that
reported none, estimated from its text, never zero). Failed calls and cached answers cost nothing
and give their reservation back.

Reserving is one atomic step of the store (``relaykit.stores.budget``), so concurrent calls, in
one process or in many sharing a store, never reserve past the limit: the budget is overspent
only by how much a call's real cost exceeded its own worst case.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, Literal, TypeAlias, get_args

from relaykit._support.background import BackgroundTasks
from relaykit._support.checks import positive_number, whole_number
from relaykit.contract.errors import BudgetExceededError, InvalidRequestError
from relaykit.contract.pipeline import CallContext, Handler, Response
from relaykit.contract.pricing import answer_cost
from relaykit.contract.schema import ChatRequest
from relaykit.contract.stream import ChatStream
from relaykit.contract.tokens import estimate_completion_tokens, estimate_prompt_tokens
from relaykit.stores.budget import BudgetStore, MemoryBudgetStore
from relaykit.stores.health import health_of, report_health

__all__ = ["Budget", "BudgetPer", "BudgetWindow"]

BudgetWindow: TypeAlias = Literal["minute", "hour", "day", "week", "month"]
"""A calendar period in UTC: a budget starts over at the top of each minute or hour, at
midnight, on Monday at midnight, or on the first of the month."""
BudgetPer: TypeAlias = Literal["tenant", "all"]
"""Whose spend a budget counts: each ``tenant=`` of the call on its own, or all calls together."""

_WINDOWS: Final = get_args(BudgetWindow)
_PERS: Final = get_args(BudgetPer)
_ALL_TENANTS: Final = "*"


class Budget:
    """Keeps spend within ``limit_usd`` per tenant (or in all) per calendar window, in UTC.

    ``per="tenant"`` gives each ``tenant=`` its own budget (calls without a tenant share one);
    ``per="all"`` counts every call together. ``window`` is when it starts over: ``"minute"``,
    ``"hour"``, ``"day"``, ``"week"`` (Monday) or ``"month"``. ``name`` names it in errors and in
    the store's keys (``budget:{name}:{tenant}:{window start}``): budgets that share a store and
    a name share their spend, which is how several processes enforce one budget.

    Outside the targets (``Relay(middleware=[Budget(...)])``) a call reserves at the most
    expensive target's price, not knowing which will answer, and settles at the price of the
    one that did; on a target (``Target(..., middleware=[Budget(...)])``) it limits that target
    alone, and a refusal there moves the call on to the next target. Every target the budget
    covers needs a price, which ``Relay`` checks when it is built. Put a ``Cache`` outside the
    Budget so that cached answers, which cost nothing, are served even when it is spent.

    ``default_max_tokens`` is the completion a call that sets no ``max_tokens`` is assumed to
    reach in the worst case. ``wall_clock`` (Unix seconds) places calls in windows; the store
    keeps the spend, an in-process ``MemoryBudgetStore`` unless a shared one is given.

    >>> Relay(targets=[Target(backend, price=Price(input_per_mtok=2.5, output_per_mtok=10))],
    ...       middleware=[Budget(limit_usd=50, per="tenant", window="month")])
    """

    __slots__ = (
        "_health",
        "_settlements",
        "_window",
        "default_max_tokens",
        "limit_usd",
        "name",
        "per",
        "store",
        "wall_clock",
        "window",
    )

    def __init__(
        self,
        *,
        limit_usd: float,
        per: BudgetPer = "tenant",
        window: BudgetWindow = "day",
        name: str | None = None,
        store: BudgetStore | None = None,
        default_max_tokens: int = 4096,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.limit_usd = positive_number("limit_usd", limit_usd, unit="US dollars")
        if per not in _PERS:
            raise ValueError(f"per must be one of {', '.join(map(repr, _PERS))}, got {per!r}")
        if window not in _WINDOWS:
            raise ValueError(
                f"window must be one of {', '.join(map(repr, _WINDOWS))}, got {window!r}"
            )
        if name is not None and (not isinstance(name, str) or not name.strip()):
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        if store is not None and not isinstance(store, BudgetStore):
            raise ValueError(
                f"store must be a BudgetStore (async reserve and settle), got {store!r}"
            )
        if not callable(wall_clock):
            raise ValueError(
                f"wall_clock must be a function returning Unix seconds, got {wall_clock!r}"
            )
        self.default_max_tokens = whole_number("default_max_tokens", default_max_tokens, minimum=1)
        self.per: BudgetPer = per
        self.window: BudgetWindow = window
        self.name = name or f"{self.limit_usd:g} USD per {window}"
        self.wall_clock = wall_clock
        self.store: BudgetStore = (
            store if store is not None else MemoryBudgetStore(wall_clock=wall_clock)
        )
        self._window = _Window.containing(window, wall_clock())
        # A shared store's StoreDegraded / StoreRecovered events, passed on after each reserve.
        self._health = health_of(self.store)
        # Stream settlements run as tasks on a shared store (a finalizer cannot await).
        self._settlements = BackgroundTasks()

    def __repr__(self) -> str:
        return (
            f"Budget(limit_usd={self.limit_usd:g}, per={self.per!r}, window={self.window!r}, "
            f"name={self.name!r})"
        )

    async def __call__(
        self, request: ChatRequest, ctx: CallContext, call_next: Handler
    ) -> Response:
        price = ctx.price
        if price is None:  # the Relay refuses this when it is built; a hand-made pipeline may not
            raise InvalidRequestError(
                f"was not called: Budget {self.name!r} needs the price of every target it covers; "
                "give the target Target(price=Price(...))",
                target=ctx.target,
            )
        tenant = ctx.options.tenant if self.per == "tenant" else None
        window = self._current_window()
        key = f"budget:{self.name}:{_ALL_TENANTS if tenant is None else tenant}:{window.label}"
        prompt = estimate_prompt_tokens(request)
        completion = estimate_completion_tokens(request, default=self.default_max_tokens)
        reserved = price.tokens_usd(prompt, completion)
        if reserved > self.limit_usd:
            raise self._never_fits(reserved, prompt, completion, tenant, ctx)
        spend = await self.store.reserve(
            key, reserved, limit_usd=self.limit_usd, expires_at=window.ends
        )
        if self._health is not None:
            report_health(self._health, ctx)
        if not spend.granted:
            raise self._exceeded(spend.spent_usd, reserved, tenant, window, ctx)

        attempt = ctx.attempt
        try:
            result = await call_next(request, ctx)
        except BaseException:  # nothing answered, nothing billed: the reservation goes back
            await self.store.settle(key, -reserved, expires_at=window.ends)
            raise
        if isinstance(result, ChatStream):
            result.on_finish(_Settlement(self, key, reserved, window.ends, request, ctx, attempt))
            return result
        spent = 0.0
        if ctx.attempt != attempt and ctx.price is not None:  # else a cached answer: free
            spent = answer_cost(ctx.price, request, result).usd
        await self.store.settle(key, spent - reserved, expires_at=window.ends)
        return result

    async def aclose(self) -> None:
        """Wait for settlements of ended streams still being written to the store."""
        await self._settlements.drain()

    def _current_window(self) -> _Window:
        now = self.wall_clock()
        window = self._window
        if not window.starts <= now < window.ends:
            window = self._window = _Window.containing(self.window, now)
        return window

    def _settle_later(self, key: str, amount_usd: float, expires_at: float) -> None:
        if isinstance(self.store, MemoryBudgetStore):  # in-process: settled at once
            self.store.settle_now(key, amount_usd, expires_at=expires_at)
        else:  # finished outside any loop, spawn drops it: the worst case stays reserved
            self._settlements.spawn(self.store.settle(key, amount_usd, expires_at=expires_at))

    def _exceeded(
        self,
        spent_usd: float,
        cost_usd: float,
        tenant: str | None,
        window: _Window,
        ctx: CallContext,
    ) -> BudgetExceededError:
        left_s = max(window.ends - self.wall_clock(), 0.0)
        resets_at = datetime.fromtimestamp(window.ends, UTC)
        left = max(self.limit_usd - spent_usd, 0.0)
        return BudgetExceededError(
            f"budget {self.name!r}{_whose(tenant)} has {_usd(left)} of {_usd(self.limit_usd)} "
            f"left this {self.window} and this call may cost up to {_usd(cost_usd)}, so nothing "
            f"was sent. It resets at {resets_at:%Y-%m-%d %H:%M} UTC (in {_duration(left_s)}); "
            "raise Budget(limit_usd=...) or lower max_tokens",
            budget=self.name,
            tenant=tenant,
            limit_usd=self.limit_usd,
            spent_usd=spent_usd,
            cost_usd=cost_usd,
            resets_at=resets_at,
            retry_after=left_s,
            target=ctx.target,
        )

    def _never_fits(
        self,
        cost_usd: float,
        prompt: int,
        completion: int,
        tenant: str | None,
        ctx: CallContext,
    ) -> BudgetExceededError:
        window = self._current_window()
        return BudgetExceededError(
            f"budget {self.name!r}{_whose(tenant)} can never admit this call: its worst case "
            f"({prompt} prompt + {completion} completion tokens) costs {_usd(cost_usd)}, more "
            f"than the whole {_usd(self.limit_usd)} per {self.window}. Lower max_tokens, or "
            "raise limit_usd",
            budget=self.name,
            tenant=tenant,
            limit_usd=self.limit_usd,
            spent_usd=0.0,
            cost_usd=cost_usd,
            resets_at=datetime.fromtimestamp(window.ends, UTC),
            target=ctx.target,
        )


class _Settlement:
    """A stream's finalizer: settles the reservation with what the stream really cost.

    A stream that broke or was closed early was still generated and billed, so it is settled
    at its partial answer's cost too; only a replayed (cached) one is free.
    """

    __slots__ = ("attempt", "budget", "ctx", "expires_at", "key", "request", "reserved")

    def __init__(
        self,
        budget: Budget,
        key: str,
        reserved: float,
        expires_at: float,
        request: ChatRequest,
        ctx: CallContext,
        attempt: int,
    ) -> None:
        self.budget = budget
        self.key = key
        self.reserved = reserved
        self.expires_at = expires_at
        self.request = request
        self.ctx = ctx
        self.attempt = attempt

    def __call__(self, stream: ChatStream, error: object) -> None:
        price = self.ctx.price
        spent = 0.0
        if self.ctx.attempt != self.attempt and price is not None:
            spent = answer_cost(price, self.request, stream.partial()).usd
        self.budget._settle_later(self.key, spent - self.reserved, self.expires_at)


@dataclass(frozen=True, slots=True)
class _Window:
    """One calendar window: its label in store keys and its bounds in Unix seconds."""

    label: str
    starts: float
    ends: float

    @classmethod
    def containing(cls, window: BudgetWindow, now: float) -> _Window:
        moment = datetime.fromtimestamp(now, UTC)
        if window == "minute":
            start = moment.replace(second=0, microsecond=0)
            end, label = start + timedelta(minutes=1), f"{start:%Y-%m-%dT%H:%M}"
        elif window == "hour":
            start = moment.replace(minute=0, second=0, microsecond=0)
            end, label = start + timedelta(hours=1), f"{start:%Y-%m-%dT%H}"
        elif window == "day":
            start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
            end, label = start + timedelta(days=1), f"{start:%Y-%m-%d}"
        elif window == "week":
            midnight = moment.replace(hour=0, minute=0, second=0, microsecond=0)
            start = midnight - timedelta(days=midnight.weekday())
            year, week, _ = start.isocalendar()
            end, label = start + timedelta(days=7), f"{year}-W{week:02d}"
        else:
            start = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
            following = start.month % 12 + 1
            end = start.replace(year=start.year + (start.month == 12), month=following)
            label = f"{start:%Y-%m}"
        return cls(label, start.timestamp(), end.timestamp())


def _whose(tenant: str | None) -> str:
    return f" for tenant {tenant!r}" if tenant is not None else ""


def _usd(amount: float) -> str:
    # Cents for budgets, more digits for the fractions of a cent one call costs.
    return f"${amount:.2f}" if amount >= 1 or amount == 0 else f"${amount:.6f}".rstrip("0")


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{math.ceil(seconds)} s"
    minutes = math.ceil(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{hours // 24} days {hours % 24} h"
