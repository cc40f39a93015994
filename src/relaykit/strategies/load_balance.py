"""LoadBalance: spread calls across targets that can each answer, and fall through on failure.

Modes, each one pick in O(1) or O(k) for k targets (never a sort, never a pass per pass):

- ``"weighted"`` (the default): weighted random. ``weights={"a": 3, "b": 1}`` sends about three
  calls in four to ``a``; a target the weights leave out (or give 0) is asked only when every
  weighted target failed or was skipped. Without weights, every target weighs the same.
- ``"least_latency"``: the target with the lowest peak-EWMA latency (time to the answer, for a
  stream to its first chunk; ``strategies._latency``), ties to the one with fewer calls in
  flight. A target that slows down loses its traffic at once; its cost decays while nobody
  asks it (``decay_s``), so it is tried again and, if it recovered, gets traffic back.
- ``"p2c"``: power of two choices: two targets at random, and of those the one with the lower
  latency cost times calls in flight (plus one). Load-aware without asking every target.
- ``"cheapest"``: the target whose ``price`` makes this request cheapest (its prompt estimated
  at ~4 bytes per token plus its ``max_tokens``, or 256, at each target's input and output
  rates); a target without a price comes after every priced one, in the order given.

Whatever the mode, a target that cannot take the call now is skipped without a request: its
circuit is open, its rate limit or budget has no room (the middleware's ``refusal``,
``relaykit.contract.capabilities.AdmitsCalls``), or it failed for good earlier in the call. A
failure falls through to a next pick among the targets not yet tried, by the same rule as Fallback
(``fallback_on``), and a failed request counts as slow: at least twice the highest latency
cost of any target, so it moves to the back.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Final, Literal, TypeAlias, get_args

from relaykit._support.checks import is_number, positive_seconds
from relaykit.contract.error_rules import ErrorRule, check_rules
from relaykit.contract.errors import RelayError
from relaykit.contract.events import FallingBack
from relaykit.contract.pipeline import CallContext, Handler, Response
from relaykit.contract.schema import ChatRequest
from relaykit.contract.target import BoundTarget
from relaykit.contract.tokens import estimate_completion_tokens, estimate_prompt_tokens
from relaykit.strategies._latency import PeakEwma
from relaykit.strategies._route import (
    Gates,
    admitted,
    give_up,
    moves_on,
    note_failure,
    too_small_after,
)

__all__ = ["BalanceMode", "LoadBalance"]

BalanceMode: TypeAlias = Literal["weighted", "least_latency", "p2c", "cheapest"]
"""How LoadBalance picks the next target (see the module's docstring)."""

MODES: Final[tuple[str, ...]] = get_args(BalanceMode)


class LoadBalance:
    """Spreads calls across targets by weight, latency, load or price; a failure falls through.

    ``LoadBalance(weights={"a": 3, "b": 1})`` weighted random, ``LoadBalance("least_latency")``
    lowest peak-EWMA latency, ``LoadBalance("p2c")`` power of two choices on latency and calls
    in flight, ``LoadBalance("cheapest")`` lowest price for the request. Open circuits, full
    rate limits and spent budgets are skipped without a request; ``fallback_on`` takes
    Fallback's rules of which errors move on (by default all but invalid requests).
    Randomness comes from the Relay's clock (``FakeClock(seed=...)`` makes it repeatable).

    >>> Relay(targets=[east, west], strategy=LoadBalance("p2c"))
    """

    def __init__(
        self,
        mode: BalanceMode = "weighted",
        *,
        weights: Mapping[str, float] | None = None,
        fallback_on: Sequence[ErrorRule] | None = None,
        decay_s: float = 10.0,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(map(repr, MODES))}, got {mode!r}")
        if weights is not None:
            if mode != "weighted":
                raise ValueError(f"weights apply to mode 'weighted' only, not to {mode!r}")
            weights = _checked_weights(weights)
        self.mode: BalanceMode = mode
        self.weights = weights
        self.error_rules = check_rules("fallback_on", fallback_on) if fallback_on else None
        self.decay_s = positive_seconds("decay_s", decay_s)

    def __repr__(self) -> str:
        options = f", weights={dict(self.weights)!r}" if self.weights is not None else ""
        return f"LoadBalance({self.mode!r}{options})"

    def moves_on(self, error: RelayError) -> bool:
        """Whether ``error`` from one target sends the call to another (Fallback's rule)."""
        return moves_on(error, self.error_rules)

    def build(self, targets: Sequence[BoundTarget]) -> Handler:
        chain = tuple(targets)
        weights = self._weights_for(chain)
        if self.mode == "cheapest" and all(t.target.price is None for t in chain):
            raise ValueError(
                "mode 'cheapest' needs a price on the targets: Target(backend, "
                "price=Price(input_per_mtok=..., output_per_mtok=...)); none of "
                f"{', '.join(repr(t.name) for t in chain)} has one"
            )
        if len(chain) == 1:
            return chain[0].handler  # one target raises its own typed error
        return _Balancer(self, chain, weights)

    def _weights_for(self, chain: tuple[BoundTarget, ...]) -> tuple[float, ...]:
        if self.weights is None:
            return (1.0,) * len(chain)
        names = [t.name for t in chain]
        unknown = [name for name in self.weights if name not in names]
        if unknown:
            raise ValueError(
                f"weights name {', '.join(map(repr, unknown))}, which "
                f"{'is not a target' if len(unknown) == 1 else 'are not targets'} of this "
                f"chain; its targets are {', '.join(map(repr, names))}"
            )
        picked = tuple(float(self.weights.get(name, 0.0)) for name in names)
        if not any(picked):
            raise ValueError("weights must give at least one target a weight above 0")
        return picked


class _Balancer:
    """One chain's picks and the state they read: latency costs and calls in flight."""

    __slots__ = (
        "_cumulative",
        "_gates",
        "_strategy",
        "chain",
        "costs",
        "in_flight",
        "prices",
        "weights",
    )

    def __init__(
        self, strategy: LoadBalance, chain: tuple[BoundTarget, ...], weights: tuple[float, ...]
    ) -> None:
        self._strategy = strategy
        self.chain = chain
        self.weights = weights
        self._cumulative = tuple(itertools.accumulate(weights))
        self._gates = Gates(chain)
        self.costs = tuple(PeakEwma(strategy.decay_s) for _ in chain)
        self.in_flight = [0] * len(chain)
        self.prices = tuple(t.target.price for t in chain)

    async def __call__(self, request: ChatRequest, ctx: CallContext) -> Response:
        strategy, chain = self._strategy, self.chain
        tried: list[int] = []
        too_small: int | None = None
        this_pass = len(ctx.failures)
        last_failure: tuple[str, RelayError] | None = None
        tokens = _tokens(request) if strategy.mode == "cheapest" else (0, 0)
        while (index := self.pick(ctx, tried, tokens)) >= 0:
            tried.append(index)
            if not admitted(chain, index, ctx, self._gates, too_small):
                continue
            target = chain[index]
            if last_failure is not None and FallingBack in ctx.observed:
                ctx.emit(FallingBack(last_failure[0], target.name, last_failure[1]))
            started = ctx.clock.now()
            self.in_flight[index] += 1
            try:
                result = await target.handler(request, ctx)
            except RelayError as exc:
                note_failure(ctx, target, exc, started)
                if not strategy.moves_on(exc):
                    raise
                if exc.skip_reason is None:  # a request went and failed: count it as slow
                    self._observe_failure(index, ctx.clock.now() - started, ctx.clock.now())
                too_small = too_small_after(exc, target, too_small)
                last_failure = (target.name, exc)
                continue
            finally:
                self.in_flight[index] -= 1
            now = ctx.clock.now()
            self.costs[index].observe(now - started, now)
            return result
        raise give_up(chain, ctx, this_pass)

    def pick(self, ctx: CallContext, tried: Sequence[int], tokens: tuple[int, int]) -> int:
        """The index of the next target to try, not one of ``tried``; -1 when none is left.
        ``tokens`` (prompt, completion) are the request's estimate, for ``"cheapest"``."""
        if len(tried) == len(self.chain):
            return -1
        mode = self._strategy.mode
        if mode == "weighted":
            return self._weighted(ctx, tried)
        if mode == "least_latency":
            return self._least_latency(ctx, tried)
        if mode == "cheapest":
            return self._cheapest(tried, tokens)
        return self._two_choices(ctx, tried)

    def _cheapest(self, tried: Sequence[int], tokens: tuple[int, int]) -> int:
        best, best_usd = -1, math.inf
        for i, price in enumerate(self.prices):
            if i in tried:
                continue
            usd = math.inf if price is None else price.tokens_usd(*tokens)
            if best < 0 or usd < best_usd:
                best, best_usd = i, usd
        return best

    def _weighted(self, ctx: CallContext, tried: Sequence[int]) -> int:
        weights = self.weights
        if not tried:  # the first pick: a binary search of the running totals
            total = self._cumulative[-1]
            return bisect.bisect_right(self._cumulative, ctx.clock.random() * total)
        left = [i for i in range(len(weights)) if i not in tried]
        total = sum(weights[i] for i in left)
        if total <= 0:  # only targets without weight are left: in their order
            return left[0]
        point = ctx.clock.random() * total
        for i in left:
            point -= weights[i]
            if point < 0 and weights[i] > 0:
                return i
        return next(i for i in reversed(left) if weights[i] > 0)  # rounding at the very end

    def _least_latency(self, ctx: CallContext, tried: Sequence[int]) -> int:
        now = ctx.clock.now()
        best, best_key = -1, (math.inf, 0)
        for i, cost in enumerate(self.costs):
            if i in tried:
                continue
            key = (cost.cost(now), self.in_flight[i])
            if key < best_key:
                best, best_key = i, key
        return best

    def _two_choices(self, ctx: CallContext, tried: Sequence[int]) -> int:
        left = [i for i in range(len(self.chain)) if i not in tried] if tried else None
        count = len(left) if left is not None else len(self.chain)
        if count == 1:
            assert left is not None
            return left[0]
        first = int(ctx.clock.random() * count)
        second = int(ctx.clock.random() * (count - 1))
        if second >= first:  # a second, different choice, uniformly
            second += 1
        a, b = (left[first], left[second]) if left is not None else (first, second)
        return a if self._load(a, ctx) <= self._load(b, ctx) else b

    def _load(self, index: int, ctx: CallContext) -> tuple[float, int]:
        in_flight = self.in_flight[index]
        return (self.costs[index].cost(ctx.clock.now()) * (in_flight + 1), in_flight)

    def _observe_failure(self, index: int, elapsed_s: float, now: float) -> None:
        worst = max(cost.cost(now) for cost in self.costs)
        self.costs[index].observe(max(elapsed_s, 2.0 * worst), now)


def _tokens(request: ChatRequest) -> tuple[int, int]:
    """The request's prompt and completion tokens as RateLimit and Budget estimate them."""
    return estimate_prompt_tokens(request), estimate_completion_tokens(request)


def _checked_weights(weights: Mapping[str, float]) -> dict[str, float]:
    if not isinstance(weights, Mapping):
        raise ValueError(f"weights must map target names to numbers, got {weights!r}")
    checked: dict[str, float] = {}
    for name, weight in weights.items():
        if not is_number(weight) or not 0 <= weight < math.inf:
            raise ValueError(
                f"weights[{name!r}] must be a number >= 0 and finite (0: asked only when every "
                f"weighted target failed), got {weight!r}"
            )
        checked[name] = float(weight)
    if checked and not any(checked.values()):
        raise ValueError("weights must give at least one target a weight above 0")
    return checked
