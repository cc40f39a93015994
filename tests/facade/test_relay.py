"""Relay, the facade: validation before sending, fallback, typed errors, sync API, events."""

from __future__ import annotations

import asyncio
import copy
import pickle
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest

from relaykit import (
    AllTargetsFailedError,
    AuthenticationError,
    CallContext,
    ChatCompletion,
    ChatRequest,
    FunctionBackend,
    InvalidRequestError,
    OpenAICompatible,
    ProviderError,
    RateLimitError,
    Relay,
    RelayError,
    RequestValidationError,
    Target,
)
from relaykit.contract.events import (
    AttemptFailed,
    AttemptStarted,
    AttemptSucceeded,
    Completed,
    Event,
    FallingBack,
)
from relaykit.contract.pipeline import Handler, Response
from relaykit.testing import FakeProvider, Reply

HI = [{"role": "user", "content": "Hi"}]


@pytest.fixture
async def backup() -> AsyncIterator[FakeProvider]:
    async with FakeProvider() as running:
        yield running


def relay_over(*providers: FakeProvider, **options: Any) -> Relay:
    """A Relay whose targets are ``primary``, ``backup``: one per provider, in order."""
    names = ["primary", "backup"]
    targets = [
        Target(OpenAICompatible(p.url, api_key="sk-test", model=f"{name}-model"), name=name)
        for name, p in zip(names, providers, strict=False)
    ]
    return Relay(targets=targets, **options)


def loop_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "relaykit-loop")


class ClosingBackend(FunctionBackend):
    """A function backend that counts how often it was closed."""

    def __init__(self, name: str = "spy") -> None:
        super().__init__(lambda request: "hi", name=name)
        self.closed = 0

    async def aclose(self) -> None:
        self.closed += 1


# --- the four ways to call ----------------------------------------------------------------------


async def test_acomplete_answers_and_says_who_served_it(provider: FakeProvider) -> None:
    provider.script(Reply.ok("Paris."))

    async with relay_over(provider) as relay:
        answer = await relay.acomplete(messages=HI, model="alias", temperature=0.3)

    assert answer.content == "Paris."
    assert answer.relay is not None
    assert (answer.relay.target, answer.relay.attempts, answer.relay.cached) == (
        "primary",
        1,
        False,
    )
    body = provider.requests[0].body
    assert body == {"messages": HI, "model": "primary-model", "stream": False, "temperature": 0.3}


async def test_relay_info_is_outside_the_openai_fields(provider: FakeProvider) -> None:
    async with relay_over(provider) as relay:
        answer = await relay.acomplete(messages=HI)

    dumped = answer.model_dump()
    assert "relay" not in dumped and "_relay" not in dumped
    assert "relay" not in answer.model_dump_json()
    assert answer.relay is not None
    assert ChatCompletion.model_validate(dumped).relay is None


async def test_copies_and_pickles_of_an_answer_still_say_who_served_it(
    provider: FakeProvider,
) -> None:
    async with relay_over(provider) as relay:
        answer = await relay.acomplete(messages=HI)

    copies = [
        copy.copy(answer),
        copy.deepcopy(answer),
        answer.model_copy(update={"model": "edited"}),
        answer.model_copy(deep=True),
        pickle.loads(pickle.dumps(answer)),
    ]
    for copied in copies:
        assert copied.relay is not None
        assert (copied.relay.target, copied.relay.attempts) == ("primary", 1)
        assert copied.content == answer.content
    assert copies[1].relay is not answer.relay  # a deep copy shares nothing mutable
    # How an answer was obtained is not part of it: equal answers compare equal.
    assert copies[0] == answer and copies[3] == answer
    assert ChatCompletion.model_validate(answer.model_dump()) == answer


async def test_astream_iterated_directly_streams_and_says_who_served_it(
    provider: FakeProvider,
) -> None:
    provider.script(Reply.ok("One two three."))

    async with relay_over(provider) as relay:
        stream = relay.astream(messages=HI, stream_options={"include_usage": True})
        pieces = [c.choices[0].delta.content async for c in stream if c.choices]

    assert "".join(p or "" for p in pieces) == "One two three."
    assert stream.relay is not None
    assert (stream.relay.target, stream.relay.attempts) == ("primary", 1)
    answer = stream.partial()
    assert answer.usage is not None
    assert provider.requests[0].body is not None
    assert provider.requests[0].body["stream"] is True
    assert provider.requests[0].body["stream_options"] == {"include_usage": True}


async def test_awaiting_astream_reaches_the_first_chunk_and_completion_assembles(
    provider: FakeProvider,
) -> None:
    provider.script(Reply.ok("One two three."))

    async with relay_over(provider) as relay:
        pending = relay.astream(messages=HI)
        assert provider.request_count == 0  # nothing is sent until it is awaited or iterated
        stream = await pending
        assert provider.request_count == 1
        answer = await stream.completion()

    assert stream is pending
    assert answer.content == "One two three."
    assert answer.relay is not None and answer.relay.target == "primary"


async def test_awaiting_astream_raises_failures_before_the_commit_point(
    provider: FakeProvider,
) -> None:
    provider.script(Reply.auth_error())

    async with relay_over(provider) as relay:
        pending = relay.astream(messages=HI)
        with pytest.raises(AuthenticationError) as caught:
            await pending

    assert caught.value.target == "primary"
    assert provider.request_count == 1


async def test_iterating_astream_raises_failures_before_the_commit_point_typed(
    provider: FakeProvider,
) -> None:
    provider.script(Reply.rate_limited(retry_after=2))

    async with relay_over(provider) as relay:
        with pytest.raises(RateLimitError) as caught:
            async for _ in relay.astream(messages=HI):
                pass

    assert caught.value.retry_after == 2.0


def test_sync_complete_and_stream_answer() -> None:
    with FakeProvider() as provider:
        provider.script(Reply.ok("sync answer"), Reply.ok("sync stream"))
        with relay_over(provider) as relay:
            answer = relay.complete(messages=HI)
            stream = relay.stream(messages=HI)
            text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
            info = stream.relay

    assert answer.content == "sync answer"
    assert answer.relay is not None and answer.relay.target == "primary"
    assert text == "sync stream"
    assert info is not None and info.attempts == 1
    assert provider.request_count == 2


def test_sync_stream_open_raises_failures_before_the_commit_point() -> None:
    with FakeProvider() as provider:
        provider.script(Reply.overloaded())
        with relay_over(provider) as relay, pytest.raises(ProviderError):
            relay.stream(messages=HI).open()


def test_sync_api_runs_every_call_on_one_loop_thread_that_close_stops() -> None:
    before = loop_threads()
    with FakeProvider() as provider:
        relay = relay_over(provider)
        relay.complete(messages=HI)
        relay.complete(messages=HI)
        relay.stream(messages=HI).completion()
        during = loop_threads()
        relay.close()

    assert during == before + 1
    assert loop_threads() == before
    assert provider.request_count == 3


def test_sync_context_manager_closes_backends_and_the_loop() -> None:
    spy = ClosingBackend()
    before = loop_threads()

    with Relay(targets=[spy]) as relay:
        assert relay.complete(messages=HI).content == "hi"

    assert spy.closed == 1
    assert loop_threads() == before


def test_close_after_async_use_closes_the_backends_and_leaves_no_thread() -> None:
    spy = ClosingBackend()
    before = loop_threads()
    relay = Relay(targets=[spy])

    answer = asyncio.run(relay.acomplete(messages=HI))
    relay.close()

    assert answer.content == "hi"
    assert spy.closed == 1
    assert loop_threads() == before


async def test_async_context_manager_closes_each_backend_once() -> None:
    first, second = ClosingBackend("a"), ClosingBackend("b")

    async with Relay(targets=[first, second]) as relay:
        await relay.acomplete(messages=HI)

    assert (first.closed, second.closed) == (1, 1)


# --- validation before anything is sent ---------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field", "says"),
    [
        ({"temperature": 5}, "temperature", "less than or equal to 2"),
        ({"messages": [{"role": "robot", "content": "Hi"}]}, "messages[0].role", "robot"),
        ({"messages": [{"role": "user"}]}, "messages[0].content", "field required"),
        ({"top_logprobs": 50}, "top_logprobs", "20"),
        ({"temprature": 0.5}, "temprature", "did you mean 'temperature'?"),
        ({"stream": True}, "stream", "astream() or stream()"),
        ({"cache": "sometimes"}, "cache", "'use'"),
    ],
)
async def test_invalid_arguments_raise_naming_the_field_and_send_nothing(
    provider: FakeProvider, kwargs: dict[str, Any], field: str, says: str
) -> None:
    arguments = {"messages": HI, **kwargs}

    async with relay_over(provider) as relay:
        with pytest.raises(RequestValidationError) as plain:
            await relay.acomplete(**arguments)
        with pytest.raises(RequestValidationError) as streamed:
            relay.astream(**arguments)  # raises at the call, before any await

    for caught in (plain, streamed):
        assert caught.value.field == field
        assert says in str(caught.value)
        assert isinstance(caught.value, InvalidRequestError)
    assert provider.request_count == 0


def test_sync_calls_validate_too() -> None:
    relay = Relay(targets=[ClosingBackend()])

    with pytest.raises(RequestValidationError) as caught:
        relay.complete(messages=HI, temperature=5)
    relay.close()

    assert caught.value.field == "temperature"


async def test_per_call_headers_and_extra_body_reach_the_provider(provider: FakeProvider) -> None:
    async with relay_over(provider) as relay:
        await relay.acomplete(
            messages=HI, extra_headers={"X-Trace": "t-1"}, extra_body={"top_k": 5}
        )

    sent = provider.requests[0]
    assert sent.header("X-Trace") == "t-1"
    assert sent.header("Authorization") == "Bearer sk-test"
    assert sent.body is not None and sent.body["top_k"] == 5


async def test_request_model_goes_upstream_when_the_target_names_none(
    provider: FakeProvider,
) -> None:
    async with Relay(targets=[OpenAICompatible(provider.url, api_key="k")]) as relay:
        answer = await relay.acomplete(messages=HI, model="gpt-4o-mini")

    assert provider.requests[0].body is not None
    assert provider.requests[0].body["model"] == "gpt-4o-mini"
    assert answer.model == "gpt-4o-mini"


# --- fallback and errors ----------------------------------------------------------------------


async def test_a_failing_first_target_falls_back_to_the_second(
    provider: FakeProvider, backup: FakeProvider
) -> None:
    provider.script(Reply.overloaded())
    backup.script(Reply.ok("from backup"))

    async with relay_over(provider, backup) as relay:
        answer = await relay.acomplete(messages=HI)

    assert answer.content == "from backup"
    assert answer.relay is not None
    assert (answer.relay.target, answer.relay.attempts) == ("backup", 2)
    assert (provider.request_count, backup.request_count) == (1, 1)
    assert backup.requests[0].body is not None
    assert backup.requests[0].body["model"] == "backup-model"


async def test_a_stream_falls_back_before_its_first_chunk(
    provider: FakeProvider, backup: FakeProvider
) -> None:
    provider.script(Reply.rate_limited())
    backup.script(Reply.ok("streamed from backup"))

    async with relay_over(provider, backup) as relay:
        stream = await relay.astream(messages=HI)
        answer = await stream.completion()

    assert answer.content == "streamed from backup"
    assert stream.relay is not None
    assert (stream.relay.target, stream.relay.attempts) == ("backup", 2)


async def test_an_invalid_request_does_not_fall_back(
    provider: FakeProvider, backup: FakeProvider
) -> None:
    provider.script(Reply.invalid_request("Invalid 'tools[0].function.name'.", "tools"))

    async with relay_over(provider, backup) as relay:
        with pytest.raises(InvalidRequestError) as caught:
            await relay.acomplete(messages=HI)

    assert caught.value.target == "primary"
    assert not isinstance(caught.value, AllTargetsFailedError)
    assert (provider.request_count, backup.request_count) == (1, 0)


async def test_one_target_raises_its_own_typed_error(provider: FakeProvider) -> None:
    provider.script(Reply.rate_limited(retry_after=4))

    async with relay_over(provider) as relay:
        with pytest.raises(RateLimitError) as caught:
            await relay.acomplete(messages=HI)

    assert type(caught.value) is RateLimitError
    assert caught.value.retry_after == 4.0
    assert caught.value.target == "primary"


async def test_all_targets_failing_raise_a_group_that_except_star_can_split(
    provider: FakeProvider, backup: FakeProvider
) -> None:
    provider.script(Reply.rate_limited(retry_after=3))
    backup.script(Reply.overloaded())
    limited: list[RelayError] = []
    failed: list[RelayError] = []

    async with relay_over(provider, backup) as relay:
        try:
            await relay.acomplete(messages=HI)
        except* RateLimitError as group:
            limited.extend(group.exceptions)  # type: ignore[arg-type]
        except* ProviderError as group:
            failed.extend(group.exceptions)  # type: ignore[arg-type]

    assert [(e.target, e.status) for e in limited] == [("primary", 429)]
    assert [(e.target, e.status) for e in failed] == [("backup", 503)]


async def test_all_targets_failing_is_a_relay_error_listing_every_attempt(
    provider: FakeProvider, backup: FakeProvider
) -> None:
    provider.script(Reply.rate_limited(retry_after=3))
    backup.script(Reply.auth_error())

    async with relay_over(provider, backup) as relay:
        try:
            await relay.acomplete(messages=HI)
        except RelayError as error:
            caught = error
        else:
            pytest.fail("no error raised")

    assert isinstance(caught, AllTargetsFailedError)
    assert [(a.target, type(a.error)) for a in caught.attempts] == [
        ("primary", RateLimitError),
        ("backup", AuthenticationError),
    ]
    assert caught.retry_after == 3.0
    assert "primary: RateLimitError 429" in str(caught)
    assert "backup: AuthenticationError 401" in str(caught)
    assert (provider.request_count, backup.request_count) == (1, 1)


# --- events and middleware --------------------------------------------------------------------


async def test_listeners_receive_the_events_of_a_call_in_order(provider: FakeProvider) -> None:
    events: list[Event] = []

    async with relay_over(provider, listeners=[events.append]) as relay:
        await relay.acomplete(messages=HI)

    assert [type(e) for e in events] == [AttemptStarted, AttemptSucceeded, Completed]
    started, _, completed = events
    assert isinstance(started, AttemptStarted) and started.model == "primary-model"
    assert isinstance(completed, Completed)
    assert (completed.target, completed.attempts, completed.stream) == ("primary", 1, False)
    assert completed.usage is not None


async def test_listeners_see_a_fallback_and_a_stream_completes_when_it_ends(
    provider: FakeProvider, backup: FakeProvider
) -> None:
    provider.script(Reply.server_error())
    events: list[Event] = []

    async with relay_over(provider, backup, listeners=[events.append]) as relay:
        stream = await relay.astream(messages=HI)
        kinds_at_commit = [type(e) for e in events]
        await stream.completion()

    assert kinds_at_commit == [
        AttemptStarted,
        AttemptFailed,
        FallingBack,
        AttemptStarted,
        AttemptSucceeded,
    ]
    assert type(events[-1]) is Completed
    completed = events[-1]
    assert isinstance(completed, Completed) and completed.stream and completed.target == "backup"


async def test_a_failing_listener_does_not_fail_the_call(provider: FakeProvider) -> None:
    def broken(event: Event) -> None:
        raise RuntimeError("listener bug")

    async with relay_over(provider, listeners=[broken]) as relay:
        answer = await relay.acomplete(messages=HI)

    assert answer.content == "Hello from FakeProvider."


async def test_a_plain_function_works_as_middleware_first_listed_outermost(
    provider: FakeProvider,
) -> None:
    order: list[str] = []

    def tagging(tag: str) -> Any:
        async def middleware(
            request: ChatRequest, ctx: CallContext, call_next: Handler
        ) -> Response:
            order.append(tag)
            return await call_next(request, ctx)

        return middleware

    async with relay_over(provider, middleware=[tagging("outer"), tagging("inner")]) as relay:
        answer = await relay.acomplete(messages=HI)

    assert order == ["outer", "inner"]
    assert answer.content == "Hello from FakeProvider."


async def test_two_relays_share_no_state(provider: FakeProvider, backup: FakeProvider) -> None:
    first_events: list[Event] = []
    second_events: list[Event] = []
    first = relay_over(provider, listeners=[first_events.append])
    second = relay_over(backup, listeners=[second_events.append])

    await first.acomplete(messages=HI)
    await first.aclose()
    answer = await second.acomplete(messages=HI)  # closing one leaves the other working
    await second.aclose()

    assert answer.content == "Hello from FakeProvider."
    assert len(first_events) == len(second_events) == 3
    assert (provider.request_count, backup.request_count) == (1, 1)


def test_two_relays_have_their_own_loop_threads() -> None:
    before = loop_threads()
    first, second = Relay(targets=[ClosingBackend()]), Relay(targets=[ClosingBackend()])

    first.complete(messages=HI)
    second.complete(messages=HI)
    both = loop_threads()
    first.close()
    still = second.complete(messages=HI)
    second.close()

    assert both == before + 2
    assert still.content == "hi"
    assert loop_threads() == before


def test_a_relay_needs_a_target_with_a_distinct_name() -> None:
    with pytest.raises(ValueError, match="targets"):
        Relay(targets=[])
    with pytest.raises(ValueError, match="distinct names"):
        Relay(targets=[ClosingBackend("same"), ClosingBackend("same")])
