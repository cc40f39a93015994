"""Timeout: deadlines, attempt and first-token bounds, idle streams; fake time and real HTTP."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import pytest

from relaykit import (
    AllTargetsFailedError,
    CallContext,
    ChatRequest,
    ChatStream,
    Fallback,
    FunctionBackend,
    Handler,
    OpenAICompatible,
    ProviderError,
    ProviderTimeout,
    Relay,
    StreamInterruptedError,
    Target,
)
from relaykit.contract.events import AttemptFailed, Event
from relaykit.contract.pipeline import Response
from relaykit.middleware.timeout import Timeout
from relaykit.testing import FakeClock, FakeProvider, Reply
from relaykit.testing.clock import _FakeTimeout

T = TypeVar("T")
BackendFactory = Callable[..., OpenAICompatible]  # the conftest fixture `backend`
HI = [{"role": "user", "content": "Hi"}]
HOUR = 3600.0
STEP = 0.25  # exact in binary, so stepped fake time lands exactly on each timeout


def hanging(clock: FakeClock, name: str, calls: list[str] | None = None) -> FunctionBackend:
    """A backend that answers only after an hour of (fake) time."""

    async def never(request: ChatRequest) -> str:
        if calls is not None:
            calls.append(name)
        await clock.sleep(HOUR)
        return "too late"

    return FunctionBackend(never, name=name)


def answering(name: str, calls: list[str] | None = None, text: str = "hello") -> FunctionBackend:
    async def answer(request: ChatRequest) -> str:
        if calls is not None:
            calls.append(name)
        return text

    return FunctionBackend(answer, name=name)


def streaming(
    clock: FakeClock, steps: Sequence[tuple[float, str]], name: str = "streamer"
) -> FunctionBackend:
    """A backend streaming ``text`` after waiting ``delay`` fake seconds, for each step."""

    async def pieces(request: ChatRequest) -> AsyncIterator[str]:
        for delay, text in steps:
            if delay:
                await clock.sleep(delay)
            yield text

    return FunctionBackend(pieces, name=name)


async def on_fake_time(clock: FakeClock, work: Awaitable[T]) -> tuple[asyncio.Task[T], float]:
    """Run ``work`` while moving time forward in small steps; the finished task and time taken."""
    task = asyncio.ensure_future(work)
    started = clock.now()
    for _ in range(10_000):
        for _ in range(20):  # let the call run until it waits on the clock again
            await asyncio.sleep(0)
        if task.done():
            return task, clock.now() - started
        clock.advance(STEP)
    task.cancel()
    raise AssertionError("the call did not finish within 10_000 steps of fake time")


def recorder(seen: list[CallContext | tuple[Any, ...]]) -> Callable[..., Awaitable[Response]]:
    """A middleware noting the deadline and attempt bounds that the layers inside it see."""

    async def record(request: ChatRequest, ctx: CallContext, call_next: Handler) -> Response:
        seen.append((ctx.remaining(), ctx.bounds.attempt_s, ctx.bounds.first_token_s))
        return await call_next(request, ctx)

    return record


# --- construction ---------------------------------------------------------------------------------


def test_timeout_without_any_bound_is_rejected() -> None:
    with pytest.raises(ValueError, match="at least one of total_s, attempt_s"):
        Timeout()


@pytest.mark.parametrize("name", ["total_s", "attempt_s", "first_token_s", "idle_s"])
@pytest.mark.parametrize("value", [0, -1.0, float("nan"), float("inf"), True, "5"])
def test_each_bound_must_be_a_positive_number_of_seconds(name: str, value: Any) -> None:
    with pytest.raises(ValueError, match=f"^{name} must be a positive, finite number of seconds"):
        Timeout(**{name: value})


def test_repr_shows_the_configured_bounds() -> None:
    assert repr(Timeout(total_s=30, idle_s=5)) == "Timeout(total_s=30.0, idle_s=5.0)"


# --- attempt_s ------------------------------------------------------------------------------------


async def test_a_target_that_never_answers_costs_only_its_attempt_timeout() -> None:
    clock = FakeClock(auto_advance=False)
    calls: list[str] = []
    relay = Relay(
        targets=[hanging(clock, "dead", calls), answering("alive", calls)],
        middleware=[Timeout(attempt_s=2)],
        clock=clock,
    )

    task, elapsed = await on_fake_time(clock, relay.acomplete(messages=HI))

    answer = task.result()
    assert answer.content == "hello"
    assert answer.relay is not None and answer.relay.target == "alive"
    assert elapsed == 2.0
    assert calls == ["dead", "alive"]


async def test_attempt_timeout_is_a_retryable_error_naming_the_target() -> None:
    clock = FakeClock(auto_advance=False)
    events: list[Event] = []
    relay = Relay(
        targets=[hanging(clock, "slow")],
        middleware=[Timeout(attempt_s=2)],
        clock=clock,
        listeners=[events.append],
    )

    task, elapsed = await on_fake_time(clock, relay.acomplete(messages=HI))

    error = task.exception()
    assert isinstance(error, ProviderTimeout)
    assert error.target == "slow" and error.retryable
    assert str(error).startswith("target 'slow' did not answer within the 2 s attempt timeout")
    assert elapsed == 2.0
    assert [type(e) for e in events if isinstance(e, AttemptFailed)] == [AttemptFailed]


async def test_each_attempt_gets_its_own_attempt_timeout() -> None:
    clock = FakeClock(auto_advance=False)
    answers = iter([HOUR, 1.0])

    async def slow_then_quick(request: ChatRequest) -> str:
        await clock.sleep(next(answers))
        return "second try"

    async def retry_once(request: ChatRequest, ctx: CallContext, call_next: Handler) -> Response:
        try:
            return await call_next(request, ctx)
        except ProviderTimeout:
            return await call_next(request, ctx)

    relay = Relay(
        targets=[FunctionBackend(slow_then_quick, name="flaky")],
        middleware=[Timeout(attempt_s=2), retry_once],
        clock=clock,
    )

    task, elapsed = await on_fake_time(clock, relay.acomplete(messages=HI))

    answer = task.result()
    assert answer.content == "second try"
    assert answer.relay is not None and answer.relay.attempts == 2
    assert elapsed == 3.0  # 2 s for the attempt that timed out, 1 s for the one that answered


async def test_attempt_timeout_bounds_a_stream_only_until_its_first_chunk() -> None:
    clock = FakeClock()
    relay = Relay(
        targets=[streaming(clock, [(0, "one"), (3, " two"), (3, " three")])],
        middleware=[Timeout(attempt_s=2)],
        clock=clock,
    )

    answer = await relay.astream(messages=HI).completion()

    assert answer.content == "one two three"
    assert clock.sleeps == [3, 3]


async def test_a_slow_first_chunk_moves_on_after_the_first_token_timeout() -> None:
    clock = FakeClock(auto_advance=False)
    relay = Relay(
        targets=[
            streaming(clock, [(HOUR, "late")], name="slow"),
            streaming(clock, [(0, "quick")], name="quick"),
        ],
        middleware=[Timeout(first_token_s=1, attempt_s=10)],
        clock=clock,
    )

    task, elapsed = await on_fake_time(clock, relay.astream(messages=HI).completion())

    assert task.result().content == "quick"
    assert elapsed == 1.0


async def test_first_token_timeout_names_itself_when_it_expires() -> None:
    clock = FakeClock()
    relay = Relay(
        targets=[streaming(clock, [(5, "late")], name="slow")],
        middleware=[Timeout(first_token_s=1)],
        clock=clock,
    )

    with pytest.raises(ProviderTimeout) as caught:
        await relay.astream(messages=HI)

    assert caught.value.target == "slow"
    assert "sent no content within the 1 s first-token timeout" in str(caught.value)


async def test_first_token_timeout_does_not_bound_plain_completions() -> None:
    clock = FakeClock()

    async def thoughtful(request: ChatRequest) -> str:
        await clock.sleep(5)
        return "considered"

    relay = Relay(
        targets=[FunctionBackend(thoughtful)], middleware=[Timeout(first_token_s=1)], clock=clock
    )

    assert (await relay.acomplete(messages=HI)).content == "considered"


# --- total_s --------------------------------------------------------------------------------------


async def test_a_call_that_outlives_its_deadline_fails_naming_the_target() -> None:
    clock = FakeClock(auto_advance=False)
    relay = Relay(targets=[hanging(clock, "slow")], middleware=[Timeout(total_s=5)], clock=clock)

    task, elapsed = await on_fake_time(clock, relay.acomplete(messages=HI))

    error = task.exception()
    assert isinstance(error, ProviderTimeout)
    assert error.target == "slow"
    assert str(error).startswith("target 'slow' did not finish within the call's 5 s deadline")
    assert elapsed == 5.0


async def test_layers_inside_a_timeout_see_its_deadline() -> None:
    clock = FakeClock()
    seen: list[Any] = []
    relay = Relay(
        targets=[answering("a")],
        middleware=[Timeout(total_s=30, attempt_s=2), recorder(seen)],
        clock=clock,
    )

    await relay.acomplete(messages=HI)

    assert seen == [(30.0, 2.0, None)]


async def test_two_hanging_targets_each_time_out_and_all_attempts_are_reported() -> None:
    clock = FakeClock(auto_advance=False)
    calls: list[str] = []
    relay = Relay(
        targets=[hanging(clock, "a", calls), hanging(clock, "b", calls)],
        middleware=[Timeout(total_s=30, attempt_s=2)],
        clock=clock,
    )

    task, elapsed = await on_fake_time(clock, relay.acomplete(messages=HI))

    error = task.exception()
    assert isinstance(error, AllTargetsFailedError)
    assert [type(e) for e in error.exceptions] == [ProviderTimeout, ProviderTimeout]
    assert [a.target for a in error.attempts] == ["a", "b"]
    assert all("2 s attempt timeout" in str(e) for e in error.exceptions)
    assert calls == ["a", "b"]
    assert elapsed == 4.0


async def test_the_deadline_cuts_the_last_attempt_short() -> None:
    clock = FakeClock(auto_advance=False)
    relay = Relay(
        targets=[hanging(clock, "a"), hanging(clock, "b")],
        middleware=[Timeout(total_s=3, attempt_s=2)],
        clock=clock,
    )

    task, elapsed = await on_fake_time(clock, relay.acomplete(messages=HI))

    error = task.exception()
    assert isinstance(error, ProviderTimeout)
    assert error.target == "b"
    assert "3 s deadline" in str(error)
    assert elapsed == 3.0


async def test_an_inner_timeout_never_extends_the_outer_deadline() -> None:
    clock = FakeClock(auto_advance=False)
    seen: list[Any] = []
    relay = Relay(
        targets=[Target(hanging(clock, "slow"), middleware=[Timeout(total_s=60), recorder(seen)])],
        middleware=[Timeout(total_s=5)],
        clock=clock,
    )

    task, elapsed = await on_fake_time(clock, relay.acomplete(messages=HI))

    assert seen == [(5.0, None, None)]
    assert isinstance(task.exception(), ProviderTimeout)
    assert "deadline" in str(task.exception())
    assert elapsed == 5.0


async def test_an_inner_attempt_timeout_never_loosens_the_outer_one() -> None:
    clock = FakeClock()
    seen: list[Any] = []
    relay = Relay(
        targets=[Target(answering("a"), middleware=[Timeout(attempt_s=60), recorder(seen)])],
        middleware=[Timeout(attempt_s=2)],
        clock=clock,
    )

    await relay.acomplete(messages=HI)

    assert seen == [(None, 2.0, None)]


async def test_a_targets_own_timeout_is_lifted_before_the_next_target() -> None:
    clock = FakeClock(auto_advance=False)
    seen: list[Any] = []
    relay = Relay(
        targets=[
            Target(hanging(clock, "slow"), middleware=[Timeout(total_s=2, attempt_s=1)]),
            Target(answering("fast"), middleware=[recorder(seen)]),
        ],
        clock=clock,
    )

    task, elapsed = await on_fake_time(clock, relay.acomplete(messages=HI))

    assert task.result().content == "hello"
    assert seen == [(None, None, None)]
    assert elapsed == 1.0


async def test_the_deadline_bounds_the_rest_of_a_stream() -> None:
    clock = FakeClock()
    relay = Relay(
        targets=[streaming(clock, [(0, "one"), (3, " two"), (3, " three")])],
        middleware=[Timeout(total_s=5)],
        clock=clock,
    )
    received: list[str] = []

    with pytest.raises(StreamInterruptedError) as caught:
        async for chunk in relay.astream(messages=HI):
            received.append(chunk.choices[0].delta.content or "")

    assert received == ["one", " two"]
    assert caught.value.partial.content == "one two"
    assert caught.value.target == "streamer"
    assert "did not finish its stream within the call's 5 s deadline" in str(caught.value)


async def test_a_stream_that_ends_in_time_is_read_to_the_end() -> None:
    clock = FakeClock()
    relay = Relay(
        targets=[streaming(clock, [(0, "one"), (1, " two")])],
        middleware=[Timeout(total_s=5, idle_s=2)],
        clock=clock,
    )

    stream = relay.astream(messages=HI)
    answer = await stream.completion()

    assert answer.content == "one two"
    assert stream.ended_cleanly
    assert stream.relay is not None and stream.relay.target == "streamer"


async def test_a_stream_continued_on_another_target_keeps_the_attempt_timeout() -> None:
    clock = FakeClock(auto_advance=False)
    calls: list[str] = []

    async def breaks(request: ChatRequest) -> AsyncIterator[str]:
        calls.append("first")
        yield "one two"
        raise ConnectionResetError("connection lost")

    relay = Relay(
        targets=[
            FunctionBackend(breaks, name="first"),
            hanging(clock, "dead", calls),
            answering("alive", calls, text=" three"),
        ],
        middleware=[Timeout(attempt_s=2)],
        strategy=Fallback(continue_streams=True),
        clock=clock,
    )

    task, elapsed = await on_fake_time(clock, relay.astream(messages=HI).completion())

    # The continuation asked of "dead" was cut off after its 2 s, as any attempt would be.
    assert task.result().content == "one two three"
    assert elapsed == 2.0
    assert calls == ["first", "dead", "alive"]


# --- idle_s ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["outer", "target"])
async def test_a_stalled_stream_fails_with_its_partial_answer(where: str) -> None:
    clock = FakeClock()
    backend = streaming(clock, [(0, "Hello"), (1, " wor"), (HOUR, "ld")])
    timeout = Timeout(idle_s=5)
    relay = Relay(
        targets=[Target(backend, middleware=[timeout] if where == "target" else [])],
        middleware=[timeout] if where == "outer" else [],
        clock=clock,
    )
    stream = relay.astream(messages=HI)

    with pytest.raises(StreamInterruptedError) as caught:
        await stream.completion()

    assert caught.value.partial.content == "Hello wor"
    assert caught.value.target == "streamer"
    message = str(caught.value)
    assert message.startswith("target 'streamer' broke its stream after 2 chunks: sent no chunk")
    assert "5 s, the idle timeout" in message


async def test_a_slow_but_steady_stream_is_not_cut() -> None:
    clock = FakeClock()
    relay = Relay(
        targets=[streaming(clock, [(0, "a"), (4, "b"), (4, "c"), (4, "d")])],
        middleware=[Timeout(idle_s=5)],
        clock=clock,
    )

    assert (await relay.astream(messages=HI).completion()).content == "abcd"


async def test_a_provider_error_mid_stream_is_reported_once() -> None:
    clock = FakeClock()

    async def breaks(request: ChatRequest) -> AsyncIterator[str]:
        yield "Hel"
        raise ProviderError("dropped the connection", target="flaky")

    relay = Relay(
        targets=[FunctionBackend(breaks, name="flaky")],
        middleware=[Timeout(idle_s=5)],
        clock=clock,
    )

    with pytest.raises(StreamInterruptedError) as caught:
        await relay.astream(messages=HI).completion()

    assert caught.value.partial.content == "Hel"
    assert str(caught.value).count("broke its stream") == 1
    assert isinstance(caught.value.__cause__, ProviderError)


async def test_closing_a_watched_stream_early_closes_the_stream_inside_it() -> None:
    clock = FakeClock()
    finished: list[tuple[bool, Any]] = []

    async def note_finish(request: ChatRequest, ctx: CallContext, call_next: Handler) -> Response:
        result = await call_next(request, ctx)
        assert isinstance(result, ChatStream)
        result.on_finish(lambda stream, error: finished.append((stream.ended_cleanly, error)))
        return result

    relay = Relay(
        targets=[Target(streaming(clock, [(0, "word ")] * 50), middleware=[note_finish])],
        middleware=[Timeout(idle_s=5)],
        clock=clock,
    )

    stream = await relay.astream(messages=HI)
    await anext(stream)
    await stream.aclose()

    assert finished == [(False, None)]  # closed early: not an error, not a clean end
    assert not stream.ended_cleanly


async def test_a_stall_breaks_the_stream_of_the_target_that_stalled() -> None:
    clock = FakeClock()
    finished: list[tuple[bool, Any]] = []

    async def note_finish(request: ChatRequest, ctx: CallContext, call_next: Handler) -> Response:
        result = await call_next(request, ctx)
        assert isinstance(result, ChatStream)
        result.on_finish(lambda stream, error: finished.append((stream.ended_cleanly, error)))
        return result

    relay = Relay(
        targets=[Target(streaming(clock, [(0, "a"), (HOUR, "b")]), middleware=[note_finish])],
        middleware=[Timeout(idle_s=5)],
        clock=clock,
    )

    with pytest.raises(StreamInterruptedError):
        await relay.astream(messages=HI).completion()

    # The layers of the stalled target see its stream break, not close: a breaker counts it.
    [(ended_cleanly, error)] = finished
    assert not ended_cleanly
    assert isinstance(error, StreamInterruptedError) and "idle timeout" in str(error)


# --- cost when unused -----------------------------------------------------------------------------


class CountingClock(FakeClock):
    def __init__(self) -> None:
        super().__init__()
        self.scopes = 0

    def timeout(self, seconds: float | None) -> _FakeTimeout:
        self.scopes += 1
        return super().timeout(seconds)


async def test_no_timeout_scope_is_entered_when_no_timeout_is_configured() -> None:
    clock = CountingClock()
    relay = Relay(targets=[streaming(clock, [(0, "a"), (0, "b")])], clock=clock)

    await relay.acomplete(messages=HI)
    await relay.astream(messages=HI).completion()

    assert clock.scopes == 0


# --- over real HTTP -------------------------------------------------------------------------------


async def test_over_http_a_hanging_provider_costs_only_its_attempt_timeout(
    provider: FakeProvider, backend: BackendFactory
) -> None:
    async with FakeProvider() as second:
        provider.script(Reply.hang())
        second.script(Reply.ok("from the second"))
        relay = Relay(
            targets=[
                Target(backend(provider), name="hung"),
                Target(backend(second), name="second"),
            ],
            middleware=[Timeout(attempt_s=0.2)],
        )

        started = time.monotonic()
        answer = await relay.acomplete(messages=HI)
        elapsed = time.monotonic() - started  # real-time: the hang is a real socket wait

    assert answer.content == "from the second"
    assert answer.relay is not None and answer.relay.target == "second"
    assert provider.request_count == 1 and second.request_count == 1
    assert 0.2 <= elapsed < 1.0  # real-time: ~0.2 s attempt timeout, then a loopback answer


async def test_over_http_a_stalled_stream_fails_with_its_partial_answer(
    provider: FakeProvider, backend: BackendFactory
) -> None:
    provider.script(Reply.ok("one two three four").stall_after(2))
    relay = Relay(targets=[backend(provider)], middleware=[Timeout(idle_s=0.2)])

    started = time.monotonic()
    with pytest.raises(StreamInterruptedError) as caught:
        await relay.astream(messages=HI).completion()
    elapsed = time.monotonic() - started  # real-time: the stall is a real silent socket

    assert caught.value.partial.content == "one"
    assert "idle timeout" in str(caught.value)
    assert provider.request_count == 1
    assert elapsed < 1.0  # real-time: one 0.2 s idle timeout, not the backend's 60 s read timeout


async def test_over_http_the_deadline_holds_against_a_hanging_provider(
    provider: FakeProvider, backend: BackendFactory
) -> None:
    provider.script(Reply.hang())
    relay = Relay(
        targets=[Target(backend(provider), name="hung")], middleware=[Timeout(total_s=0.2)]
    )

    started = time.monotonic()
    with pytest.raises(ProviderTimeout) as caught:
        await relay.acomplete(messages=HI)
    elapsed = time.monotonic() - started  # real-time: the hang is a real socket wait

    assert caught.value.target == "hung"
    # Whichever timer fires first, the message names the bound that ran out, not the
    # backend's own 60 s timeout.
    assert "deadline" in str(caught.value) and "Timeout(total_s=...)" in str(caught.value)
    assert elapsed < 1.0  # real-time: 0.2 s deadline


async def test_a_deadline_that_passes_before_any_target_is_tried_says_so() -> None:
    clock = FakeClock()

    async def queue(request: ChatRequest, ctx: CallContext, call_next: Handler) -> Response:
        await ctx.clock.sleep(10)  # e.g. a rate-limit wait that ignores the deadline
        return await call_next(request, ctx)

    relay = Relay(targets=[answering("a")], middleware=[Timeout(total_s=5), queue], clock=clock)

    with pytest.raises(ProviderTimeout) as caught:
        await relay.acomplete(messages=HI)

    assert caught.value.target is None
    assert str(caught.value).startswith("no target answered within the call's 5 s deadline")


# --- sync API -------------------------------------------------------------------------------------


def test_sync_calls_get_the_same_bounds() -> None:
    clock = FakeClock()
    with Relay(
        targets=[hanging(clock, "dead"), answering("alive")],
        middleware=[Timeout(attempt_s=2, idle_s=5)],
        clock=clock,
    ) as relay:
        assert relay.complete(messages=HI).content == "hello"

    clock = FakeClock()
    with (
        Relay(
            targets=[streaming(clock, [(0, "Hel"), (HOUR, "lo")])],
            middleware=[Timeout(idle_s=5)],
            clock=clock,
        ) as relay,
        pytest.raises(StreamInterruptedError) as caught,
    ):
        relay.stream(messages=HI).completion()

    assert caught.value.partial.content == "Hel"


async def test_retries_inside_a_deadline_each_get_an_attempt_timeout_and_stop_in_time() -> None:
    from relaykit.middleware.retry import Retry

    clock = FakeClock(auto_advance=False)
    calls: list[str] = []
    relay = Relay(
        targets=[hanging(clock, "slow", calls)],
        middleware=[
            Timeout(total_s=5, attempt_s=2),
            Retry(attempts=10, base_delay_s=0.5, jitter=False),
        ],
        clock=clock,
    )

    task, elapsed = await on_fake_time(clock, relay.acomplete(messages=HI))

    # 2 s try, 0.5 s backoff, 2 s try; the next 1 s backoff would pass the deadline: no third try
    error = task.exception()
    assert isinstance(error, ProviderTimeout)
    assert "2 s attempt timeout" in str(error)
    assert calls == ["slow", "slow"]
    assert elapsed == 4.5


@pytest.mark.parametrize("where", ["around the call", "inside the target"])
async def test_a_stall_is_continued_on_the_fallback_wherever_the_idle_timeout_sits(
    where: str,
) -> None:
    clock = FakeClock(auto_advance=False)
    async with FakeProvider(clock=clock) as stalling, FakeProvider(clock=clock) as backup:
        stalling.script(Reply.ok("one two three four").stall_after(3))
        backup.script(Reply.ok(" three four"))
        watch = [Timeout(idle_s=10)]
        relay = Relay(
            targets=[
                Target(
                    OpenAICompatible(stalling.url, model="m"),
                    name="stalling",
                    middleware=watch if where == "inside the target" else [],
                ),
                Target(OpenAICompatible(backup.url, model="m"), name="backup"),
            ],
            middleware=watch if where == "around the call" else [],
            strategy=Fallback(continue_streams=True),
            clock=clock,
        )
        async with relay:
            started = clock.now()
            answer = await clock.drive(relay.astream(messages=HI).completion())
    assert answer.content == "one two three four"
    assert answer.relay is not None and answer.relay.continued_from == ("stalling",)
    assert clock.now() - started == pytest.approx(10, abs=1.0)


async def test_without_continuation_a_stall_fails_promptly_with_the_partial() -> None:
    clock = FakeClock(auto_advance=False)
    async with FakeProvider(clock=clock) as stalling:
        stalling.script(Reply.ok("one two three four").stall_after(3))
        relay = Relay(
            targets=[Target(OpenAICompatible(stalling.url, model="m"), name="stalling")],
            middleware=[Timeout(total_s=90, idle_s=10)],
            clock=clock,
        )
        async with relay:
            started = clock.now()
            with pytest.raises(StreamInterruptedError, match="idle timeout") as caught:
                await clock.drive(relay.astream(messages=HI).completion())
    assert caught.value.partial.content == "one two"
    assert caught.value.target == "stalling"
    assert clock.now() - started == pytest.approx(10, abs=1.0)
