"""FunctionBackend: any sync or async function answers like a provider, failures included."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from relaykit import (
    BadResponseError,
    CallContext,
    ChatCompletion,
    ChatRequest,
    FunctionBackend,
    ProviderError,
    RateLimitError,
    RelayError,
    StreamInterruptedError,
    SystemClock,
)


def request(stream: bool = False, **fields: Any) -> ChatRequest:
    return ChatRequest.model_validate(
        {"messages": [{"role": "user", "content": "Hi"}], "stream": stream, **fields}
    )


def context() -> CallContext:
    return CallContext(clock=SystemClock())


async def test_a_sync_function_returning_text_answers_from_a_worker_thread() -> None:
    seen: list[tuple[str, ChatRequest]] = []

    def answer(req: ChatRequest) -> str:
        seen.append((threading.current_thread().name, req))
        return "Bonjour"

    completion = await FunctionBackend(answer, model="local").acomplete(request(), context())

    assert completion.content == "Bonjour"
    assert completion.model == "local"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.object == "chat.completion"
    assert len(seen) == 1
    thread_name, received = seen[0]
    assert thread_name != threading.main_thread().name  # a blocking function never stalls the loop
    assert received.messages[0].content == "Hi"


async def test_an_async_function_returning_a_dict_or_completion_is_used_as_is() -> None:
    data = {
        "id": "chatcmpl-x",
        "object": "chat.completion",
        "model": "mine",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }

    async def as_dict(req: ChatRequest) -> dict[str, Any]:
        return data

    async def as_model(req: ChatRequest) -> ChatCompletion:
        return ChatCompletion.model_validate(data)

    from_dict = await FunctionBackend(as_dict).acomplete(request(), context())
    from_model = await FunctionBackend(as_model).acomplete(request(), context())

    streamed = await (
        await FunctionBackend(as_model).astream(request(True), context())
    ).completion()

    assert from_dict.model_dump(exclude_none=True) == data
    assert from_model.model_dump(exclude_none=True) == data
    assert streamed.content == "ok" and streamed.id == "chatcmpl-x"


async def test_the_name_defaults_to_the_functions_name() -> None:
    def local_llama(req: ChatRequest) -> str:
        return ""

    assert FunctionBackend(local_llama).name == "local_llama"
    assert FunctionBackend(local_llama, name="llama").name == "llama"


async def test_streaming_a_text_answer_replays_it_as_chunks_with_usage_when_asked() -> None:
    def answer(req: ChatRequest) -> dict[str, Any]:
        return {
            "id": "c1",
            "choices": [{"message": {"content": "Hello"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
        }

    stream = await FunctionBackend(answer).astream(
        request(True, stream_options={"include_usage": True}), context()
    )
    completion = await stream.completion()

    assert completion.content == "Hello"
    assert completion.usage is not None and completion.usage.total_tokens == 4


async def test_a_generator_of_text_pieces_streams_chunk_by_chunk() -> None:
    def pieces(req: ChatRequest) -> Iterator[str]:
        yield from ["Hel", "lo", "!"]

    stream = await FunctionBackend(pieces, name="gen").astream(request(True), context())
    chunks = [chunk async for chunk in stream]

    assert [c.choices[0].delta.content for c in chunks] == ["Hel", "lo", "!", None]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert stream.partial().content == "Hello!"
    assert stream.target == "gen"


async def test_an_async_generator_streams_and_a_plain_call_assembles_it() -> None:
    async def pieces(req: ChatRequest) -> AsyncIterator[str]:
        for piece in ["a", "b", "c"]:
            yield piece

    backend = FunctionBackend(pieces)

    streamed = await (await backend.astream(request(True), context())).completion()
    plain = await backend.acomplete(request(), context())

    assert streamed.content == plain.content == "abc"
    assert plain.choices[0].finish_reason == "stop"


async def test_an_exception_becomes_a_retryable_provider_error_naming_the_target() -> None:
    def broken(req: ChatRequest) -> str:
        raise RuntimeError("GPU fell off")

    with pytest.raises(ProviderError, match="raised RuntimeError: GPU fell off") as caught:
        await FunctionBackend(broken, name="local").acomplete(request(), context())

    assert caught.value.retryable
    assert caught.value.target == "local"
    assert isinstance(caught.value.__cause__, RuntimeError)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
async def test_a_key_in_the_exception_text_is_masked(stream: bool) -> None:
    key = "sk-proj-" + "x" * 40

    def leaky(req: ChatRequest) -> str:
        raise RuntimeError(f"upstream refused key {key}")

    def leaky_pieces(req: ChatRequest) -> Iterator[str]:
        yield "one"
        raise RuntimeError(f"upstream refused key {key}")

    with pytest.raises(RelayError) as caught:
        if stream:
            backend = FunctionBackend(leaky_pieces, name="local")
            await (await backend.astream(request(True), context())).completion()
        else:
            await FunctionBackend(leaky, name="local").acomplete(request(), context())

    assert "raised RuntimeError: upstream refused key **********" in str(caught.value)
    assert key not in str(caught.value) and key not in repr(caught.value)


async def test_a_relaykit_error_passes_through_with_its_type() -> None:
    async def limited(req: ChatRequest) -> str:
        raise RateLimitError("answered 429", retry_after=2.0)

    with pytest.raises(RateLimitError) as caught:
        await FunctionBackend(limited, name="local").acomplete(request(), context())

    assert caught.value.retry_after == 2.0
    assert caught.value.target == "local"


async def test_a_generator_failing_after_its_first_piece_interrupts_the_stream() -> None:
    def pieces(req: ChatRequest) -> Iterator[str]:
        yield "partial"
        raise RuntimeError("worker died")

    stream = await FunctionBackend(pieces, name="local").astream(request(True), context())

    with pytest.raises(StreamInterruptedError) as caught:
        await stream.completion()

    assert caught.value.partial.content == "partial"
    assert caught.value.target == "local"


async def test_an_unsupported_return_type_is_a_bad_response() -> None:
    with pytest.raises(BadResponseError, match="returned int"):
        await FunctionBackend(lambda req: 42).acomplete(request(), context())


async def test_an_empty_stream_is_a_bad_response_before_the_commit_point() -> None:
    with pytest.raises(BadResponseError, match="ended its stream after 0 chunks and no content"):
        await FunctionBackend(lambda req: iter(())).astream(request(True), context())


async def test_closing_a_stream_early_closes_the_functions_async_generator_at_once() -> None:
    events: list[str] = []

    async def pieces(req: ChatRequest) -> AsyncIterator[str]:
        try:
            for piece in ["Hel", "lo", "!"]:
                yield piece
                events.append(f"sent {piece}")
        finally:
            events.append("released")  # e.g. a local model's GPU slot

    stream = await FunctionBackend(pieces).astream(request(True), context())
    await anext(stream)
    await anext(stream)
    await stream.aclose()

    assert events == ["sent Hel", "released"]  # before the loop had a turn to collect it
    assert stream.partial().content == "Hello"


async def test_closing_a_stream_early_closes_the_functions_generator_at_once() -> None:
    events: list[str] = []

    def pieces(req: ChatRequest) -> Iterator[str]:
        try:
            yield from ["Hel", "lo", "!"]
        finally:
            events.append("released")

    stream = await FunctionBackend(pieces).astream(request(True), context())
    await anext(stream)
    await stream.aclose()

    assert events == ["released"]
    assert stream.partial().content == "Hel"
