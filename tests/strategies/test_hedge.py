"""Hedge: a slow first target gets a second request; the first to commit wins, the loser is
cancelled and its connection closed, within a budget of extra requests. Time is a FakeClock
that the providers' delays run on too, driven from one wake-up to the next."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import pytest
from structlog.testing import capture_logs

from relaykit import (
    Fallback,
    Group,
    Hedge,
    InvalidRequestError,
    Logging,
    OpenAICompatible,
    Relay,
    Target,
)
from relaykit.contract.events import Event, HedgeStarted, HedgeWon
from relaykit.testing import FakeClock, FakeProvider, Reply

HI = [{"role": "user", "content": "hi"}]
T = TypeVar("T")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(auto_advance=False, seed=3)


@pytest.fixture
async def pair(clock: FakeClock) -> AsyncIterator[tuple[FakeProvider, FakeProvider]]:
    async with FakeProvider(clock=clock) as a, FakeProvider(clock=clock) as b:
        yield a, b


def target(provider: FakeProvider, name: str) -> Target:
    return Target(OpenAICompatible(provider.url, api_key="sk-test", model=f"{name}-m"), name=name)


async def until_closed(provider: FakeProvider) -> int:
    """The provider's open connections, once closed ones have been noticed."""
    for _ in range(200):
        if provider.open_connections == 0:
            break
        await asyncio.sleep(0)
    return provider.open_connections


async def test_a_slow_first_target_is_hedged_and_the_loser_is_cancelled_and_closed(
    pair, clock
) -> None:
    a, b = pair
    a.script(Reply.ok("slow").delayed(10.0))
    b.script(Reply.ok("fast").delayed(0.1))
    seen: list[Event] = []
    hedge = Hedge(after_s=0.5, budget=1.0)
    relay = Relay(
        targets=[target(a, "a"), target(b, "b")],
        strategy=hedge,
        clock=clock,
        listeners=[seen.append],
    )
    async with relay:
        started = clock.now()
        answer = await clock.drive(relay.acomplete(messages=HI), step_s=None)
        assert answer.content == "fast"
        assert clock.now() - started == pytest.approx(0.6)
        assert answer.relay is not None and answer.relay.target == "b"
        assert answer.relay.attempts == 2
        assert [(s.target, s.outcome, s.reason) for s in answer.relay.route] == [
            ("a", "lost", "'b' answered first"),
            ("b", "answered", ""),
        ]
        assert await until_closed(a) == 0  # the cancelled request's connection is gone
    assert (a.request_count, b.request_count) == (1, 1)
    assert (hedge.stats.fired, hedge.stats.won) == (1, 1)
    assert [type(e) for e in seen if isinstance(e, HedgeStarted | HedgeWon)] == [
        HedgeStarted,
        HedgeWon,
    ]


async def test_a_first_target_that_commits_in_time_is_not_hedged(pair, clock) -> None:
    a, b = pair
    a.script(Reply.ok("in time").delayed(0.3))
    hedge = Hedge(after_s=0.5, budget=1.0)
    async with Relay(targets=[target(a, "a"), target(b, "b")], strategy=hedge, clock=clock) as r:
        answer = await clock.drive(r.acomplete(messages=HI), step_s=None)
    assert answer.content == "in time" and b.request_count == 0
    assert hedge.stats.fired == 0


async def test_a_hedged_stream_wins_at_its_first_chunk_and_the_slow_stream_is_closed(
    pair, clock
) -> None:
    a, b = pair
    a.script(Reply.ok("slow stream").delayed(10.0))
    b.script(Reply.ok("fast stream").delayed(0.2))
    hedge = Hedge(after_s=0.5, budget=1.0)
    async with Relay(targets=[target(a, "a"), target(b, "b")], strategy=hedge, clock=clock) as r:

        async def read() -> str:
            stream = await r.astream(messages=HI)
            return (await stream.completion()).content or ""

        assert await clock.drive(read(), step_s=None) == "fast stream"
        assert await until_closed(a) == 0


async def test_a_failure_moves_on_at_once_without_waiting_for_the_hedge_delay(pair, clock) -> None:
    a, b = pair
    a.script(Reply.server_error())
    hedge = Hedge(after_s=5.0, budget=1.0)
    async with Relay(targets=[target(a, "a"), target(b, "b")], strategy=hedge, clock=clock) as r:
        started = clock.now()
        answer = await clock.drive(r.acomplete(messages=HI), step_s=None)
    assert answer.relay is not None and answer.relay.target == "b"
    assert clock.now() == started  # no wait: a failure is not slowness
    assert [s.outcome for s in answer.relay.route] == ["failed", "answered"]
    assert hedge.stats.fired == 0


async def test_a_deterministic_failure_is_never_hedged(pair, clock) -> None:
    a, b = pair
    a.script(Reply.invalid_request("bad tool schema", param="tools"))
    async with Relay(
        targets=[target(a, "a"), target(b, "b")],
        strategy=Hedge(after_s=0.5, budget=1.0),
        clock=clock,
    ) as r:
        with pytest.raises(InvalidRequestError, match="bad tool schema"):
            await clock.drive(r.acomplete(messages=HI), step_s=None)
    assert b.request_count == 0


async def test_a_deterministic_failure_after_the_hedge_started_cancels_the_hedge(
    pair, clock
) -> None:
    a, b = pair
    a.script(Reply.invalid_request("bad tool schema", param="tools").delayed(1.0))
    b.script(Reply.ok().delayed(10.0))
    async with Relay(
        targets=[target(a, "a"), target(b, "b")],
        strategy=Hedge(after_s=0.5, budget=1.0),
        clock=clock,
    ) as r:
        with pytest.raises(InvalidRequestError):
            await clock.drive(r.acomplete(messages=HI), step_s=None)
        assert b.request_count == 1
        assert await until_closed(b) == 0


async def test_without_budget_a_slow_call_just_waits(pair, clock) -> None:
    a, b = pair
    a.script(Reply.ok("slow").delayed(2.0))
    hedge = Hedge(after_s=0.5, budget=0.0)
    async with Relay(targets=[target(a, "a"), target(b, "b")], strategy=hedge, clock=clock) as r:
        answer = await clock.drive(r.acomplete(messages=HI), step_s=None)
    assert answer.content == "slow" and b.request_count == 0
    assert (hedge.stats.fired, hedge.stats.denied) == (0, 1)


async def test_the_percentile_delay_comes_from_recent_commit_times(pair, clock) -> None:
    a, b = pair
    a.default = Reply.ok("usual").delayed(0.2)
    hedge = Hedge(after_percentile=0.9, min_samples=5, budget=1.0)
    async with Relay(targets=[target(a, "a"), target(b, "b")], strategy=hedge, clock=clock) as r:
        for _ in range(5):
            await clock.drive(r.acomplete(messages=HI), step_s=None)
        assert b.request_count == 0
        a.script(Reply.ok("slow").delayed(5.0))
        b.script(Reply.ok("hedged").delayed(0.1))
        started = clock.now()
        answer = await clock.drive(r.acomplete(messages=HI), step_s=None)
    assert answer.content == "hedged"
    assert clock.now() - started == pytest.approx(0.3)  # hedged after the 0.2 s percentile


async def latencies(relay: Relay, clock: FakeClock, calls: int) -> list[float]:
    spent = []
    for _ in range(calls):
        started = clock.now()
        await clock.drive(relay.acomplete(messages=HI), step_s=None)
        spent.append(clock.now() - started)
    return sorted(spent)


def heavy_tail(request: Any, counter: list[int]) -> Reply:
    counter[0] += 1
    return Reply.ok().delayed(8.0 if counter[0] % 20 == 0 else 0.1)


async def test_hedging_cuts_the_p99_of_a_heavy_tail_within_the_budget(pair, clock) -> None:
    a, b = pair
    b.default = Reply.ok().delayed(0.1)
    calls = 200
    count = [0]
    a.default = lambda request: heavy_tail(request, count)
    targets = [target(a, "a"), target(b, "b")]
    async with Relay(targets=targets, strategy=Fallback(), clock=clock) as plain:
        without = await latencies(plain, clock, calls)
    count[0] = 0
    hedge = Hedge(after_s=0.5)  # the default budget: 10 % extra requests
    async with Relay(targets=targets, strategy=hedge, clock=clock) as hedged:
        with_hedge = await latencies(hedged, clock, calls)
    p99 = int(0.99 * calls) - 1
    assert without[p99] == pytest.approx(8.0)
    assert with_hedge[p99] == pytest.approx(0.6)
    assert b.request_count <= 0.1 * calls  # the extra requests stay within the budget
    assert hedge.stats.fired == b.request_count == hedge.stats.won


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"after_s": 1, "after_percentile": 0.9}, "not both"),
        ({"after_s": -1}, "after_s must be"),
        ({"after_percentile": 95}, "after_percentile must be"),
        ({"after_percentile": 1.0}, "after_percentile must be below 1"),
        ({"budget": 1.5}, "budget must be a share of calls between 0 and 1"),
        ({"max_hedges": 0}, "max_hedges must be"),
    ],
)
def test_bad_options_fail_at_construction_naming_the_field(options: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Hedge(**options)


async def test_logging_writes_a_line_for_the_hedge_and_one_for_its_win(pair, clock) -> None:
    a, b = pair
    a.script(Reply.ok("slow").delayed(10.0))
    b.script(Reply.ok("fast").delayed(0.1))
    hedge = Hedge(after_s=0.5, budget=1.0)
    targets = [target(a, "a"), target(b, "b")]
    with capture_logs() as logs:
        async with Relay(targets=targets, strategy=hedge, clock=clock, middleware=[Logging()]) as r:
            await clock.drive(r.acomplete(messages=HI), step_s=None)
    lines = {entry["event"]: entry for entry in logs}
    assert lines["relaykit.hedged"]["target"] == "a"
    assert lines["relaykit.hedged"]["to_target"] == "b"
    assert lines["relaykit.hedged"]["after_ms"] == pytest.approx(500)
    assert lines["relaykit.hedge_won"]["over"] == ["a"]


async def test_hedge_over_fallback_groups_names_the_member_that_answered(clock) -> None:
    async with (
        FakeProvider(clock=clock) as e1,
        FakeProvider(clock=clock) as e2,
        FakeProvider(clock=clock) as w1,
    ):
        e1.script(Reply.server_error())
        e2.script(Reply.ok("east, slowly").delayed(5.0))
        w1.script(Reply.ok("west").delayed(0.1))
        east = Group("east", [target(e1, "east-1"), target(e2, "east-2")], Fallback())
        west = Group("west", [target(w1, "west-1")], Fallback())
        hedge = Hedge(after_s=1.0, budget=1.0)
        async with Relay(targets=[east, west], strategy=hedge, clock=clock) as relay:
            answer = await clock.drive(relay.acomplete(messages=HI), step_s=None)
            assert await until_closed(e2) == 0
    assert answer.content == "west"
    assert answer.relay is not None and answer.relay.target == "west-1"
    assert [(s.target, s.outcome) for s in answer.relay.route] == [
        ("east-1", "failed"),
        ("east-2", "lost"),
        ("west-1", "answered"),
    ]
