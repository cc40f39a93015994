"""Retry: which failures are tried again, how long it waits, and what it never does."""

from __future__ import annotations

import sys
from collections.abc import Callable

import pytest
from tenacity import stop_after_attempt, wait_fixed

from relaykit import (
    AllTargetsFailedError,
    AuthenticationError,
    ContextWindowError,
    FunctionBackend,
    InvalidRequestError,
    OpenAICompatible,
    ProviderError,
    QuotaExceededError,
    RateLimitError,
    Relay,
    RelayError,
    StreamInterruptedError,
    Target,
)
from relaykit.contract.events import Event, Retrying
from relaykit.contract.pipeline import CallContext, Handler, Middleware, Response
from relaykit.contract.schema import ChatRequest
from relaykit.middleware.retry import Backoff, GiveUp, Retry, RetryBudget, RetryPolicy
from relaykit.testing import FakeProvider, Reply
from relaykit.testing.clock import FakeClock

HI = [{"role": "user", "content": "hi"}]


def relay_for(provider: FakeProvider, *middleware: Middleware, clock: FakeClock) -> Relay:
    backend = OpenAICompatible(provider.url, api_key="sk-test", model="m")
    return Relay(targets=[backend], middleware=list(middleware), clock=clock)


def deadline_in(seconds: float) -> Middleware:
    async def deadline(request: ChatRequest, ctx: CallContext, call_next: Handler) -> Response:
        ctx.bounds = ctx.bounds.within(deadline=ctx.clock.now() + seconds)
        return await call_next(request, ctx)

    return deadline


def notes(error: BaseException) -> list[str]:
    return list(getattr(error, "__notes__", []))


# --- what is retried -------------------------------------------------------------------------


async def test_overloaded_provider_is_retried_until_it_answers(provider: FakeProvider) -> None:
    provider.script(Reply.overloaded(), Reply.overloaded(), Reply.ok("third time"))
    clock = FakeClock()
    async with relay_for(provider, Retry(attempts=3), clock=clock) as relay:
        answer = await relay.acomplete(messages=HI)
    assert answer.content == "third time"
    assert answer.relay is not None and answer.relay.attempts == 3
    assert provider.request_count == 3
    assert len(clock.sleeps) == 2


@pytest.mark.parametrize(
    ("reply", "error_type"),
    [
        (Reply.quota(), QuotaExceededError),
        (Reply.auth_error(), AuthenticationError),
        (
            Reply.invalid_request("temperature must be at most 2", param="temperature"),
            InvalidRequestError,
        ),
        (Reply.context_length(), ContextWindowError),
    ],
)
async def test_errors_a_retry_cannot_fix_are_sent_once(
    provider: FakeProvider, reply: Reply, error_type: type[RelayError]
) -> None:
    provider.default = reply
    clock = FakeClock()
    async with relay_for(provider, Retry(attempts=5), clock=clock) as relay:
        with pytest.raises(error_type):
            await relay.acomplete(messages=HI)
    assert provider.request_count == 1
    assert clock.sleeps == []


async def test_retry_on_replaces_the_default_rule(provider: FakeProvider) -> None:
    provider.script(Reply.invalid_request("flaky validator"), Reply.ok("fine"))
    clock = FakeClock()
    retry = Retry(retry_on=[InvalidRequestError], jitter=False)
    async with relay_for(provider, retry, clock=clock) as relay:
        answer = await relay.acomplete(messages=HI)
    assert answer.content == "fine"
    assert provider.request_count == 2


async def test_retry_on_predicate_can_refuse_a_retryable_error(provider: FakeProvider) -> None:
    provider.default = Reply.overloaded()
    retry = Retry(retry_on=[lambda error: error.status == 429])
    async with relay_for(provider, retry, clock=FakeClock()) as relay:
        with pytest.raises(ProviderError):
            await relay.acomplete(messages=HI)
    assert provider.request_count == 1


async def test_exhausted_retries_raise_the_last_error_with_a_note(provider: FakeProvider) -> None:
    provider.script(Reply.overloaded(), Reply.server_error(), Reply.error(502, "bad gateway"))
    async with relay_for(provider, Retry(attempts=3), clock=FakeClock()) as relay:
        with pytest.raises(ProviderError) as raised:
            await relay.acomplete(messages=HI)
    assert raised.value.status == 502
    assert raised.value.__cause__ is None and raised.value.__context__ is None
    assert "relaykit: gave up after 3 attempts" in notes(raised.value)
    assert provider.request_count == 3


# --- how long it waits -----------------------------------------------------------------------


async def test_backoff_doubles_and_stays_under_max_delay(provider: FakeProvider) -> None:
    provider.default = Reply.overloaded()
    clock = FakeClock()
    retry = Retry(attempts=6, base_delay_s=1.0, max_delay_s=5.0, jitter=False, budget=None)
    async with relay_for(provider, retry, clock=clock) as relay:
        with pytest.raises(ProviderError):
            await relay.acomplete(messages=HI)
    assert clock.sleeps == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert provider.request_count == 6


async def test_jittered_backoff_stays_under_its_exponential_ceiling(
    provider: FakeProvider,
) -> None:
    provider.default = Reply.overloaded()
    clock = FakeClock(seed=7)
    retry = Retry(attempts=5, base_delay_s=1.0, max_delay_s=3.0, budget=None)
    async with relay_for(provider, retry, clock=clock) as relay:
        with pytest.raises(ProviderError):
            await relay.acomplete(messages=HI)
    assert len(clock.sleeps) == 4
    assert all(0 <= s <= ceiling for s, ceiling in zip(clock.sleeps, [1, 2, 3, 3], strict=True))
    assert clock.sleeps != [1.0, 2.0, 3.0, 3.0]


async def test_retry_after_is_waited_exactly(provider: FakeProvider) -> None:
    provider.script(Reply.rate_limited(retry_after=7), Reply.ok("after the wait"))
    clock = FakeClock()
    async with relay_for(provider, Retry(), clock=clock) as relay:
        answer = await relay.acomplete(messages=HI)
    assert answer.content == "after the wait"
    assert clock.sleeps == [7.0]
    assert provider.request_count == 2


async def test_retry_after_longer_than_max_wait_surfaces_at_once(provider: FakeProvider) -> None:
    provider.script(Reply.rate_limited(retry_after=120), Reply.ok("too late"))
    clock = FakeClock()
    async with relay_for(provider, Retry(max_wait_s=60), clock=clock) as relay:
        with pytest.raises(RateLimitError) as raised:
            await relay.acomplete(messages=HI)
    assert raised.value.retry_after == 120
    assert any("max_wait_s=60" in note for note in notes(raised.value))
    assert clock.sleeps == []
    assert provider.request_count == 1


async def test_retry_after_past_the_deadline_surfaces_at_once(provider: FakeProvider) -> None:
    provider.script(Reply.rate_limited(retry_after=5), Reply.ok("too late"))
    clock = FakeClock()
    async with relay_for(provider, deadline_in(2.0), Retry(), clock=clock) as relay:
        with pytest.raises(RateLimitError):
            await relay.acomplete(messages=HI)
    assert clock.sleeps == []
    assert provider.request_count == 1


async def test_backoff_that_would_cross_the_deadline_raises_without_sleeping(
    provider: FakeProvider,
) -> None:
    provider.default = Reply.overloaded()
    clock = FakeClock()
    retry = Retry(attempts=5, base_delay_s=0.5, jitter=False)
    async with relay_for(provider, deadline_in(1.0), retry, clock=clock) as relay:
        with pytest.raises(ProviderError) as raised:
            await relay.acomplete(messages=HI)
    # 0.5 s fits in the 1 s deadline; the next wait (1 s) would cross it, so it is not taken.
    assert clock.sleeps == [0.5]
    assert provider.request_count == 2
    assert any("deadline" in note for note in notes(raised.value))


async def test_tenacity_wait_and_stop_are_honoured(provider: FakeProvider) -> None:
    provider.default = Reply.overloaded()
    clock = FakeClock()
    retry = Retry(attempts=10, wait=wait_fixed(2), stop=stop_after_attempt(2))
    async with relay_for(provider, retry, clock=clock) as relay:
        with pytest.raises(ProviderError) as raised:
            await relay.acomplete(messages=HI)
    assert clock.sleeps == [2.0]
    assert provider.request_count == 2
    assert "relaykit: gave up after 2 attempts" in notes(raised.value)


async def test_the_happy_path_never_imports_tenacity(
    provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tenacity", None)  # any import now fails
    retry = Retry(wait=wait_fixed(2), stop=stop_after_attempt(2))
    async with relay_for(provider, retry, clock=FakeClock()) as relay:
        answer = await relay.acomplete(messages=HI)
    assert answer.content is not None
    assert provider.request_count == 1


# --- the retry budget ------------------------------------------------------------------------


async def test_budget_keeps_retries_near_its_share_of_calls() -> None:
    upstream_calls = 0

    async def always_overloaded(request: ChatRequest) -> str:
        nonlocal upstream_calls
        upstream_calls += 1
        raise ProviderError("answered 503: overloaded", status=503)

    retry = Retry(attempts=3, jitter=False, budget=RetryBudget(ratio=0.2, min_per_s=0))
    relay = Relay(
        targets=[FunctionBackend(always_overloaded)], middleware=[retry], clock=FakeClock()
    )
    async with relay:
        for _ in range(50):
            with pytest.raises(ProviderError):
                await relay.acomplete(messages=HI)
    retries = upstream_calls - 50
    # Without a budget: 100 retries. With it: about 20 % of 50 calls.
    assert 9 <= retries <= 11


async def test_budget_none_retries_every_call() -> None:
    upstream_calls = 0

    async def always_overloaded(request: ChatRequest) -> str:
        nonlocal upstream_calls
        upstream_calls += 1
        raise ProviderError("answered 503: overloaded", status=503)

    retry = Retry(attempts=3, jitter=False, budget=None)
    relay = Relay(
        targets=[FunctionBackend(always_overloaded)], middleware=[retry], clock=FakeClock()
    )
    async with relay:
        for _ in range(10):
            with pytest.raises(ProviderError):
                await relay.acomplete(messages=HI)
    assert upstream_calls == 30


def test_budget_floor_allows_min_per_s_retries_per_window() -> None:
    budget = RetryBudget(ratio=0.0, min_per_s=1.0, ttl_s=10.0)
    granted = sum(budget.withdraw(100.0) for _ in range(20))
    assert granted == 10
    assert not budget.withdraw(105.0)
    assert budget.withdraw(110.5)  # the first withdrawals have expired


def test_budget_deposits_expire_after_ttl() -> None:
    budget = RetryBudget(ratio=1.0, min_per_s=0.0, ttl_s=10.0)
    for _ in range(3):
        budget.deposit(0.0)
    assert budget.withdraw(9.0)
    assert not budget.withdraw(20.0)


def test_each_retry_gets_its_own_default_budget() -> None:
    first, second = Retry(), Retry()
    assert first.budget is not None and second.budget is not None
    assert first.budget is not second.budget


# --- streams ---------------------------------------------------------------------------------


async def test_stream_failing_before_its_first_chunk_is_retried(provider: FakeProvider) -> None:
    provider.script(Reply.overloaded(), Reply.ok("streamed answer"))
    async with relay_for(provider, Retry(), clock=FakeClock()) as relay:
        answer = await relay.astream(messages=HI).completion()
    assert answer.content == "streamed answer"
    assert provider.request_count == 2
    assert all(r.stream for r in provider.requests)


async def test_stream_broken_after_its_first_chunk_is_not_retried(provider: FakeProvider) -> None:
    provider.script(Reply.ok("a long answer in many pieces", chunk_size=4).drop_after(2))
    clock = FakeClock()
    async with relay_for(provider, Retry(), clock=clock) as relay:
        stream = relay.astream(messages=HI)
        with pytest.raises(StreamInterruptedError):
            async for _ in stream:
                pass
    assert provider.request_count == 1
    assert clock.sleeps == []


# --- events and composition ------------------------------------------------------------------


async def test_retrying_event_carries_the_delay(provider: FakeProvider) -> None:
    provider.script(Reply.overloaded(), Reply.ok())
    seen: list[Event] = []
    backend = OpenAICompatible(provider.url, api_key="sk-test", model="m")
    relay = Relay(
        targets=[Target(backend, name="main")],
        middleware=[Retry(base_delay_s=0.5, jitter=False)],
        clock=FakeClock(),
        listeners=[seen.append],
    )
    async with relay:
        await relay.acomplete(messages=HI)
    retrying = [e for e in seen if isinstance(e, Retrying)]
    assert len(retrying) == 1
    event = retrying[0]
    assert (event.target, event.attempt, event.delay_s) == ("main", 2, 0.5)
    assert isinstance(event.error, ProviderError) and event.error.status == 503


async def test_outer_retry_lets_the_fallback_answer_without_sleeping() -> None:
    clock = FakeClock()
    async with FakeProvider() as first, FakeProvider() as second:
        first.default = Reply.overloaded()
        second.script(Reply.ok("from second"))
        relay = Relay(
            targets=[
                Target(OpenAICompatible(first.url, api_key="sk-test", model="m"), name="first"),
                Target(OpenAICompatible(second.url, api_key="sk-test", model="m"), name="second"),
            ],
            middleware=[Retry()],
            clock=clock,
        )
        async with relay:
            answer = await relay.acomplete(messages=HI)
        assert answer.content == "from second"
        assert answer.relay is not None
        assert (answer.relay.target, answer.relay.attempts) == ("second", 2)
        assert clock.sleeps == []
        assert (first.request_count, second.request_count) == (1, 1)


async def test_outer_retry_retries_the_whole_chain_when_every_target_failed() -> None:
    clock = FakeClock()
    async with FakeProvider() as first, FakeProvider() as second:
        first.default = second.default = Reply.overloaded()
        relay = Relay(
            targets=[
                Target(OpenAICompatible(first.url, api_key="sk-test", model="m"), name="first"),
                Target(OpenAICompatible(second.url, api_key="sk-test", model="m"), name="second"),
            ],
            middleware=[Retry(attempts=2, jitter=False)],
            clock=clock,
        )
        async with relay:
            with pytest.raises(AllTargetsFailedError) as raised:
                await relay.acomplete(messages=HI)
        assert "relaykit: gave up after 2 attempts" in notes(raised.value)
        assert clock.sleeps == [0.5]
        assert (first.request_count, second.request_count) == (2, 2)


# --- the policy on its own -------------------------------------------------------------------


def error(kind: type[RelayError] = ProviderError, **fields: float | None) -> RelayError:
    return kind("answered with an error", **fields)  # type: ignore[arg-type]


def test_policy_decides_without_a_clock() -> None:
    policy = RetryPolicy(attempts=3, base_delay_s=0.5, max_wait_s=60.0, jitter=False)
    assert policy.decide(error(), 1, 0.0, None) == Backoff(0.5)
    assert policy.decide(error(), 2, 0.0, None) == Backoff(1.0)
    assert policy.decide(error(), 3, 0.0, None) == GiveUp("relaykit: gave up after 3 attempts")
    assert policy.decide(error(QuotaExceededError), 1, 0.0, None) == GiveUp()  # says it itself
    assert policy.decide(error(RateLimitError, retry_after=7.0), 1, 0.0, None) == Backoff(7.0)
    too_long = policy.decide(error(RateLimitError, retry_after=61.0), 1, 0.0, None)
    assert isinstance(too_long, GiveUp) and "more than max_wait_s=60" in str(too_long.note)
    past_deadline = policy.decide(error(), 1, 0.0, remaining_s=0.4)
    assert isinstance(past_deadline, GiveUp) and "would pass the deadline" in str(
        past_deadline.note
    )
    assert policy.decide(error(), 1, 0.0, remaining_s=0.6) == Backoff(0.5)


def test_policy_jitter_scales_the_backoff_by_the_draw() -> None:
    policy = RetryPolicy(base_delay_s=2.0)
    assert policy.decide(error(), 2, 0.0, None, draw=0.25) == Backoff(1.0)


def test_policy_never_retries_a_broken_stream() -> None:
    policy = RetryPolicy(retry_on=(lambda _: True,))
    broken = StreamInterruptedError("broke", partial=None)
    assert policy.decide(broken, 1, 0.0, None) == GiveUp()


@pytest.mark.parametrize(
    ("make", "argument"),
    [
        (lambda: Retry(attempts=0), "attempts"),
        (lambda: Retry(base_delay_s=-1), "base_delay_s"),
        (lambda: Retry(max_delay_s=0.1, base_delay_s=1), "max_delay_s"),
        (lambda: Retry(max_delay_s=100, max_wait_s=60), "max_delay_s"),
        (lambda: Retry(retry_on=[ValueError]), "retry_on"),  # type: ignore[list-item]
        (lambda: Retry(retry_on=ProviderError), "retry_on"),  # type: ignore[arg-type]
        (lambda: Retry(wait=2), "wait"),  # type: ignore[arg-type]
        (lambda: Retry(budget=0.2), "budget"),  # type: ignore[arg-type]
        (lambda: RetryBudget(ratio=-0.1), "ratio"),
        (lambda: RetryBudget(ttl_s=0), "ttl_s"),
        (lambda: RetryBudget(min_per_s=-1), "min_per_s"),
    ],
)
def test_bad_configuration_fails_at_construction_naming_the_argument(
    make: Callable[[], object], argument: str
) -> None:
    with pytest.raises(ValueError, match=argument):
        make()


def test_retry_declares_it_does_not_stack() -> None:
    assert Retry.stacks_with_retry is False
