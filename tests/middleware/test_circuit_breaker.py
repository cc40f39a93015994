"""CircuitBreaker: a failing target is skipped without a request until a probe finds it healthy."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from relaykit import (
    CircuitOpenError,
    ContextWindowError,
    InvalidRequestError,
    LocalRateLimitError,
    OpenAICompatible,
    ProviderError,
    QuotaExceededError,
    RateLimitError,
    Relay,
    StreamInterruptedError,
    Target,
)
from relaykit.contract.events import CircuitClosed, CircuitOpened, Event
from relaykit.contract.schema import ChatRequest
from relaykit.middleware.circuit_breaker import CircuitBreaker
from relaykit.stores.breaker import BreakerPolicy, MemoryBreakerStore, Outcome, Transition
from relaykit.testing import FakeClock, FakeProvider, FunctionBackend, Reply

HI = [{"role": "user", "content": "hi"}]


@pytest.fixture
async def providers() -> AsyncIterator[tuple[FakeProvider, FakeProvider]]:
    async with FakeProvider() as a, FakeProvider() as b:
        yield a, b


def guarded(
    provider: FakeProvider, breaker: CircuitBreaker | None, name: str = "primary"
) -> Target:
    backend = OpenAICompatible(provider.url, api_key="sk-test", model="m")
    return Target(backend, name=name, middleware=[breaker] if breaker else [])


def circuit_events(events: list[Event]) -> list[Event]:
    return [e for e in events if isinstance(e, CircuitOpened | CircuitClosed)]


async def fail_times(relay: Relay, n: int, error: type[Exception] = ProviderError) -> None:
    for _ in range(n):
        with pytest.raises(error):
            await relay.acomplete(messages=HI)


# --- opening -----------------------------------------------------------------------------------


async def test_five_consecutive_503s_open_the_circuit_and_the_sixth_call_sends_nothing(
    provider: FakeProvider,
) -> None:
    provider.default = Reply.overloaded()
    async with Relay(targets=[guarded(provider, CircuitBreaker())], clock=FakeClock()) as relay:
        await fail_times(relay, 5)
        with pytest.raises(CircuitOpenError) as caught:
            await relay.acomplete(messages=HI)
    assert provider.request_count == 5
    assert caught.value.retry_after == 5.0
    assert str(caught.value) == (
        "target 'primary' is skipped: its circuit is open for 5.0 s more "
        "after 5 consecutive failures"
    )


async def test_open_circuit_sends_the_call_to_the_fallback_at_once(
    providers: tuple[FakeProvider, FakeProvider],
) -> None:
    a, b = providers
    a.default = Reply.overloaded()
    b.default = Reply.ok("from b")
    clock = FakeClock()
    targets = [guarded(a, CircuitBreaker()), guarded(b, None, name="secondary")]
    async with Relay(targets=targets, clock=clock) as relay:
        for _ in range(5):
            await relay.acomplete(messages=HI)
        answer = await relay.acomplete(messages=HI)
    assert answer.content == "from b"
    assert answer.relay is not None
    assert (answer.relay.target, answer.relay.attempts) == ("secondary", 1)
    assert (a.request_count, b.request_count) == (5, 6)
    assert clock.sleeps == []


async def test_a_success_resets_the_count_of_consecutive_failures(provider: FakeProvider) -> None:
    provider.script(*[Reply.overloaded()] * 4, Reply.ok(), *[Reply.overloaded()] * 4)
    async with Relay(targets=[guarded(provider, CircuitBreaker())], clock=FakeClock()) as relay:
        await fail_times(relay, 4)
        await relay.acomplete(messages=HI)
        await fail_times(relay, 4)
        answer = await relay.acomplete(messages=HI)
    assert answer.content == "Hello from FakeProvider."
    assert provider.request_count == 10


async def test_failure_rate_opens_the_circuit_once_min_calls_were_made(
    provider: FakeProvider,
) -> None:
    provider.script(Reply.ok(), Reply.ok(), Reply.overloaded(), Reply.overloaded())
    breaker = CircuitBreaker(failures=100, failure_rate=0.5, min_calls=4)
    async with Relay(targets=[guarded(provider, breaker)], clock=FakeClock()) as relay:
        await relay.acomplete(messages=HI)
        await relay.acomplete(messages=HI)
        await fail_times(relay, 1)  # 1 of 3: below min_calls, and below the rate
        await fail_times(relay, 1)  # 2 of 4: the rate is reached over min_calls calls
        with pytest.raises(CircuitOpenError, match="after 2 failures in 4 calls within 30 s"):
            await relay.acomplete(messages=HI)
    assert provider.request_count == 4


async def test_failure_rate_needs_min_calls_calls(provider: FakeProvider) -> None:
    provider.script(Reply.overloaded(), Reply.overloaded(), Reply.overloaded())
    breaker = CircuitBreaker(failures=100, min_calls=4)
    async with Relay(targets=[guarded(provider, breaker)], clock=FakeClock()) as relay:
        await fail_times(relay, 3)  # 100 % failures, but only 3 calls
        answer = await relay.acomplete(messages=HI)
    assert answer.content == "Hello from FakeProvider."
    assert provider.request_count == 4


async def test_failure_rate_forgets_calls_older_than_the_window(provider: FakeProvider) -> None:
    provider.script(Reply.ok(), Reply.ok(), Reply.overloaded(), Reply.overloaded())
    clock = FakeClock()
    breaker = CircuitBreaker(failures=100, min_calls=4, window_s=30)
    async with Relay(targets=[guarded(provider, breaker)], clock=clock) as relay:
        await relay.acomplete(messages=HI)
        await relay.acomplete(messages=HI)
        clock.advance(31)
        await fail_times(relay, 2)  # 2 of 2 in the window: below min_calls
        await relay.acomplete(messages=HI)
    assert provider.request_count == 5


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (Reply.invalid_request("bad tool schema", param="tools"), InvalidRequestError),
        (Reply.context_length(), ContextWindowError),
        (Reply.content_filter(), InvalidRequestError),
    ],
)
async def test_the_callers_own_errors_never_open_the_circuit(
    provider: FakeProvider, reply: Reply, error: type[Exception]
) -> None:
    provider.script(reply, reply, reply)
    breaker = CircuitBreaker(failures=2, min_calls=1)
    async with Relay(targets=[guarded(provider, breaker)], clock=FakeClock()) as relay:
        await fail_times(relay, 3, error)
        answer = await relay.acomplete(messages=HI)
    assert answer.content == "Hello from FakeProvider."
    assert provider.request_count == 4


async def test_failure_on_replaces_which_errors_count(provider: FakeProvider) -> None:
    provider.script(*[Reply.overloaded()] * 2, *[Reply.server_error()] * 2)
    breaker = CircuitBreaker(failures=2, failure_on=[lambda error: error.status == 500])
    async with Relay(targets=[guarded(provider, breaker)], clock=FakeClock()) as relay:
        await fail_times(relay, 4)  # the 503s did not count; the two 500s do
        with pytest.raises(CircuitOpenError, match="after 2 consecutive failures"):
            await relay.acomplete(messages=HI)
    assert provider.request_count == 4


# --- provider pushback -------------------------------------------------------------------------


async def test_429_with_retry_after_opens_the_circuit_for_exactly_that_long(
    provider: FakeProvider,
) -> None:
    provider.script(Reply.rate_limited(retry_after=7))
    clock = FakeClock()
    events: list[Event] = []
    relay = Relay(
        targets=[guarded(provider, CircuitBreaker())], clock=clock, listeners=[events.append]
    )
    async with relay:
        await fail_times(relay, 1, RateLimitError)
        clock.advance(6.9)
        with pytest.raises(CircuitOpenError) as caught:
            await relay.acomplete(messages=HI)
        assert provider.request_count == 1
        clock.advance(0.1)
        answer = await relay.acomplete(messages=HI)
    assert answer.content == "Hello from FakeProvider."
    assert provider.request_count == 2
    assert caught.value.retry_after == pytest.approx(0.1)
    assert circuit_events(events) == [
        CircuitOpened("primary", 7.0, "a 429 asking to retry after 7.0 s"),
        CircuitClosed("primary"),
    ]


async def test_quota_error_opens_the_circuit_for_the_cooldown(provider: FakeProvider) -> None:
    provider.script(Reply.quota())
    async with Relay(
        targets=[guarded(provider, CircuitBreaker(cooldown_s=12))], clock=FakeClock()
    ) as relay:
        await fail_times(relay, 1, QuotaExceededError)
        with pytest.raises(
            CircuitOpenError, match=r"open for 12\.0 s more after a quota"
        ) as caught:
            await relay.acomplete(messages=HI)
    assert caught.value.retry_after == 12.0
    assert provider.request_count == 1


# --- half-open ---------------------------------------------------------------------------------


async def test_after_the_cooldown_one_probe_goes_through_and_its_success_closes_the_circuit(
    provider: FakeProvider,
) -> None:
    provider.script(*[Reply.overloaded()] * 5)
    clock = FakeClock()
    events: list[Event] = []
    relay = Relay(
        targets=[guarded(provider, CircuitBreaker())], clock=clock, listeners=[events.append]
    )
    async with relay:
        await fail_times(relay, 5)
        clock.advance(4.9)
        with pytest.raises(CircuitOpenError):
            await relay.acomplete(messages=HI)
        assert provider.request_count == 5
        clock.advance(0.1)
        probe = await relay.acomplete(messages=HI)
        after = await relay.acomplete(messages=HI)
    assert (probe.content, after.content) == ("Hello from FakeProvider.",) * 2
    assert provider.request_count == 7
    assert circuit_events(events) == [
        CircuitOpened("primary", 5.0, "5 consecutive failures"),
        CircuitClosed("primary"),
    ]


async def test_a_failed_probe_reopens_the_circuit_for_another_cooldown(
    provider: FakeProvider,
) -> None:
    provider.script(*[Reply.overloaded()] * 6)
    clock = FakeClock()
    events: list[Event] = []
    relay = Relay(
        targets=[guarded(provider, CircuitBreaker())], clock=clock, listeners=[events.append]
    )
    async with relay:
        await fail_times(relay, 5)
        clock.advance(5)
        await fail_times(relay, 1)  # the probe
        clock.advance(4.9)
        with pytest.raises(CircuitOpenError, match="after a failed half-open probe") as caught:
            await relay.acomplete(messages=HI)
        assert provider.request_count == 6
        clock.advance(0.1)
        await relay.acomplete(messages=HI)
    assert caught.value.retry_after == pytest.approx(0.1)
    assert provider.request_count == 7
    assert circuit_events(events) == [
        CircuitOpened("primary", 5.0, "5 consecutive failures"),
        CircuitOpened("primary", 5.0, "a failed half-open probe"),
        CircuitClosed("primary"),
    ]


def gated_backend() -> tuple[FunctionBackend, dict[str, Any]]:
    """A backend that fails while ``state["failing"]``, else waits for ``state["gate"]``."""
    state: dict[str, Any] = {"calls": 0, "failing": True, "gate": asyncio.Event()}

    async def answer(request: ChatRequest) -> str:
        state["calls"] += 1
        if state["failing"]:
            raise ProviderError("answered 503: overloaded", status=503)
        await state["gate"].wait()
        return "probe ok"

    return FunctionBackend(answer, name="fn"), state


async def wait_until(condition: Callable[[], bool]) -> None:
    for _ in range(100):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never became true")


async def test_half_open_lets_one_probe_through_at_a_time() -> None:
    backend, state = gated_backend()
    clock = FakeClock()
    target = Target(backend, name="primary", middleware=[CircuitBreaker(failures=2)])
    async with Relay(targets=[target], clock=clock) as relay:
        await fail_times(relay, 2)
        state["failing"] = False
        clock.advance(30)
        probe = asyncio.create_task(relay.acomplete(messages=HI))
        await wait_until(lambda: state["calls"] == 3)
        with pytest.raises(CircuitOpenError, match=r"half-open .* probe call is still in flight"):
            await relay.acomplete(messages=HI)
        assert state["calls"] == 3
        state["gate"].set()
        assert (await probe).content == "probe ok"
        await relay.acomplete(messages=HI)  # closed again: goes through
    assert state["calls"] == 4


async def test_a_cancelled_probe_frees_its_slot_for_the_next_call() -> None:
    backend, state = gated_backend()
    clock = FakeClock()
    target = Target(backend, name="primary", middleware=[CircuitBreaker(failures=1)])
    async with Relay(targets=[target], clock=clock) as relay:
        await fail_times(relay, 1)
        state["failing"] = False
        clock.advance(30)
        probe = asyncio.create_task(relay.acomplete(messages=HI))
        await wait_until(lambda: state["calls"] == 2)
        probe.cancel()
        with pytest.raises(asyncio.CancelledError):
            await probe
        state["gate"].set()
        answer = await relay.acomplete(messages=HI)
    assert answer.content == "probe ok"
    assert state["calls"] == 3


# --- streams -----------------------------------------------------------------------------------


async def test_a_stream_that_breaks_after_its_first_chunk_counts_as_a_failure(
    provider: FakeProvider,
) -> None:
    provider.script(Reply.ok("one two three four").drop_after(2))
    breaker = CircuitBreaker(failures=1)
    async with Relay(targets=[guarded(provider, breaker)], clock=FakeClock()) as relay:
        with pytest.raises(StreamInterruptedError):
            async for _ in relay.astream(messages=HI):
                pass
        with pytest.raises(CircuitOpenError, match=r"after 1 consecutive failure$"):
            await relay.acomplete(messages=HI)
    assert provider.request_count == 1


async def test_a_streamed_probe_closes_the_circuit_at_its_first_chunk(
    provider: FakeProvider,
) -> None:
    provider.script(Reply.overloaded())
    clock = FakeClock()
    events: list[Event] = []
    breaker = CircuitBreaker(failures=1)
    relay = Relay(targets=[guarded(provider, breaker)], clock=clock, listeners=[events.append])
    async with relay:
        await fail_times(relay, 1)
        clock.advance(30)
        stream = await relay.astream(messages=HI)
        assert circuit_events(events)[-1] == CircuitClosed("primary")
        answer = await stream.completion()
    assert answer.content == "Hello from FakeProvider."
    assert provider.request_count == 2
    assert provider.requests[1].stream


class LateVerdictsWait(MemoryBreakerStore):
    """Holds each late verdict (a stream broken after its first chunk) until its gate opens."""

    def __init__(self) -> None:
        super().__init__()
        self.gates: list[asyncio.Event] = []
        self.late_recorded = 0

    async def record(
        self, key: str, now: float, policy: BreakerPolicy, outcome: Outcome
    ) -> Transition | None:
        if outcome.late:
            gate = asyncio.Event()
            self.gates.append(gate)
            await gate.wait()
            self.late_recorded += 1
        return await super().record(key, now, policy, outcome)


async def test_closing_waits_for_late_failures_of_streams_that_break_while_it_waits() -> None:
    async def model(request: ChatRequest) -> AsyncIterator[str]:
        yield "first "
        raise ProviderError("answered 503 mid-stream", status=503)

    store = LateVerdictsWait()
    breaker = CircuitBreaker(failures=2, store=store)
    target = Target(FunctionBackend(model), name="primary", middleware=[breaker])
    relay = Relay(targets=[target], clock=FakeClock())
    one = await relay.astream(messages=HI)
    two = await relay.astream(messages=HI)
    with pytest.raises(StreamInterruptedError):
        await one.completion()
    closing = asyncio.create_task(breaker.aclose())
    await wait_until(lambda: len(store.gates) == 1)
    await asyncio.sleep(0)  # aclose is now waiting for the first late verdict
    with pytest.raises(StreamInterruptedError):
        await two.completion()  # its late verdict starts while aclose waits
    await wait_until(lambda: len(store.gates) == 2)
    store.gates[0].set()
    for _ in range(20):
        await asyncio.sleep(0)
    assert not closing.done()  # the second verdict is still being written
    store.gates[1].set()
    await asyncio.wait_for(closing, 5)  # real-time: a bound, only reached on failure
    assert store.late_recorded == 2
    with pytest.raises(CircuitOpenError, match=r"after 2 consecutive failures$"):
        await relay.acomplete(messages=HI)
    await relay.aclose()


# --- isolation ---------------------------------------------------------------------------------


async def test_one_breaker_keeps_a_separate_circuit_per_target(
    providers: tuple[FakeProvider, FakeProvider],
) -> None:
    a, b = providers
    a.default = Reply.overloaded()
    breaker = CircuitBreaker(failures=1)
    targets = [guarded(a, breaker, name="a"), guarded(b, breaker, name="b")]
    async with Relay(targets=targets, clock=FakeClock()) as relay:
        first = await relay.acomplete(messages=HI)
        second = await relay.acomplete(messages=HI)
    assert first.relay is not None and second.relay is not None
    assert (first.relay.target, second.relay.target) == ("b", "b")
    assert (a.request_count, b.request_count) == (1, 2)


async def test_two_relays_with_their_own_breakers_share_no_state(provider: FakeProvider) -> None:
    provider.script(*[Reply.overloaded()] * 5)
    clock = FakeClock()
    one = Relay(targets=[guarded(provider, CircuitBreaker())], clock=clock)
    two = Relay(targets=[guarded(provider, CircuitBreaker())], clock=clock)
    async with one, two:
        await fail_times(one, 5)
        answer = await two.acomplete(messages=HI)
        with pytest.raises(CircuitOpenError):
            await one.acomplete(messages=HI)
    assert answer.content == "Hello from FakeProvider."
    assert provider.request_count == 6


# --- the policy alone, and configuration -------------------------------------------------------


def test_only_provider_side_errors_count_as_failures() -> None:
    breaker = CircuitBreaker(cooldown_s=12)
    assert breaker.outcome_of(InvalidRequestError("bad")) is None
    assert breaker.outcome_of(ContextWindowError("too long")) is None
    assert breaker.outcome_of(CircuitOpenError("is skipped")) is None
    assert breaker.outcome_of(LocalRateLimitError("over budget")) is None
    plain = breaker.outcome_of(ProviderError("answered 503"))
    assert plain is not None and (plain.ok, plain.open_s) == (False, None)
    pushback = breaker.outcome_of(RateLimitError("answered 429", retry_after=7))
    assert pushback is not None and pushback.open_s == 7
    no_pushback = breaker.outcome_of(RateLimitError("answered 429"))
    assert no_pushback is not None and no_pushback.open_s is None
    quota = breaker.outcome_of(QuotaExceededError("out of credit", retry_after=3))
    assert quota is not None and quota.open_s == 12


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"failures": 0}, "failures"),
        ({"failure_rate": 0}, "failure_rate"),
        ({"failure_rate": 1.5}, "failure_rate"),
        ({"min_calls": 0}, "min_calls"),
        ({"window_s": 0}, "window_s"),
        ({"cooldown_s": -1}, "cooldown_s"),
        ({"half_open_probes": 0}, "half_open_probes"),
        ({"failure_on": [ValueError]}, "failure_on"),
    ],
)
def test_bad_settings_fail_at_construction_naming_the_argument(
    options: dict[str, Any], named: str
) -> None:
    with pytest.raises(ValueError, match=named):
        CircuitBreaker(**options)


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"cooldown_s": float("inf")}, "cooldown_s"),  # opened once, never closed again
        ({"window_s": float("inf")}, "window_s"),
        ({"window_s": True}, "window_s"),
        ({"failure_rate": True}, "failure_rate"),
        ({"cooldown_s": "30"}, "cooldown_s"),
        ({"failure_rate": "0.5"}, "failure_rate"),
        ({"failure_on": ProviderError}, "failure_on"),  # one type, not a list of them
    ],
)
def test_settings_that_are_not_finite_numbers_or_lists_fail_at_construction(
    options: dict[str, Any], named: str
) -> None:
    with pytest.raises(ValueError, match=named):
        CircuitBreaker(**options)


# --- defaults that let a recovered provider back ----------------------------------------------


async def test_a_provider_that_recovers_gets_traffic_back_within_ten_seconds(
    provider: FakeProvider,
) -> None:
    """503 for 60 s, then healthy; one call every 4 s, with a fallback answering meanwhile."""
    clock = FakeClock()
    recovered_at = clock.now() + 60
    provider.default = lambda request: (
        Reply.overloaded() if clock.now() < recovered_at else Reply.ok("primary again")
    )
    backup = FunctionBackend(lambda request: "backup", name="backup")
    relay = Relay(targets=[guarded(provider, CircuitBreaker()), backup], clock=clock)
    served: list[tuple[float, str | None]] = []
    async with relay:
        for _ in range(25):  # 100 s of calls
            answer = await relay.acomplete(messages=HI)
            assert answer.relay is not None
            served.append((clock.now() - recovered_at, answer.relay.target))
            clock.advance(4)
    back = min(at for at, target in served if target == "primary")
    assert 0 <= back <= 10
    assert all(target == "primary" for at, target in served if at >= back)
    assert all(target == "backup" for at, target in served if at < 0)


async def test_repeated_failed_probes_reopen_for_the_same_cooldown_each_time(
    provider: FakeProvider,
) -> None:
    provider.default = Reply.overloaded()
    clock = FakeClock()
    events: list[Event] = []
    relay = Relay(
        targets=[guarded(provider, CircuitBreaker())], clock=clock, listeners=[events.append]
    )
    async with relay:
        await fail_times(relay, 5)
        for _ in range(6):
            clock.advance(5)
            await fail_times(relay, 1)  # each probe fails
    opened = [e for e in circuit_events(events) if isinstance(e, CircuitOpened)]
    assert [e.cooldown_s for e in opened] == [5.0] * 7


async def test_retry_after_sets_the_open_time_up_to_max_open_s(provider: FakeProvider) -> None:
    provider.script(Reply.rate_limited(retry_after=20), Reply.rate_limited(retry_after=3600))
    clock = FakeClock()
    events: list[Event] = []
    relay = Relay(
        targets=[guarded(provider, CircuitBreaker())], clock=clock, listeners=[events.append]
    )
    async with relay:
        await fail_times(relay, 1, RateLimitError)
        clock.advance(20)
        await fail_times(relay, 1, RateLimitError)  # the probe, told to wait an hour
    assert [e.cooldown_s for e in circuit_events(events) if isinstance(e, CircuitOpened)] == [
        20.0,
        60.0,
    ]


def test_max_open_s_may_not_be_shorter_than_the_cooldown() -> None:
    with pytest.raises(ValueError, match="max_open_s must be at least cooldown_s"):
        CircuitBreaker(cooldown_s=10, max_open_s=5)
