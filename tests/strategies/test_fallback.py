"""Fallback across targets: which failures move on, how fast, and streams that continue."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from relaykit import (
    AllTargetsFailedError,
    AuthenticationError,
    Cache,
    ContentFilterError,
    ContextWindowError,
    Fallback,
    FunctionBackend,
    InvalidRequestError,
    ModelNotFoundError,
    OpenAICompatible,
    ProviderError,
    QuotaExceededError,
    RateLimitError,
    Relay,
    RelayError,
    Retry,
    StreamInterruptedError,
    Target,
    default_fallback_on,
)
from relaykit.contract.events import Event, FallingBack
from relaykit.contract.schema import ChatRequest
from relaykit.strategies.fallback import answer_check, empty_answer, invalid_json
from relaykit.testing import FakeClock, FakeProvider, Reply

HI = [{"role": "user", "content": "hi"}]


@pytest.fixture
async def providers() -> AsyncIterator[tuple[FakeProvider, FakeProvider, FakeProvider]]:
    async with FakeProvider() as a, FakeProvider() as b, FakeProvider() as c:
        yield a, b, c


def target(provider: FakeProvider, name: str, **options: object) -> Target:
    backend = OpenAICompatible(provider.url, api_key="sk-test", model=f"{name}-model")
    return Target(backend, name=name, **options)  # type: ignore[arg-type]


async def test_failure_moves_to_next_target_without_sleeping(providers) -> None:
    a, b, _ = providers
    clock = FakeClock()
    a.script(Reply.overloaded())
    b.script(Reply.ok("from b"))
    async with Relay(targets=[target(a, "a"), target(b, "b")], clock=clock) as relay:
        answer = await relay.acomplete(messages=HI)
    assert answer.content == "from b"
    assert answer.relay is not None
    assert (answer.relay.target, answer.relay.attempts) == ("b", 2)
    assert clock.sleeps == []
    assert (a.request_count, b.request_count) == (1, 1)
    assert b.requests[0].body is not None and b.requests[0].body["model"] == "b-model"


@pytest.mark.parametrize(
    "reply", [Reply.quota(), Reply.auth_error(), Reply.rate_limited(5), Reply.server_error()]
)
async def test_provider_side_errors_fall_through(providers, reply: Reply) -> None:
    a, b, _ = providers
    a.script(reply)
    async with Relay(targets=[target(a, "a"), target(b, "b")]) as relay:
        answer = await relay.acomplete(messages=HI)
    assert answer.relay is not None and answer.relay.target == "b"


async def test_invalid_request_fails_fast_without_asking_the_next_target(providers) -> None:
    a, b, _ = providers
    a.script(Reply.invalid_request("bad tool schema", param="tools"))
    async with Relay(targets=[target(a, "a"), target(b, "b")]) as relay:
        with pytest.raises(InvalidRequestError, match="bad tool schema"):
            await relay.acomplete(messages=HI)
    assert b.request_count == 0


async def test_context_window_error_skips_targets_with_a_window_no_larger(providers) -> None:
    a, b, c = providers
    a.script(Reply.context_length())
    chain = [
        target(a, "small", context_window=8_000),
        target(b, "same", context_window=8_000),
        target(c, "large", context_window=128_000),
    ]
    async with Relay(targets=chain) as relay:
        answer = await relay.acomplete(messages=HI)
    assert answer.relay is not None and answer.relay.target == "large"
    assert (a.request_count, b.request_count, c.request_count) == (1, 0, 1)


async def test_all_targets_failing_lists_every_attempt(providers) -> None:
    a, b, _ = providers
    a.script(Reply.rate_limited(3))
    b.script(Reply.quota())
    async with Relay(targets=[target(a, "a"), target(b, "b")]) as relay:
        with pytest.raises(AllTargetsFailedError) as caught:
            await relay.acomplete(messages=HI)
    error = caught.value
    assert [(x.target, type(x.error)) for x in error.attempts] == [
        ("a", RateLimitError),
        ("b", QuotaExceededError),
    ]
    assert "a: RateLimitError 429" in str(error) and "b: QuotaExceededError 429" in str(error)
    assert error.retry_after == 3.0
    assert isinstance(error, RelayError)


async def test_all_targets_failed_supports_except_star(providers) -> None:
    a, b, _ = providers
    a.script(Reply.rate_limited())
    b.script(Reply.auth_error())
    caught: list[type[BaseException]] = []
    async with Relay(targets=[target(a, "a"), target(b, "b")]) as relay:
        try:
            await relay.acomplete(messages=HI)
        except* RateLimitError as group:
            caught += [type(e) for e in group.exceptions]
        except* AuthenticationError as group:
            caught += [type(e) for e in group.exceptions]
    assert caught == [RateLimitError, AuthenticationError]


async def test_a_single_target_raises_its_own_typed_error(providers) -> None:
    a, _, _ = providers
    a.script(Reply.overloaded())
    async with Relay(targets=[target(a, "a")]) as relay:
        with pytest.raises(ProviderError) as caught:
            await relay.acomplete(messages=HI)
    assert caught.value.status == 503 and caught.value.target == "a"


async def test_fallback_on_error_types_replaces_the_default_rule(providers) -> None:
    a, b, _ = providers
    a.script(Reply.auth_error())
    strategy = Fallback(fallback_on=[RateLimitError])
    async with Relay(targets=[target(a, "a"), target(b, "b")], strategy=strategy) as relay:
        with pytest.raises(AuthenticationError):
            await relay.acomplete(messages=HI)
    assert b.request_count == 0


async def test_fallback_on_error_predicate(providers) -> None:
    a, b, _ = providers
    a.script(Reply.invalid_request("model is busy, try another"))
    strategy = Fallback(fallback_on=[lambda error: "busy" in str(error)])
    async with Relay(targets=[target(a, "a"), target(b, "b")], strategy=strategy) as relay:
        answer = await relay.acomplete(messages=HI)
    assert answer.relay is not None and answer.relay.target == "b"


async def test_empty_answer_moves_on_to_the_next_target(providers) -> None:
    a, b, _ = providers
    a.script(Reply.ok("   "))
    b.script(Reply.ok("a real answer"))
    strategy = Fallback(fallback_on=[empty_answer])
    async with Relay(targets=[target(a, "a"), target(b, "b")], strategy=strategy) as relay:
        answer = await relay.acomplete(messages=HI)
    assert answer.content == "a real answer"


async def test_answer_checks_keep_the_default_error_rule(providers) -> None:
    a, b, _ = providers
    a.script(Reply.server_error())
    b.script(Reply.ok('{"ok": true}'))
    strategy = Fallback(fallback_on=[invalid_json])
    async with Relay(targets=[target(a, "a"), target(b, "b")], strategy=strategy) as relay:
        answer = await relay.acomplete(messages=HI)
    assert answer.content == '{"ok": true}'


async def test_every_answer_rejected_raises_all_targets_failed(providers) -> None:
    a, b, _ = providers
    a.script(Reply.ok("no"))
    b.script(Reply.ok("nope"))
    strategy = Fallback(fallback_on=[answer_check(lambda answer: "yes" not in answer.content)])
    async with Relay(targets=[target(a, "a"), target(b, "b")], strategy=strategy) as relay:
        with pytest.raises(AllTargetsFailedError, match="rejected by <lambda>"):
            await relay.acomplete(messages=HI)


async def test_falling_back_is_announced_as_an_event(providers) -> None:
    a, b, _ = providers
    a.script(Reply.overloaded())
    events: list[Event] = []
    relay = Relay(targets=[target(a, "a"), target(b, "b")], listeners=[events.append])
    async with relay:
        await relay.acomplete(messages=HI)
    falling = [e for e in events if isinstance(e, FallingBack)]
    assert [(e.from_target, e.to_target, type(e.error)) for e in falling] == [
        ("a", "b", ProviderError)
    ]


async def test_stream_falls_back_freely_before_its_first_chunk(providers) -> None:
    a, b, _ = providers
    a.script(Reply.overloaded())
    b.script(Reply.ok("streamed from b"))
    async with Relay(targets=[target(a, "a"), target(b, "b")]) as relay:
        stream = await relay.astream(messages=HI)
        answer = await stream.completion()
    assert answer.content == "streamed from b"
    assert stream.relay is not None and stream.relay.target == "b"


async def test_broken_stream_never_mixes_providers_unless_asked(providers) -> None:
    a, b, _ = providers
    a.script(Reply.ok("one two three four").drop_after(3))
    async with Relay(targets=[target(a, "a"), target(b, "b")]) as relay:
        stream = await relay.astream(messages=HI)
        with pytest.raises(StreamInterruptedError) as caught:
            async for _ in stream:
                pass
    assert caught.value.partial.content == "one two"
    assert b.request_count == 0


async def test_continue_streams_asks_the_next_target_to_continue(providers) -> None:
    a, b, _ = providers
    a.script(Reply.ok("one two three four").drop_after(3))
    b.script(Reply.ok(" three four"))
    strategy = Fallback(continue_streams=True)
    async with Relay(targets=[target(a, "a"), target(b, "b")], strategy=strategy) as relay:
        stream = await relay.astream(messages=HI)
        chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three four"
    assert len({c.id for c in chunks}) == 1  # one uninterrupted stream, one id
    sent = b.requests[0].body
    assert sent is not None
    assert sent["messages"][-2] == {"role": "assistant", "content": "one two"}
    assert sent["stream"] is True


async def test_a_continued_stream_is_not_cached_but_an_unbroken_one_is(providers) -> None:
    a, b, _ = providers
    a.script(Reply.ok("one two three four").drop_after(3), Reply.ok("fresh answer"))
    b.script(Reply.ok(" three four"))
    relay = Relay(
        targets=[target(a, "a"), target(b, "b")],
        middleware=[Cache(ttl_s=600)],
        strategy=Fallback(continue_streams=True),
    )
    async with relay:
        joined = await relay.astream(messages=HI).completion()
        again = await relay.acomplete(messages=HI)
        third = await relay.acomplete(messages=HI)

    assert joined.content == "one two three four"
    # The joined answer mixed two targets' generations: the next call asked upstream again.
    assert again.content == "fresh answer" and again.relay is not None
    assert not again.relay.cached
    assert (a.request_count, b.request_count) == (2, 1)
    # That answer came from one target whole, so it was stored.
    assert third.content == "fresh answer" and third.relay is not None and third.relay.cached


async def test_continue_streams_with_no_target_left_raises_with_the_whole_partial(
    providers,
) -> None:
    a, b, _ = providers
    a.script(Reply.ok("one two three four").drop_after(3))
    b.script(Reply.ok(" three four five").drop_after(3))
    strategy = Fallback(continue_streams=True)
    async with Relay(targets=[target(a, "a"), target(b, "b")], strategy=strategy) as relay:
        stream = await relay.astream(messages=HI)
        with pytest.raises(StreamInterruptedError) as caught:
            async for _ in stream:
                pass
    assert caught.value.partial.content == "one two three four"


async def test_context_window_error_with_no_larger_target_raises_all_failed(providers) -> None:
    a, b, _ = providers
    a.script(Reply.context_length())
    chain = [target(a, "a", context_window=8_000), target(b, "b", context_window=4_000)]
    async with Relay(targets=chain) as relay:
        with pytest.raises(AllTargetsFailedError) as caught:
            await relay.acomplete(messages=HI)
    assert [type(x.error) for x in caught.value.attempts] == [ContextWindowError]
    assert b.request_count == 0


def test_fallback_rejects_rules_that_are_not_types_or_predicates() -> None:
    with pytest.raises(ValueError, match="fallback_on"):
        Fallback(fallback_on=["RateLimitError"])  # type: ignore[list-item]


async def test_continue_streams_with_every_continuation_failing_says_broke_once(providers) -> None:
    a, b, _ = providers
    a.script(Reply.ok("one two three four").drop_after(3))
    b.script(Reply.overloaded())
    strategy = Fallback(continue_streams=True)
    async with Relay(targets=[target(a, "a"), target(b, "b")], strategy=strategy) as relay:
        stream = await relay.astream(messages=HI)
        with pytest.raises(StreamInterruptedError) as caught:
            await stream.completion()
    assert str(caught.value).count("broke its stream") == 1
    assert caught.value.partial.content == "one two"
    assert b.request_count == 1


async def test_a_broken_stream_names_the_target_not_the_backend(providers) -> None:
    a, _, _ = providers
    a.script(Reply.ok("one two three").drop_after(2))
    async with Relay(targets=[target(a, "primary")]) as relay:
        stream = await relay.astream(messages=HI)
        with pytest.raises(StreamInterruptedError) as caught:
            await stream.completion()
    assert caught.value.target == "primary"
    assert str(caught.value).startswith("target 'primary' broke its stream")


async def test_a_continuation_that_breaks_too_names_the_target_that_broke() -> None:
    async def first(request: ChatRequest) -> Any:
        yield "one "
        raise ProviderError("dropped the connection")

    async def second(request: ChatRequest) -> Any:
        yield "two "
        raise ProviderError("dropped the connection as well")

    relay = Relay(
        targets=[
            Target(FunctionBackend(first), name="A"),
            Target(FunctionBackend(second), name="B"),
        ],
        strategy=Fallback(continue_streams=True),
    )
    stream = await relay.astream(messages=HI)
    with pytest.raises(StreamInterruptedError) as caught:
        await stream.completion()
    assert caught.value.target == "B"
    assert caught.value.partial.content == "one two "


# --- a model one provider does not have -----------------------------------------------------------

MODEL_NOT_FOUND = Reply.error(
    404,
    "The model `gpt-9` does not exist or you do not have access to it.",
    type="invalid_request_error",
    code="model_not_found",
)


async def test_a_model_missing_on_one_provider_moves_on_to_the_next_by_default() -> None:
    async with FakeProvider() as first, FakeProvider() as second:
        first.default = MODEL_NOT_FOUND
        relay = Relay(
            targets=[target(first, "primary"), target(second, "backup")],
            middleware=[Retry(attempts=3)],
        )
        answer = await relay.acomplete(messages=HI)
        await relay.aclose()

    assert answer.relay is not None and answer.relay.target == "backup"
    assert first.request_count == 1  # not retried: that target has no such model
    assert second.request_count == 1


async def test_a_missing_model_on_the_only_target_is_a_typed_error_that_says_what_to_check() -> (
    None
):
    async with FakeProvider() as provider:
        provider.default = MODEL_NOT_FOUND
        relay = Relay(targets=[target(provider, "only")], middleware=[Retry(attempts=3)])
        with pytest.raises(ModelNotFoundError) as caught:
            await relay.acomplete(messages=HI)
        await relay.aclose()

    assert isinstance(caught.value, InvalidRequestError)
    assert "check the target's model and base_url" in str(caught.value)
    assert provider.request_count == 1


async def test_the_default_fallback_rule_can_be_added_to_without_restating_it() -> None:
    async with FakeProvider() as provider:
        provider.script(Reply.content_filter(), Reply.overloaded(), Reply.ok("third"))
        relay = Relay(
            targets=[target(provider, "a"), target(provider, "b"), target(provider, "c")],
            strategy=Fallback(fallback_on=[default_fallback_on, ContentFilterError]),
        )
        answer = await relay.acomplete(messages=HI)
        provider.script(Reply.invalid_request("bad field"))
        with pytest.raises(InvalidRequestError):
            await relay.acomplete(messages=HI)
        await relay.aclose()

    assert answer.content == "third"
    assert provider.request_count == 4  # the invalid request failed fast at the first target
