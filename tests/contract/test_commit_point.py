"""The commit point is the first chunk with content, a tool call or a finish_reason.

A role-only first chunk (vLLM and many gateways send it the moment they accept a request) is
held back: a break after it is an ordinary failure, and first_token_s waits for real content.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from relaykit import (
    BadResponseError,
    ChatRequest,
    Fallback,
    FunctionBackend,
    OpenAICompatible,
    ProviderConnectionError,
    Relay,
    Retry,
    Target,
    Timeout,
)
from relaykit.contract.schema import ChatCompletionChunk
from relaykit.contract.stream import commits
from relaykit.testing import FakeClock, FakeProvider, Reply

HI = [{"role": "user", "content": "hi"}]


@pytest.fixture
async def pair() -> AsyncIterator[tuple[FakeProvider, FakeProvider]]:
    async with FakeProvider() as a, FakeProvider() as b:
        yield a, b


def target(provider: FakeProvider, name: str) -> Target:
    return Target(OpenAICompatible(provider.url, api_key="sk-test", model=name), name=name)


def chunk(delta: dict[str, object], finish: str | None = None) -> ChatCompletionChunk:
    return ChatCompletionChunk.model_validate(
        {"id": "c", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    )


def test_a_role_only_or_empty_chunk_is_not_the_commit_point() -> None:
    assert not commits(chunk({"role": "assistant", "content": ""}))
    assert not commits(chunk({}))
    assert not commits(ChatCompletionChunk.model_validate({"id": "c", "choices": []}))


def test_content_a_tool_call_or_a_finish_reason_is_the_commit_point() -> None:
    assert commits(chunk({"content": "Hi"}))
    assert commits(chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{"}}]}))
    assert commits(chunk({}, finish="stop"))
    assert commits(chunk({"reasoning_content": "thinking"}))


async def test_a_role_only_chunk_then_a_break_falls_back_like_any_failure(pair) -> None:
    a, b = pair
    a.script(Reply.ok("one two three").drop_after(1))
    b.script(Reply.ok("from b"))
    async with Relay(targets=[target(a, "a"), target(b, "b")]) as relay:
        stream = await relay.astream(messages=HI)
        answer = await stream.completion()
    assert answer.content == "from b"
    assert answer.relay is not None and answer.relay.target == "b"
    assert (a.request_count, b.request_count) == (1, 1)


async def test_a_role_only_chunk_then_a_break_is_retried_on_the_same_target(pair) -> None:
    a, _ = pair
    a.script(Reply.ok("one two three").drop_after(1), Reply.ok("second try"))
    relay = Relay(targets=[target(a, "a")], middleware=[Retry(attempts=2)], clock=FakeClock())
    async with relay:
        answer = await relay.astream(messages=HI).completion()
    assert answer.content == "second try"
    assert a.request_count == 2


async def test_chunks_held_back_before_the_commit_point_reach_the_caller_first(pair) -> None:
    a, _ = pair
    a.script(Reply.ok("one two"))
    async with Relay(targets=[target(a, "a")]) as relay:
        chunks = [c async for c in relay.astream(messages=HI)]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[0].choices[0].delta.content == ""
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "one two"


async def test_first_token_timeout_waits_for_content_not_for_the_role_chunk(pair) -> None:
    clock = FakeClock(auto_advance=False)
    _, b = pair
    async with FakeProvider(clock=clock) as slow:
        slow.script(Reply.ok("late words").pause_after(1, 20))
        b.script(Reply.ok("quick"))
        relay = Relay(
            targets=[target(slow, "slow"), target(b, "b")],
            middleware=[Timeout(first_token_s=10)],
            clock=clock,
        )
        async with relay:
            started = clock.now()
            answer = await clock.drive(relay.astream(messages=HI).completion())
    assert answer.content == "quick"
    assert clock.now() - started == pytest.approx(10, abs=1.0)
    assert (slow.request_count, b.request_count) == (1, 1)


async def test_a_stream_that_ends_after_only_its_role_chunk_is_a_bad_response() -> None:
    async def nothing(request: ChatRequest) -> AsyncIterator[object]:
        yield {"id": "c", "choices": [{"index": 0, "delta": {"role": "assistant"}}]}

    relay = Relay(targets=[FunctionBackend(nothing, name="mute")])
    with pytest.raises(BadResponseError, match="ended its stream after 1 chunk and no content"):
        await relay.astream(messages=HI)


async def test_a_stream_cut_cleanly_before_content_is_a_retryable_failure(pair) -> None:
    a, _ = pair
    a.script(Reply.ok("one two").end_after(1))
    async with Relay(targets=[target(a, "a")]) as relay:
        with pytest.raises(ProviderConnectionError, match="no finish_reason") as caught:
            await relay.astream(messages=HI)
    assert caught.value.retryable
    assert Fallback().moves_on(caught.value)
