"""Fallback under an outer Retry: what the retry sees after every target failed."""

from __future__ import annotations

import pytest

from relaykit import (
    AllTargetsFailedError,
    CircuitBreaker,
    FunctionBackend,
    OpenAICompatible,
    ProviderError,
    QuotaExceededError,
    RateLimit,
    Relay,
    Retry,
    Target,
    Timeout,
)
from relaykit.contract.schema import ChatRequest
from relaykit.testing import FakeClock, FakeProvider, Reply

HI = [{"role": "user", "content": "hi"}]


def failing(name: str, error: Exception, calls: list[str]) -> FunctionBackend:
    async def fail(request: ChatRequest) -> str:
        calls.append(name)
        raise error

    return FunctionBackend(fail, name=name)


async def test_an_open_circuit_is_no_reason_for_the_retry_to_wait() -> None:
    calls: list[str] = []
    clock = FakeClock()
    guarded = Target(
        failing("a", ProviderError("answered 503", status=503), calls),
        middleware=[CircuitBreaker(failures=1, cooldown_s=30)],
    )
    relay = Relay(
        targets=[guarded, failing("b", ProviderError("answered 503", status=503), calls)],
        middleware=[Retry(attempts=3, jitter=False, base_delay_s=0.5, budget=None)],
        clock=clock,
    )
    with pytest.raises(AllTargetsFailedError):
        await relay.acomplete(messages=HI)
    assert clock.sleeps == [0.5, 1.0]  # backoff only; not the circuit's 30 s
    assert calls == ["a", "b", "b", "b"]  # a's circuit opened after its first failure


async def test_no_retry_once_every_target_failed_for_good() -> None:
    calls: list[str] = []
    clock = FakeClock()
    outcomes = iter([ProviderError("answered 503", status=503), QuotaExceededError("quota")])

    async def flaky(request: ChatRequest) -> str:
        calls.append("b")
        raise next(outcomes)

    relay = Relay(
        targets=[
            failing("a", QuotaExceededError("quota"), calls),
            FunctionBackend(flaky, name="b"),
        ],
        middleware=[Retry(attempts=5, jitter=False, budget=None)],
        clock=clock,
    )
    with pytest.raises(AllTargetsFailedError) as caught:
        await relay.acomplete(messages=HI)
    assert calls == ["a", "b", "b"]  # round 2: a skipped, b quota; then nothing left to try
    assert len(clock.sleeps) == 1
    assert caught.value.retryable is False


async def test_an_outer_rate_limit_keeps_one_bucket_across_retries() -> None:
    clock = FakeClock()
    async with FakeProvider() as provider:
        provider.script(Reply.overloaded(), Reply.ok("second try"))
        relay = Relay(
            targets=[Target(OpenAICompatible(provider.url, model="m"), name="a")],
            middleware=[Retry(attempts=3, budget=None), RateLimit(rpm=1)],
            clock=clock,
        )
        with pytest.raises(Exception, match="over its local limit"):
            await relay.acomplete(messages=HI)
        await relay.aclose()
    assert provider.request_count == 1  # the retry was held to the relay-wide limit


async def test_one_target_with_an_answer_check_raises_its_own_error() -> None:
    from relaykit import BadResponseError, Fallback, empty_answer

    relay = Relay(
        targets=[FunctionBackend(lambda request: "", name="only")],
        strategy=Fallback(fallback_on=[empty_answer]),
    )
    with pytest.raises(BadResponseError, match="rejected by empty_answer"):
        await relay.acomplete(messages=HI)


async def test_a_target_reused_in_routes_keeps_its_own_retry_on_every_route() -> None:
    calls: list[str | None] = []

    async def fails_every_other_call(request: ChatRequest) -> str:
        calls.append(request.model)
        if len(calls) % 2:
            raise ProviderError("answered 503", status=503)
        return "ok"

    shared = Target(
        FunctionBackend(fails_every_other_call, name="a"), middleware=[Retry(budget=None)]
    )
    relay = Relay(targets=[shared], routes={"smart": [shared]}, clock=FakeClock())
    default = await relay.acomplete(messages=HI)
    routed = await relay.acomplete(model="smart", messages=HI)
    assert default.relay is not None and routed.relay is not None
    assert (default.relay.attempts, routed.relay.attempts) == (2, 2)  # retried on both routes
    assert calls == [None, None, "smart", "smart"]


def test_all_targets_failed_survives_copy_with_its_retry_facts() -> None:
    import copy

    from relaykit.contract.errors import Attempt

    error = AllTargetsFailedError(
        [Attempt("a", ProviderError("answered 503", status=503, retry_after=2.0), 0.1)],
        exhausted=True,
    )
    clone = copy.copy(error)
    assert isinstance(clone, AllTargetsFailedError)
    assert (clone.retryable, clone.retry_after, len(clone.attempts)) == (False, 2.0, 1)


def test_splitting_an_exhausted_group_keeps_it_not_retryable() -> None:
    from relaykit.contract.errors import Attempt

    error = AllTargetsFailedError(
        [
            Attempt("a", ProviderError("answered 503", status=503), 0.1),
            Attempt("b", QuotaExceededError("quota"), 0.1),
        ],
        exhausted=True,
    )
    matched, rest = error.split(ProviderError)
    assert isinstance(matched, AllTargetsFailedError) and matched.retryable is False
    assert rest is not None and len(rest.exceptions) == 1


# --- Retry inside a target -------------------------------------------------------------------


async def test_a_retry_inside_a_target_does_not_retry_a_timeout_while_another_can_answer() -> None:
    clock = FakeClock(auto_advance=False)
    async with FakeProvider(clock=clock) as silent, FakeProvider(clock=clock) as backup:
        silent.default = Reply.hang()
        backup.script(Reply.ok("from backup"))
        relay = Relay(
            targets=[
                Target(
                    OpenAICompatible(silent.url, model="m"),
                    name="silent",
                    middleware=[Retry(attempts=3), Timeout(attempt_s=30)],
                ),
                Target(OpenAICompatible(backup.url, model="m"), name="backup"),
            ],
            clock=clock,
        )
        async with relay:
            started = clock.now()
            answer = await clock.drive(relay.acomplete(messages=HI))
    assert answer.content == "from backup"
    assert silent.request_count == 1  # one attempt timeout, not three
    assert clock.now() - started == pytest.approx(30, abs=1.0)


async def test_a_retry_inside_the_last_target_still_retries_a_timeout() -> None:
    clock = FakeClock(auto_advance=False)
    async with FakeProvider(clock=clock) as flaky:
        flaky.script(Reply.hang(), Reply.ok("second try"))
        relay = Relay(
            targets=[
                Target(
                    OpenAICompatible(flaky.url, model="m"),
                    name="only",
                    middleware=[Retry(attempts=3), Timeout(attempt_s=5)],
                )
            ],
            clock=clock,
        )
        async with relay:
            answer = await clock.drive(relay.acomplete(messages=HI))
    assert answer.content == "second try"
    assert flaky.request_count == 2


async def test_a_retry_inside_a_target_honours_retry_after_on_the_same_provider_first() -> None:
    clock = FakeClock()
    async with FakeProvider() as limited, FakeProvider() as backup:
        limited.script(Reply.rate_limited(retry_after=2), Reply.ok("from limited"))
        relay = Relay(
            targets=[
                Target(
                    OpenAICompatible(limited.url, model="m"),
                    name="limited",
                    middleware=[Retry(attempts=3)],
                ),
                Target(OpenAICompatible(backup.url, model="m"), name="backup"),
            ],
            clock=clock,
        )
        async with relay:
            answer = await relay.acomplete(messages=HI)
    assert answer.content == "from limited"
    assert clock.sleeps == [2.0]
    assert backup.request_count == 0


async def test_a_retry_around_the_chain_moves_a_429_to_the_fallback_without_waiting() -> None:
    clock = FakeClock()
    async with FakeProvider() as limited, FakeProvider() as backup:
        limited.script(Reply.rate_limited(retry_after=2))
        backup.script(Reply.ok("from backup"))
        relay = Relay(
            targets=[
                Target(OpenAICompatible(limited.url, model="m"), name="limited"),
                Target(OpenAICompatible(backup.url, model="m"), name="backup"),
            ],
            middleware=[Retry(attempts=3)],
            clock=clock,
        )
        async with relay:
            answer = await relay.acomplete(messages=HI)
    assert answer.content == "from backup"
    assert clock.sleeps == []
