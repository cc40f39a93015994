"""Optional middleware capabilities are declared Protocols; a near miss fails at construction."""

from __future__ import annotations

import pytest

from relaykit import (
    Cache,
    CircuitBreaker,
    FunctionBackend,
    Logging,
    OpenTelemetry,
    RateLimit,
    Relay,
    Retry,
    Target,
    Timeout,
)
from relaykit.contract.capabilities import (
    ClosesResources,
    KeysRequests,
    ObservesEvents,
    RetriesCalls,
    WantsEvents,
)
from relaykit.contract.events import AttemptStarted, Completed, Event
from relaykit.contract.pipeline import CallContext, Handler, Response
from relaykit.contract.schema import ChatRequest

HI = [{"role": "user", "content": "hi"}]


def answering(name: str = "fn") -> FunctionBackend:
    return FunctionBackend(lambda request: "ok", name=name)


class PassThrough:
    async def __call__(
        self, request: ChatRequest, ctx: CallContext, call_next: Handler
    ) -> Response:
        return await call_next(request, ctx)


def test_the_shipped_middlewares_declare_what_they_offer() -> None:
    assert isinstance(Cache(), KeysRequests) and isinstance(Cache(), ClosesResources)
    assert isinstance(Retry(), RetriesCalls) and not isinstance(Cache(), RetriesCalls)
    assert isinstance(Logging(), ObservesEvents) and isinstance(Logging(), WantsEvents)
    assert isinstance(OpenTelemetry(), ObservesEvents)
    assert isinstance(CircuitBreaker(), ClosesResources)
    assert isinstance(RateLimit(rpm=60), ClosesResources)
    assert not isinstance(Timeout(total_s=5), ObservesEvents | ClosesResources | KeysRequests)


def test_every_shipped_middleware_passes_the_near_miss_check() -> None:
    Relay(
        targets=[Target(answering(), middleware=[CircuitBreaker(), RateLimit(rpm=60)])],
        middleware=[Logging(), OpenTelemetry(), Cache(), Timeout(total_s=5), Retry()],
    )


def test_a_misspelled_keys_requests_is_refused_when_the_relay_is_built() -> None:
    class TypoCache(PassThrough):
        keys_request = True

    with pytest.raises(ValueError, match=r"'keys_request'.*did you mean 'keys_requests'") as caught:
        Relay(targets=[answering()], middleware=[TypoCache()])
    assert "KeysRequests" in str(caught.value)


def test_a_misspelled_observer_on_a_target_is_refused_too() -> None:
    class TypoObserver(PassThrough):
        def on_events(self, event: Event) -> None:
            pass

    with pytest.raises(ValueError, match=r"'on_events'.*did you mean 'on_event'"):
        Relay(targets=[Target(answering(), middleware=[TypoObserver()])])


def test_a_sync_close_is_refused_with_the_name_the_relay_awaits() -> None:
    class SyncClose(PassThrough):
        def close(self) -> None:
            pass

    with pytest.raises(ValueError, match=r"'close'.*did you mean 'aclose'"):
        Relay(targets=[answering()], middleware=[SyncClose()])


def test_a_listener_with_a_misspelled_wants_is_refused() -> None:
    def listener(event: Event) -> None:
        pass

    listener.want = frozenset({Completed})  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match=r"'want'.*did you mean 'wants'"):
        Relay(targets=[answering()], listeners=[listener])


async def test_a_users_class_gets_each_capability_without_inheriting() -> None:
    seen: list[str] = []

    class Recorder(PassThrough):
        wants = frozenset({Completed})
        stacks_with_retry = True  # not a retry: may sit beside one

        def on_event(self, event: Event) -> None:
            seen.append(type(event).__name__)

        async def aclose(self) -> None:
            seen.append("closed")

    relay = Relay(targets=[answering()], middleware=[Recorder(), Retry()])
    await relay.acomplete(messages=HI)
    await relay.aclose()
    assert seen == ["Completed", "closed"]  # only the kind it wants, then closed once


async def test_an_observer_that_wants_nothing_narrows_what_the_call_builds() -> None:
    seen: list[Event] = []

    def attempts_only(event: Event) -> None:
        seen.append(event)

    attempts_only.wants = frozenset({AttemptStarted})  # type: ignore[attr-defined]
    relay = Relay(targets=[answering("a")], listeners=[attempts_only])
    await relay.acomplete(messages=HI)
    assert [type(e) for e in seen] == [AttemptStarted]


async def test_a_users_retry_marker_is_counted_as_a_retry() -> None:
    class MyRetry(PassThrough):
        stacks_with_retry = False

    with pytest.raises(ValueError, match="attempts would multiply"):
        Relay(targets=[Target(answering(), middleware=[MyRetry()])], middleware=[Retry()])
