"""ChatStream: finalizers run once however a stream ends, and a broken stream says so once."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest

from relaykit import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatStream,
    ProviderConnectionError,
    RelayError,
    StreamInterruptedError,
)

Finished = list[tuple[bool, RelayError | None]]


def chunk(content: str | None = None, finish_reason: str | None = None) -> ChatCompletionChunk:
    delta: dict[str, Any] = {"content": content} if content is not None else {}
    return ChatCompletionChunk.model_validate(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        }
    )


def recording(stream: ChatStream) -> Finished:
    """What each finalizer call saw: (ended_cleanly, error)."""
    finished: Finished = []
    stream.on_finish(lambda s, error: finished.append((s.ended_cleanly, error)))
    return finished


async def breaking_after(
    *contents: str, error: BaseException
) -> AsyncIterator[ChatCompletionChunk]:
    for content in contents:
        yield chunk(content)
    raise error


# --- finalizers --------------------------------------------------------------------------------


async def test_breaking_out_of_a_stream_still_runs_its_finalizers_once() -> None:
    stream = ChatStream.replay([chunk("Hel"), chunk("lo"), chunk(finish_reason="stop")])
    finished = recording(stream)

    async for _ in stream:
        break  # an async iterator object is not closed by break: only its collection notices
    del stream
    gc.collect()
    await asyncio.sleep(0)  # the finalizers run as a callback on their loop

    assert finished == [(False, None)]


async def test_a_stream_that_references_itself_finishes_when_collected() -> None:
    finished: Finished = []

    class Span:
        """Holds its stream, which holds it back: a cycle that only gc.collect frees."""

        def __init__(self, stream: ChatStream) -> None:
            self.stream = stream
            stream.on_finish(self.end)

        def end(self, stream: ChatStream, error: RelayError | None) -> None:
            finished.append((self.stream.ended_cleanly, error))

    stream = ChatStream.replay([chunk("Hel"), chunk("lo"), chunk(finish_reason="stop")])
    Span(stream)

    async for _ in stream:
        break
    del stream
    assert finished == []  # still held by the cycle
    gc.collect()
    await asyncio.sleep(0)

    assert finished == [(False, None)]


async def test_a_finalizer_failing_at_collection_is_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stream = ChatStream.replay([chunk("Hel"), chunk(finish_reason="stop")])

    def broken(s: ChatStream, error: RelayError | None) -> None:
        raise RuntimeError("finalizer bug")

    stream.on_finish(broken)
    async for _ in stream:
        break
    del stream
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        gc.collect()  # pytest turns an exception raised in __del__ into a failure
        await asyncio.sleep(0)

    assert "finalizer bug" in caplog.text  # reported by the loop, not raised at the collector


async def test_a_stream_dropped_on_another_thread_finishes_on_its_own_loop() -> None:
    stream = ChatStream.replay([chunk("Hel"), chunk("lo"), chunk(finish_reason="stop")])
    threads: list[threading.Thread] = []
    stream.on_finish(lambda s, error: threads.append(threading.current_thread()))
    async for _ in stream:
        break
    held = [stream]
    del stream

    await asyncio.to_thread(held.clear)  # like a SyncChatStream dropped by sync code
    for _ in range(10):  # bounded: the callback arrives through the loop's self-pipe
        if threads:
            break
        await asyncio.sleep(0)

    assert threads == [threading.current_thread()]


def test_a_stream_collected_after_its_loop_closed_finishes_at_once() -> None:
    finished: Finished = []

    async def open_and_break() -> ChatStream:
        stream = ChatStream.replay([chunk("Hel"), chunk(finish_reason="stop")])
        stream.on_finish(lambda s, error: finished.append((s.ended_cleanly, error)))
        async for _ in stream:
            break
        return stream

    stream = asyncio.run(open_and_break())
    del stream
    gc.collect()

    assert finished == [(False, None)]


async def test_cancelling_the_reader_runs_the_streams_finalizers() -> None:
    never = asyncio.Event()

    async def stalled() -> AsyncIterator[ChatCompletionChunk]:
        yield chunk("lo")
        await never.wait()
        yield chunk(finish_reason="stop")

    stream = ChatStream(chunk("Hel"), stalled(), target="main")
    finished = recording(stream)

    async def read() -> None:
        async for _ in stream:
            pass

    reader = asyncio.create_task(read())
    for _ in range(5):  # bounded: let the reader reach the stalled chunk
        await asyncio.sleep(0)
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader

    assert finished == [(False, None)]
    assert stream.partial().content == "Hello"


async def test_a_non_relay_exception_runs_the_finalizers_and_propagates_unchanged() -> None:
    stream = ChatStream(chunk("Hel"), breaking_after("lo", error=ValueError("bug")))
    finished = recording(stream)

    with pytest.raises(ValueError, match="bug"):
        async for _ in stream:
            pass

    assert finished == [(False, None)]


async def test_closing_a_stream_twice_runs_its_finalizers_once() -> None:
    stream = ChatStream.replay([chunk("Hel"), chunk("lo"), chunk(finish_reason="stop")])
    finished = recording(stream)

    await anext(stream)
    await stream.aclose()
    await stream.aclose()
    del stream
    gc.collect()

    assert finished == [(False, None)]


async def test_a_stream_read_to_its_end_is_not_finished_again_when_collected() -> None:
    stream = ChatStream.replay([chunk("Hel"), chunk("lo"), chunk(finish_reason="stop")])
    finished = recording(stream)

    assert (await stream.completion()).content == "Hello"
    del stream
    gc.collect()

    assert finished == [(True, None)]


# --- interruption --------------------------------------------------------------------------------


async def test_a_stream_rewrapped_by_a_middleware_says_broke_once_with_the_whole_partial() -> None:
    dropped = ProviderConnectionError("dropped the connection", target="main")
    inner = ChatStream(chunk("Hel"), breaking_after("lo", error=dropped), target="main")

    async def passing_on(stream: ChatStream) -> AsyncIterator[ChatCompletionChunk]:
        async for piece in stream:  # re-raises the inner StreamInterruptedError as it is
            yield piece

    rest = passing_on(inner)
    outer = ChatStream(await anext(rest), rest, target="main")
    finished = recording(outer)

    with pytest.raises(StreamInterruptedError) as caught:
        async for _ in outer:
            pass

    message = str(caught.value)
    assert message.count("broke its stream") == 1
    assert message.startswith(
        "target 'main' broke its stream after 2 chunks: dropped the connection."
    )
    assert caught.value.partial.content == "Hello"
    assert caught.value.__cause__ is dropped
    assert finished == [(False, caught.value)]


# --- from_completion -----------------------------------------------------------------------------


def whole_answer() -> ChatCompletion:
    return ChatCompletion.model_validate(
        {
            "id": "chatcmpl-9",
            "object": "chat.completion",
            "created": 1,
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Paris."},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
        }
    )


@pytest.mark.parametrize("include_usage", [True, False])
async def test_a_whole_answer_replays_as_a_stream_that_assembles_back(include_usage: bool) -> None:
    answer = whole_answer()

    stream = ChatStream.from_completion(answer, include_usage=include_usage, target="cache")
    chunks = [piece async for piece in stream]

    assert stream.target == "cache"
    assert stream.ended_cleanly
    assert any(not piece.choices for piece in chunks) is include_usage  # the usage chunk
    assembled = stream.partial()
    assert assembled.content == "Paris."
    assert assembled.choices[0].finish_reason == "stop"
    assert (assembled.usage == answer.usage) is include_usage
