"""LoadBalance: weights, least latency and two choices over real FakeProviders, skipping
targets that cannot take a call, falling through on failure, and clear errors for bad input."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from relaykit import (
    CircuitBreaker,
    Fallback,
    Group,
    InvalidRequestError,
    LoadBalance,
    LocalRateLimitError,
    OpenAICompatible,
    Price,
    Relay,
    RelayError,
    Target,
)
from relaykit.contract.capabilities import AdmitsCalls
from relaykit.contract.events import Event, FallingBack
from relaykit.testing import FakeClock, FakeProvider, Reply

HI = [{"role": "user", "content": "hi"}]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(seed=7)


@pytest.fixture
async def trio(clock: FakeClock) -> AsyncIterator[tuple[FakeProvider, FakeProvider, FakeProvider]]:
    """Three providers whose delays run on the test's FakeClock."""
    async with (
        FakeProvider(clock=clock) as a,
        FakeProvider(clock=clock) as b,
        FakeProvider(clock=clock) as c,
    ):
        yield a, b, c


def target(provider: FakeProvider, name: str, **options: Any) -> Target:
    backend = OpenAICompatible(provider.url, api_key="sk-test", model=f"{name}-model")
    return Target(backend, name=name, **options)


def counts(*providers: FakeProvider) -> tuple[int, ...]:
    return tuple(p.request_count for p in providers)


async def test_weights_are_respected_within_a_few_percent_over_many_calls(trio, clock) -> None:
    a, b, c = trio
    targets = [target(a, "a"), target(b, "b"), target(c, "c")]
    strategy = LoadBalance(weights={"a": 6, "b": 3, "c": 1})
    async with Relay(targets=targets, strategy=strategy, clock=clock) as relay:
        for _ in range(600):
            await relay.acomplete(messages=HI)
    shares = [n / 600 for n in counts(a, b, c)]
    assert shares == pytest.approx([0.6, 0.3, 0.1], abs=0.05)


async def test_a_target_without_weight_is_asked_only_when_the_weighted_ones_fail(
    trio, clock
) -> None:
    a, b, c = trio
    targets = [target(a, "a"), target(b, "b"), target(c, "spare")]
    strategy = LoadBalance(weights={"a": 1, "b": 1})
    async with Relay(targets=targets, strategy=strategy, clock=clock) as relay:
        for _ in range(20):
            await relay.acomplete(messages=HI)
        assert c.request_count == 0
        a.script(Reply.server_error())
        b.script(Reply.server_error())
        answer = await relay.acomplete(messages=HI)
    assert answer.relay is not None and answer.relay.target == "spare"


async def test_least_latency_moves_away_from_a_slowed_target_and_back_when_it_recovers(
    trio, clock
) -> None:
    a, b, _ = trio
    a.default = Reply.ok().delayed(0.2)
    b.default = Reply.ok().delayed(0.3)
    targets = [target(a, "a"), target(b, "b")]
    async with Relay(targets=targets, strategy=LoadBalance("least_latency"), clock=clock) as relay:
        for _ in range(20):
            await relay.acomplete(messages=HI)
        assert a.request_count >= 18  # the faster one takes the traffic
        a.default = Reply.ok().delayed(3.0)  # a slows down
        before = counts(a, b)
        for _ in range(20):
            await relay.acomplete(messages=HI)
        slowed = tuple(n - m for n, m in zip(counts(a, b), before, strict=True))
        assert slowed[0] <= 1 and slowed[1] >= 19  # one slow answer moves the traffic
        a.default = Reply.ok().delayed(0.2)  # a recovers
        clock.advance(60)  # while nobody asks it, its cost decays and it is tried again
        before = counts(a, b)
        for _ in range(20):
            await relay.acomplete(messages=HI)
        recovered = tuple(n - m for n, m in zip(counts(a, b), before, strict=True))
    assert recovered[0] >= 15


async def test_two_choices_sends_little_to_a_slow_target_and_spreads_the_rest(trio, clock) -> None:
    a, b, c = trio
    a.default = Reply.ok().delayed(5.0)
    b.default = c.default = Reply.ok().delayed(0.2)
    targets = [target(a, "a"), target(b, "b"), target(c, "c")]
    async with Relay(targets=targets, strategy=LoadBalance("p2c"), clock=clock) as relay:
        for _ in range(90):
            await relay.acomplete(messages=HI)
    slow, fast_b, fast_c = counts(a, b, c)
    assert slow <= 10
    assert fast_b >= 25 and fast_c >= 25


async def test_an_open_circuit_is_skipped_without_a_request(trio, clock) -> None:
    a, b, _ = trio
    a.script(Reply.server_error())
    guarded = target(a, "a", middleware=[CircuitBreaker(failures=1, cooldown_s=30)])
    strategy = LoadBalance(weights={"a": 9, "b": 1})
    async with Relay(targets=[guarded, target(b, "b")], strategy=strategy, clock=clock) as relay:
        first = await relay.acomplete(messages=HI)
        later = [await relay.acomplete(messages=HI) for _ in range(10)]
    assert first.relay is not None
    assert [(s.target, s.outcome) for s in first.relay.route] == [
        ("a", "failed"),
        ("b", "answered"),
    ]
    assert a.request_count == 1  # its circuit opened: no request since
    skips = [s for answer in later for s in answer.relay.route if s.outcome == "skipped"]  # type: ignore[union-attr]
    assert skips and {(s.target, s.reason) for s in skips} == {("a", "circuit open")}


async def test_a_failure_falls_through_to_another_target_and_says_so(trio, clock) -> None:
    a, b, c = trio
    a.default = b.default = Reply.server_error()
    seen: list[Event] = []
    targets = [target(a, "a"), target(b, "b"), target(c, "c")]
    async with Relay(
        targets=targets, strategy=LoadBalance(), clock=clock, listeners=[seen.append]
    ) as relay:
        answers = [await relay.acomplete(messages=HI) for _ in range(10)]
    routes = [answer.relay.route for answer in answers if answer.relay is not None]
    assert {route[-1].target for route in routes} == {"c"}
    assert all(s.target in ("a", "b") and s.outcome == "failed" for r in routes for s in r[:-1])
    assert any(len(route) == 3 for route in routes)  # a and b both failed before c, in some call
    fell = [e.to_target for e in seen if isinstance(e, FallingBack)]
    assert fell == [s.target for route in routes for s in route[1:]]


async def test_an_invalid_request_does_not_fall_through(trio, clock) -> None:
    a, b, _ = trio
    a.default = b.default = Reply.invalid_request("bad tool schema", param="tools")
    targets = [target(a, "a"), target(b, "b")]
    async with Relay(targets=targets, strategy=LoadBalance(), clock=clock) as relay:
        with pytest.raises(InvalidRequestError, match="bad tool schema"):
            await relay.acomplete(messages=HI)
    assert sum(counts(a, b)) == 1


async def test_load_balance_over_fallback_groups_answers_from_a_member(trio, clock) -> None:
    a, b, c = trio
    east = Group("east", [target(a, "east-1"), target(b, "east-2")], Fallback())
    west = Group("west", [target(c, "west-1")], Fallback())
    strategy = LoadBalance(weights={"east": 1})
    a.script(Reply.server_error())
    async with Relay(targets=[east, west], strategy=strategy, clock=clock) as relay:
        answer = await relay.acomplete(messages=HI)
    assert answer.relay is not None and answer.relay.target == "east-2"
    assert [(s.target, s.outcome) for s in answer.relay.route] == [
        ("east-1", "failed"),
        ("east-2", "answered"),
    ]
    assert c.request_count == 0


async def test_a_group_whose_members_all_fail_falls_through_and_every_try_is_listed(
    trio, clock
) -> None:
    a, b, c = trio
    a.script(Reply.server_error())
    b.script(Reply.overloaded())
    east = Group("east", [target(a, "east-1"), target(b, "east-2")], Fallback())
    strategy = LoadBalance(weights={"east": 1})
    async with Relay(targets=[east, target(c, "west")], strategy=strategy, clock=clock) as relay:
        answer = await relay.acomplete(messages=HI)
    assert answer.relay is not None and answer.relay.target == "west"
    assert [s.target for s in answer.relay.route] == ["east-1", "east-2", "west"]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: LoadBalance("fastest"), r"mode must be one of 'weighted', 'least_latency', 'p2c'"),
        (lambda: LoadBalance(weights={"a": -1}), r"weights\['a'\] must be a number >= 0"),
        (lambda: LoadBalance(weights={"a": float("nan")}), r"weights\['a'\]"),
        (lambda: LoadBalance(weights={"a": 0, "b": 0}), r"at least one target a weight above 0"),
        (lambda: LoadBalance("p2c", weights={"a": 1}), r"weights apply to mode 'weighted' only"),
        (lambda: LoadBalance(decay_s=0), r"decay_s must be"),
    ],
)
def test_bad_options_fail_at_construction_naming_the_field(make: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


def test_weights_for_targets_that_do_not_exist_fail_when_the_relay_is_built() -> None:
    targets = [
        Target(OpenAICompatible("http://127.0.0.1:9/v1", api_key="k", model="m"), name=n)
        for n in ("a", "b")
    ]
    with pytest.raises(ValueError, match=r"weights name 'z', which is not a target") as caught:
        Relay(targets=targets, strategy=LoadBalance(weights={"a": 1, "z": 2}))
    assert "its targets are 'a', 'b'" in str(caught.value)


async def test_a_middleware_of_your_own_can_refuse_a_target_before_it_is_picked(
    trio, clock
) -> None:
    a, b, _ = trio

    class Closed:
        """A per-target middleware that knows its target is closed for maintenance."""

        def __init__(self) -> None:
            self.calls = 0

        async def __call__(self, request: Any, ctx: Any, call_next: Any) -> Any:
            self.calls += 1
            return await call_next(request, ctx)

        def refusal(self, target: str, ctx: Any) -> RelayError | None:
            return LocalRateLimitError("is closed for maintenance", target=target)

    closed = Closed()
    assert isinstance(closed, AdmitsCalls)
    targets = [target(a, "a", middleware=[closed]), target(b, "b")]
    async with Relay(targets=targets, strategy=LoadBalance(), clock=clock) as relay:
        answers = [await relay.acomplete(messages=HI) for _ in range(10)]
    assert closed.calls == 0 and a.request_count == 0
    assert {answer.relay.target for answer in answers if answer.relay} == {"b"}


async def test_a_group_whose_every_member_has_an_open_circuit_is_skipped_without_a_request(
    trio, clock
) -> None:
    a, b, c = trio
    a.script(Reply.server_error())
    b.script(Reply.server_error())
    members = [
        target(a, "east-1", middleware=[CircuitBreaker(failures=1)]),
        target(b, "east-2", middleware=[CircuitBreaker(failures=1)]),
    ]
    east = Group("east", members, Fallback())
    strategy = LoadBalance(weights={"east": 100, "west": 1})
    async with Relay(targets=[east, target(c, "west")], strategy=strategy, clock=clock) as relay:
        first = await relay.acomplete(messages=HI)  # both members fail: their circuits open
        second = await relay.acomplete(messages=HI)
    assert first.relay is not None and first.relay.target == "west"
    assert second.relay is not None
    assert [(s.target, s.outcome, s.reason) for s in second.relay.route] == [
        ("east", "skipped", "circuit open"),
        ("west", "answered", ""),
    ]
    assert (a.request_count, b.request_count) == (1, 1)


async def test_two_choices_spreads_concurrent_calls_by_the_calls_in_flight() -> None:
    clock = FakeClock(auto_advance=False, seed=5)
    async with FakeProvider(clock=clock) as a, FakeProvider(clock=clock) as b:
        a.default = b.default = Reply.ok().delayed(1.0)
        targets = [target(a, "a"), target(b, "b")]
        async with Relay(targets=targets, strategy=LoadBalance("p2c"), clock=clock) as relay:
            calls = asyncio.gather(*(relay.acomplete(messages=HI) for _ in range(20)))
            await clock.drive(calls, step_s=None)
    assert counts(a, b) == (10, 10)  # no latency known yet: the less loaded one, every time


async def test_cheapest_sends_each_call_where_that_call_costs_least(trio, clock) -> None:
    a, b, c = trio
    targets = [
        target(a, "long-prompts", price=Price(input_per_mtok=0.1, output_per_mtok=10.0)),
        target(b, "long-answers", price=Price(input_per_mtok=5.0, output_per_mtok=0.5)),
        target(c, "unpriced"),
    ]
    long_prompt = [{"role": "user", "content": "word " * 8_000}]
    async with Relay(targets=targets, strategy=LoadBalance("cheapest"), clock=clock) as relay:
        first = await relay.acomplete(messages=long_prompt, max_tokens=10)
        second = await relay.acomplete(messages=HI, max_tokens=4_000)
        a.script(Reply.server_error())
        b.script(Reply.server_error())
        third = await relay.acomplete(messages=long_prompt, max_tokens=10)
    assert first.relay is not None and first.relay.target == "long-prompts"
    assert second.relay is not None and second.relay.target == "long-answers"
    assert third.relay is not None
    assert [s.target for s in third.relay.route] == ["long-prompts", "long-answers", "unpriced"]


def test_cheapest_without_any_price_fails_when_the_relay_is_built() -> None:
    targets = [
        Target(OpenAICompatible("http://127.0.0.1:9/v1", api_key="k", model="m"), name=n)
        for n in ("a", "b")
    ]
    with pytest.raises(ValueError, match=r"mode 'cheapest' needs a price on the targets"):
        Relay(targets=targets, strategy=LoadBalance("cheapest"))
