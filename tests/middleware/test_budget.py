"""Budget: spend per tenant and window stays within the limit, refused before any request."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from relaykit import (
    AllTargetsFailedError,
    Budget,
    BudgetExceededError,
    Cache,
    OpenAICompatible,
    Price,
    ProviderError,
    Relay,
    Target,
)
from relaykit.stores.budget import BudgetStore, MemoryBudgetStore
from relaykit.testing import FakeClock, FakeProvider, Reply

BackendFactory = Callable[..., OpenAICompatible]
HI = [{"role": "user", "content": "hi"}]
# $1 per million tokens both ways: a token costs a micro-dollar, so costs read as token counts.
ONE = Price(input_per_mtok=1.0, output_per_mtok=1.0)
USAGE = {"prompt_tokens": 10, "completion_tokens": 90, "total_tokens": 100}
NOON = datetime(2026, 12, 1, 12, 0, tzinfo=UTC).timestamp()


class WallClock:
    """Unix time that moves only when the test moves it."""

    def __init__(self, now: float = NOON) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def budget(**options: Any) -> Budget:
    options.setdefault("wall_clock", WallClock())
    return Budget(**options)


def relay_with(
    provider: FakeProvider, backend: BackendFactory, layer: Budget, **options: Any
) -> Relay:
    return Relay(
        targets=[Target(backend(provider), name="main", price=ONE)],
        middleware=[layer],
        clock=FakeClock(),
        **options,
    )


def spent(layer: Budget, tenant: str = "*", window: str = "2026-12-01") -> float:
    assert isinstance(layer.store, MemoryBudgetStore)
    return layer.store.spent_usd(f"budget:{layer.name}:{tenant}:{window}")


# --- reserve, settle, refuse ------------------------------------------------------------------


async def test_a_call_settles_to_what_it_really_cost(
    provider: FakeProvider, backend: BackendFactory
) -> None:
    provider.script(Reply.ok("hi", usage=USAGE))
    layer = budget(limit_usd=1.0, per="all")

    answer = await relay_with(provider, backend, layer).acomplete(messages=HI, max_tokens=500)

    assert answer.relay is not None and answer.relay.cost_usd == pytest.approx(100e-6)
    assert spent(layer) == pytest.approx(100e-6)  # not the 500-token worst case


async def test_a_call_that_does_not_fit_is_refused_before_any_request(
    provider: FakeProvider, backend: BackendFactory
) -> None:
    # Each call reserves ~1,009 tokens' worth (prompt estimate + max_tokens) and spends 100.
    provider.default = Reply.ok("hi", usage=USAGE)
    layer = budget(limit_usd=0.0015, per="tenant", window="day", name="team-daily")
    relay = relay_with(provider, backend, layer)
    for _ in range(5):  # 5 x 100 spent: 500 micro-dollars, room for 1000 more
        await relay.acomplete(messages=HI, max_tokens=1000, tenant="acme")

    with pytest.raises(BudgetExceededError) as caught:
        await relay.acomplete(messages=HI, max_tokens=1000, tenant="acme")

    assert provider.request_count == 5
    error = caught.value
    assert (error.budget, error.tenant, error.retryable) == ("team-daily", "acme", False)
    assert error.resets_at == datetime(2026, 12, 2, tzinfo=UTC)
    assert error.retry_after == pytest.approx(12 * 3600)
    assert error.spent_usd == pytest.approx(500e-6)
    assert str(error).startswith("budget 'team-daily' for tenant 'acme' has $0.001 of $0.0015")
    assert "resets at 2026-12-02 00:00 UTC (in 12 h)" in str(error)


async def test_tenants_have_budgets_of_their_own(
    provider: FakeProvider, backend: BackendFactory
) -> None:
    provider.default = Reply.ok("hi", usage=USAGE)
    layer = budget(limit_usd=0.00105, per="tenant")
    relay = relay_with(provider, backend, layer)
    await relay.acomplete(messages=HI, max_tokens=1000, tenant="a")

    with pytest.raises(BudgetExceededError):
        await relay.acomplete(messages=HI, max_tokens=1000, tenant="a")
    await relay.acomplete(messages=HI, max_tokens=1000, tenant="b")

    assert provider.request_count == 2
    assert spent(layer, "a") == spent(layer, "b") == pytest.approx(100e-6)


async def test_the_budget_starts_over_when_its_window_does(
    provider: FakeProvider, backend: BackendFactory
) -> None:
    provider.default = Reply.ok("hi", usage=USAGE)
    clock = WallClock()
    layer = budget(limit_usd=0.00105, per="all", window="month", wall_clock=clock)
    relay = relay_with(provider, backend, layer)
    await relay.acomplete(messages=HI, max_tokens=1000)
    with pytest.raises(BudgetExceededError) as caught:
        await relay.acomplete(messages=HI, max_tokens=1000)

    clock.now = caught.value.resets_at.timestamp()  # 2027-01-01 00:00 UTC
    await relay.acomplete(messages=HI, max_tokens=1000)

    assert caught.value.resets_at == datetime(2027, 1, 1, tzinfo=UTC)
    assert provider.request_count == 2
    assert spent(layer, window="2027-01") == pytest.approx(100e-6)


async def test_concurrent_calls_never_reserve_past_the_limit(
    provider: FakeProvider, backend: BackendFactory
) -> None:
    # Each worst case is ~1,009 micro-dollars: four fit in 0.0045, the other sixteen must not go.
    provider.default = Reply.ok("hi", usage=USAGE)
    layer = budget(limit_usd=0.0045, per="all")
    relay = relay_with(provider, backend, layer)

    outcomes = await asyncio.gather(
        *(relay.acomplete(messages=HI, max_tokens=1000) for _ in range(20)),
        return_exceptions=True,
    )

    refused = [o for o in outcomes if isinstance(o, BudgetExceededError)]
    assert len(refused) == 16
    assert provider.request_count == 4
    assert spent(layer) == pytest.approx(400e-6)


async def test_a_failed_call_gives_its_reservation_back(
    provider: FakeProvider, backend: BackendFactory
) -> None:
    provider.script(Reply.server_error())
    layer = budget(limit_usd=1.0, per="all")

    with pytest.raises(ProviderError):
        await relay_with(provider, backend, layer).acomplete(messages=HI)

    assert spent(layer) == 0.0


async def test_a_call_that_could_never_fit_says_so(
    provider: FakeProvider, backend: BackendFactory
) -> None:
    layer = budget(limit_usd=0.001, per="all")

    with pytest.raises(BudgetExceededError, match="can never admit this call") as caught:
        await relay_with(provider, backend, layer).acomplete(messages=HI, max_tokens=5000)

    assert "5000 completion tokens" in str(caught.value)
    assert provider.request_count == 0


async def test_without_max_tokens_the_worst_case_is_default_max_tokens(
    provider: FakeProvider, backend: BackendFactory
) -> None:
    layer = budget(limit_usd=0.003, per="all", default_max_tokens=4000)

    with pytest.raises(BudgetExceededError, match="4000 completion tokens"):
        await relay_with(provider, backend, layer).acomplete(messages=HI)

    assert provider.request_count == 0


# --- streams ---------------------------------------------------------------------------------


async def test_a_stream_settles_from_its_usage_chunk(
    provider: FakeProvider, backend: BackendFactory
) -> None:
    provider.script(Reply.ok("hello", usage=USAGE))
    layer = budget(limit_usd=1.0, per="all")
    relay = relay_with(provider, backend, layer)

    stream = relay.astream(messages=HI, max_tokens=500, stream_options={"include_usage": True})
    await stream.completion()

    assert spent(layer) == pytest.approx(100e-6)


async def test_a_stream_without_usage_is_settled_at_an_estimate_never_zero(
    provider: FakeProvider, backend: BackendFactory
) -> None:
    provider.script(Reply.ok("y" * 400))  # ~100 tokens of text, no usage chunk asked for
    layer = budget(limit_usd=1.0, per="all")
    relay = relay_with(provider, backend, layer)

    stream = relay.astream(messages=HI, max_tokens=500)
    await stream.completion()

    assert 100e-6 <= spent(layer) < 500e-6


async def test_a_stream_closed_early_is_still_spent(
    provider: FakeProvider, backend: BackendFactory
) -> None:
    provider.script(Reply.ok("z" * 400, chunk_size=40))
    layer = budget(limit_usd=1.0, per="all")
    relay = relay_with(provider, backend, layer)

    stream = relay.astream(messages=HI, max_tokens=500)
    async for _ in stream:
        break
    await stream.aclose()

    assert 0.0 < spent(layer) < 500e-6


# --- where the budget sits ---------------------------------------------------------------------


async def test_a_cache_outside_the_budget_serves_hits_when_the_budget_is_spent(
    provider: FakeProvider, backend: BackendFactory
) -> None:
    provider.default = Reply.ok("hi", usage=USAGE)
    layer = budget(limit_usd=0.00105, per="all")
    relay = Relay(
        targets=[Target(backend(provider), price=ONE)],
        middleware=[Cache(), layer],
        clock=FakeClock(),
    )
    await relay.acomplete(messages=HI, max_tokens=1000)

    again = await relay.acomplete(messages=HI, max_tokens=1000)
    with pytest.raises(BudgetExceededError):
        await relay.acomplete(messages=[{"role": "user", "content": "new"}], max_tokens=1000)

    assert again.relay is not None and again.relay.cached
    assert provider.request_count == 1


async def test_a_target_over_its_budget_is_skipped_for_the_next(
    provider: FakeProvider, backend: BackendFactory
) -> None:
    async with FakeProvider() as spare:
        layer = budget(limit_usd=0.0005, per="all", name="premium")
        relay = Relay(
            targets=[
                Target(backend(provider), name="premium", price=ONE, middleware=[layer]),
                Target(backend(spare), name="spare", price=ONE),
            ],
            clock=FakeClock(),
        )

        answer = await relay.acomplete(messages=HI, max_tokens=1000)

    assert answer.relay is not None and answer.relay.target == "spare"
    assert provider.request_count == 0
    first = answer.relay.route[0]
    assert (first.target, first.outcome, first.reason) == (
        "premium",
        "skipped",
        "budget has no room",
    )


async def test_an_outer_budget_reserves_at_the_most_expensive_target_price(
    provider: FakeProvider, backend: BackendFactory
) -> None:
    # The pricey target could answer, so the worst case is at its price: 1,009 x 10 µ$.
    layer = budget(limit_usd=0.005, per="all")
    relay = Relay(
        targets=[
            Target(backend(provider), name="cheap", price=ONE),
            Target(
                backend(provider), name="pricey", price=Price(input_per_mtok=10, output_per_mtok=10)
            ),
        ],
        middleware=[layer],
        clock=FakeClock(),
    )

    with pytest.raises(BudgetExceededError, match="can never admit"):
        await relay.acomplete(messages=HI, max_tokens=1000)

    assert provider.request_count == 0


async def test_every_refused_target_shows_in_the_all_failed_error(
    provider: FakeProvider, backend: BackendFactory
) -> None:
    first = budget(limit_usd=0.0005, per="all", name="a-budget")
    second = budget(limit_usd=0.0005, per="all", name="b-budget")
    relay = Relay(
        targets=[
            Target(backend(provider), name="a", price=ONE, middleware=[first]),
            Target(backend(provider), name="b", price=ONE, middleware=[second]),
        ],
        clock=FakeClock(),
    )

    with pytest.raises(AllTargetsFailedError) as caught:
        await relay.acomplete(messages=HI, max_tokens=1000)

    assert [type(a.error) for a in caught.value.attempts] == [BudgetExceededError] * 2
    assert provider.request_count == 0


# --- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"limit_usd": -5}, "limit_usd must be a positive, finite number of US dollars"),
        ({"limit_usd": 0}, "limit_usd must be"),
        ({"limit_usd": 10, "window": "fortnight"}, "window must be one of 'minute', 'hour'"),
        ({"limit_usd": 10, "per": "user"}, "per must be one of 'tenant', 'all'"),
        ({"limit_usd": 10, "default_max_tokens": 0}, "default_max_tokens must be"),
        ({"limit_usd": 10, "store": object()}, "store must be a BudgetStore"),
        ({"limit_usd": 10, "name": ""}, "name must be a non-empty string"),
    ],
)
def test_bad_arguments_fail_at_construction(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Budget(**options)


def test_a_budget_over_a_target_without_a_price_fails_when_the_relay_is_built(
    provider: FakeProvider, backend: BackendFactory
) -> None:
    with pytest.raises(ValueError, match=r"target 'unpriced' has no price") as caught:
        Relay(
            targets=[
                Target(backend(provider), name="priced", price=ONE),
                Target(backend(provider), name="unpriced"),
            ],
            middleware=[Budget(limit_usd=10)],
        )

    assert "Target(..., price=Price(input_per_mtok=..., output_per_mtok=...))" in str(caught.value)


def test_a_target_budget_without_its_price_fails_when_the_relay_is_built(
    provider: FakeProvider, backend: BackendFactory
) -> None:
    with pytest.raises(ValueError, match=r"target 'solo' has no price"):
        Relay(targets=[Target(backend(provider), name="solo", middleware=[Budget(limit_usd=1)])])


def test_a_budget_from_a_config_file() -> None:
    relay = Relay.from_config(
        {
            "targets": [
                {
                    "base_url": "http://127.0.0.1:1/v1",
                    "model": "m",
                    "price": {"input_per_mtok": 1, "output_per_mtok": 2},
                }
            ],
            "middleware": [{"budget": {"limit_usd": 25, "per": "tenant", "window": "month"}}],
        }
    )

    assert repr(relay.middleware[0]) == (
        "Budget(limit_usd=25, per='tenant', window='month', name='25 USD per month')"
    )


def test_a_custom_store_is_anything_with_reserve_and_settle() -> None:
    assert isinstance(MemoryBudgetStore(), BudgetStore)
