"""Hedge: when the first target is slow to commit, ask the next one too; the first to commit wins.

A target commits when it answers, or, for a stream, when its first chunk arrives (a target's
handler returns a stream only then). The hedge starts after ``after_s``, or after the
``after_percentile`` of the waited-on target's recent commit times (so only the slowest few
percent are hedged). The first target to commit wins; every other request still running is
cancelled and its connection closed (a stream that committed a moment too late is closed), and
the route lists it as lost.

Hedging only ever answers slowness. A failure moves on at once to the next target, by
Fallback's rule (``fallback_on``); a failure that does not move on (an invalid request: every
target would refuse it) ends the call and cancels whatever else is running, so a deterministic
failure is never sent twice. The extra requests are bounded by a budget: ``budget=0.1`` allows
hedges of at most 10 % of the calls made in the last ``budget_window_s``; past it, a slow call
just waits. ``stats`` counts calls, hedges fired, hedges won and hedges the budget refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from relaykit._support.checks import fraction, positive_seconds, whole_number
from relaykit.contract.error_rules import ErrorRule, check_rules
from relaykit.contract.errors import RelayError, RouteStep
from relaykit.contract.events import HedgeStarted, HedgeWon
from relaykit.contract.pipeline import CallContext, Handler, Response
from relaykit.contract.schema import ChatRequest
from relaykit.contract.stream import ChatStream
from relaykit.contract.target import BoundTarget
from relaykit.middleware.retry_budget import RetryBudget
from relaykit.strategies._latency import LatencyWindow
from relaykit.strategies._route import Gates, admitted, give_up, moves_on, note_failure

__all__ = ["Hedge", "HedgeStats"]


@dataclass(slots=True)
class HedgeStats:
    """What a Hedge did so far: calls, hedged requests started, hedges that answered first,
    and hedges the budget refused."""

    calls: int = 0
    fired: int = 0
    won: int = 0
    denied: int = 0


class Hedge:
    """Starts the next target when the current one has not committed in time; first wins.

    ``after_s``: a fixed delay. ``after_percentile`` (the default, 0.95): the delay is that
    percentile of the waited-on target's last commit times; until ``min_samples`` of them
    are known there is no hedging. At most ``max_hedges`` extra requests per call, and at most
    ``budget`` (a share of calls, default 10 %) over ``budget_window_s``. Targets are asked
    in order; open circuits and full limits are skipped without a request.

    >>> Relay(targets=[primary, secondary], strategy=Hedge(after_percentile=0.95))
    """

    def __init__(
        self,
        *,
        after_s: float | None = None,
        after_percentile: float | None = None,
        max_hedges: int = 1,
        budget: float = 0.1,
        budget_window_s: float = 10.0,
        min_samples: int = 20,
        fallback_on: Sequence[ErrorRule] | None = None,
    ) -> None:
        if after_s is not None and after_percentile is not None:
            raise ValueError(
                "give after_s (a fixed delay) or after_percentile (a share of recent commit "
                "times), not both"
            )
        self.after_s = None if after_s is None else positive_seconds("after_s", after_s)
        if after_s is None:
            quantile = 0.95 if after_percentile is None else after_percentile
            if not (fraction("after_percentile", quantile) < 1):
                raise ValueError("after_percentile must be below 1 (0.95 = the 95th percentile)")
            self.after_percentile: float | None = quantile
        else:
            self.after_percentile = None
        self.max_hedges = whole_number("max_hedges", max_hedges, minimum=1)
        if not isinstance(budget, int | float) or isinstance(budget, bool) or not 0 <= budget <= 1:
            raise ValueError(
                f"budget must be a share of calls between 0 and 1 (0.1 = hedges add at most "
                f"10 % to the requests), got {budget!r}"
            )
        self.budget = float(budget)
        self.budget_window_s = positive_seconds("budget_window_s", budget_window_s)
        self.min_samples = whole_number("min_samples", min_samples, minimum=1)
        self.error_rules = check_rules("fallback_on", fallback_on) if fallback_on else None
        self.stats = HedgeStats()

    def __repr__(self) -> str:
        when = (
            f"after_s={self.after_s:g}"
            if self.after_s is not None
            else f"after_percentile={self.after_percentile:g}"
        )
        return f"Hedge({when}, max_hedges={self.max_hedges}, budget={self.budget:g})"

    def moves_on(self, error: RelayError) -> bool:
        """Whether ``error`` from one target sends the call to the next (Fallback's rule)."""
        return moves_on(error, self.error_rules)

    def build(self, targets: Sequence[BoundTarget]) -> Handler:
        chain = tuple(targets)
        if len(chain) == 1:
            return chain[0].handler  # one target raises its own typed error
        return _Hedger(self, chain)


@dataclass(slots=True, eq=False)
class _Request:
    """One request in flight: its target, when it started, and the context it runs on."""

    index: int
    target: BoundTarget
    started: float
    ctx: CallContext
    attempts_before: int
    hedge: bool


class _Hedger:
    """One chain's hedging: its budget and each target's recent commit times."""

    __slots__ = ("_budget", "_gates", "_latency", "_strategy", "chain")

    def __init__(self, strategy: Hedge, chain: tuple[BoundTarget, ...]) -> None:
        self._strategy = strategy
        self.chain = chain
        self._gates = Gates(chain)
        # Each call deposits ``budget`` and each hedge withdraws one: RetryBudget's arithmetic,
        # with no floor of free hedges per second.
        self._budget = RetryBudget(
            ratio=strategy.budget, min_per_s=0.0, ttl_s=strategy.budget_window_s
        )
        quantile = strategy.after_percentile or 0.5
        self._latency = tuple(LatencyWindow(quantile) for _ in chain)

    async def __call__(self, request: ChatRequest, ctx: CallContext) -> Response:
        strategy, chain, stats = self._strategy, self.chain, self._strategy.stats
        stats.calls += 1
        self._budget.deposit(ctx.clock.now())
        if ctx.route is None:
            ctx.route = []  # shared by the branches: each records its steps in one list
        this_pass = len(ctx.failures)
        running: dict[asyncio.Task[Response], _Request] = {}
        hedges = 0
        timer: asyncio.Future[None] | None = None
        try:
            next_index = self._start(request, ctx, running, 0, hedge=False)
            while running:
                newest = max(running.values(), key=lambda r: r.started)
                if timer is None and hedges < strategy.max_hedges and next_index < len(chain):
                    delay = self._delay(newest)
                    if delay is not None:
                        left = delay - (ctx.clock.now() - newest.started)
                        timer = asyncio.ensure_future(ctx.clock.sleep(max(left, 0.0)))
                waits: set[asyncio.Future[Any]] = set(running)
                if timer is not None:
                    waits.add(timer)
                done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                for task in [t for t in running if t in done]:
                    branch = running.pop(task)
                    try:
                        result = task.result()
                    except RelayError as exc:
                        note_failure(ctx, branch.target, exc, branch.started)
                        self._merge(ctx, branch, won=False)
                        if not strategy.moves_on(exc):
                            raise  # the finally cancels the rest: never sent twice
                        if not running:  # nothing else in flight: on to the next, as Fallback
                            next_index = self._start(request, ctx, running, next_index, hedge=False)
                            if timer is not None:
                                timer.cancel()
                                timer = None
                        continue
                    return await self._won(ctx, branch, result, running)
                if timer is not None and timer.done() and running:
                    timer = None
                    if not self._budget.withdraw(ctx.clock.now()):
                        stats.denied += 1
                        hedges = strategy.max_hedges  # out of budget: this call just waits
                        continue
                    after = next_index
                    next_index = self._start(request, ctx, running, next_index, hedge=True)
                    if next_index > after and len(running) > 1:
                        hedges += 1
                        stats.fired += 1
                        if HedgeStarted in ctx.observed:
                            hedged = chain[next_index - 1].name
                            waited_s = ctx.clock.now() - newest.started
                            ctx.emit(HedgeStarted(newest.target.name, hedged, waited_s))
            raise give_up(chain, ctx, this_pass)
        finally:
            if timer is not None:
                timer.cancel()
            for task, branch in list(running.items()):
                await self._cancel(task, branch, ctx, winner=None)

    def _delay(self, waiting_on: _Request) -> float | None:
        """How long after ``waiting_on`` started the next target is asked too; None: not yet
        (too few commit times known for the percentile)."""
        if self._strategy.after_s is not None:
            return self._strategy.after_s
        window = self._latency[waiting_on.index]
        if len(window) < self._strategy.min_samples:
            return None
        return window.value()

    def _start(
        self,
        request: ChatRequest,
        ctx: CallContext,
        running: dict[asyncio.Task[Response], _Request],
        index: int,
        *,
        hedge: bool,
    ) -> int:
        """Start the first target from ``index`` that may be asked; the index after it."""
        chain = self.chain
        while index < len(chain):
            if admitted(chain, index, ctx, self._gates, None):
                # The first request runs on the call's own context; one running beside others
                # gets a copy (its own target and attempt count), merged back when it ends.
                branch = ctx if not running else dataclasses.replace(ctx)
                target = chain[index]
                task = asyncio.ensure_future(target.handler(request, branch))
                running[task] = _Request(
                    index, target, ctx.clock.now(), branch, branch.attempt, hedge
                )
                return index + 1
            index += 1
        return index

    async def _won(
        self,
        ctx: CallContext,
        branch: _Request,
        result: Response,
        running: dict[asyncio.Task[Response], _Request],
    ) -> Response:
        now = ctx.clock.now()
        self._latency[branch.index].add(now - branch.started)
        losers = list(running.items())
        running.clear()
        for task, loser in losers:
            await self._cancel(task, loser, ctx, winner=_asked(branch))
        self._merge(ctx, branch, won=True)
        if branch.hedge:
            self._strategy.stats.won += 1
            if HedgeWon in ctx.observed:
                ctx.emit(
                    HedgeWon(branch.target.name, tuple(loser.target.name for _, loser in losers))
                )
        return result

    async def _cancel(
        self, task: asyncio.Task[Response], loser: _Request, ctx: CallContext, winner: str | None
    ) -> None:
        """Stop ``loser``'s request and close its connection; a stream that committed anyway
        is closed."""
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, RelayError):
            result = await task
            if isinstance(result, ChatStream):
                await result.aclose()
        elapsed = ctx.clock.now() - loser.started
        # Censored, but the truth is no shorter: without it a slow target's percentile would
        # only ever see its fast answers.
        self._latency[loser.index].add(elapsed)
        if winner is not None:
            ctx.record(
                RouteStep(_asked(loser), "lost", f"{winner!r} answered first", None, elapsed)
            )
        self._merge(ctx, loser, won=False)

    @staticmethod
    def _merge(ctx: CallContext, branch: _Request, *, won: bool) -> None:
        """Fold a copied context's attempts (and, for the winner, its target) back in."""
        if branch.ctx is ctx:
            return
        ctx.attempt += branch.ctx.attempt - branch.attempts_before
        if won:
            ctx.target = branch.ctx.target
            ctx.price = branch.ctx.price
            ctx.continued_from = branch.ctx.continued_from


def _asked(request: _Request) -> str:
    """The target a request was at: for a group, the member its context last entered."""
    if request.target.members and request.ctx.target is not None:
        return request.ctx.target
    return request.target.name
