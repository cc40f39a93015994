"""FakeProvider checked over real HTTP with a plain aiohttp client, independent of relaykit."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from relaykit import CallContext, ChatRequest, InvalidRequestError, OpenAICompatible, SystemClock
from relaykit.testing import FakeProvider, RecordedRequest, Reply

WEATHER_CALLS = [
    {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
    },
    {
        "id": "call_2",
        "type": "function",
        "function": {"name": "get_time", "arguments": '{"timezone":"Europe/Paris"}'},
    },
]


@pytest.fixture
async def provider() -> AsyncIterator[FakeProvider]:
    async with FakeProvider() as running:
        yield running


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def chat_body(content: str = "Hi", **fields: Any) -> dict[str, Any]:
    return {"model": "gpt-test", "messages": [{"role": "user", "content": content}], **fields}


async def post_chat(
    session: aiohttp.ClientSession, provider: FakeProvider, **fields: Any
) -> tuple[int, dict[str, Any]]:
    async with session.post(f"{provider.url}/chat/completions", json=chat_body(**fields)) as resp:
        return resp.status, await resp.json(content_type=None)


async def stream_raw(
    session: aiohttp.ClientSession, provider: FakeProvider, **fields: Any
) -> tuple[aiohttp.ClientResponse, bytes]:
    body = chat_body(stream=True, **fields)
    async with session.post(f"{provider.url}/chat/completions", json=body) as resp:
        return resp, await resp.read()


def sse_data(raw: bytes) -> list[str]:
    """A minimal SSE parser: data fields of each event, comments and other fields ignored."""
    text = raw.decode().replace("\r\n", "\n")
    payloads = []
    for block in text.split("\n\n"):
        data = [
            line[5:].removeprefix(" ") for line in block.split("\n") if line.startswith("data:")
        ]
        if data:
            payloads.append("\n".join(data))
    return payloads


def stream_chunks(raw: bytes) -> list[dict[str, Any]]:
    payloads = sse_data(raw)
    assert payloads[-1] == "[DONE]"
    return [json.loads(payload) for payload in payloads[:-1]]


def assemble(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """Rebuild a message from chunks the way an OpenAI client would."""
    message: dict[str, Any] = {}
    calls: dict[int, dict[str, Any]] = {}
    for chunk in chunks:
        for choice in chunk["choices"]:
            for key, value in choice["delta"].items():
                if key == "tool_calls":
                    for part in value:
                        call = calls.setdefault(part["index"], {"function": {"arguments": ""}})
                        call.update({k: part[k] for k in ("id", "type") if k in part})
                        function = part.get("function", {})
                        call["function"]["arguments"] += function.get("arguments", "")
                        if "name" in function:
                            call["function"]["name"] = function["name"]
                elif isinstance(value, str) and isinstance(message.get(key), str):
                    message[key] += value
                else:
                    message[key] = value
    if calls:
        message["tool_calls"] = [calls[index] for index in sorted(calls)]
    return message


def signalling(arrived: asyncio.Event, reply: Reply) -> Callable[[RecordedRequest], Reply]:
    """A scripted source that tells the test its request has reached the server."""

    def source(request: RecordedRequest) -> Reply:
        arrived.set()
        return reply

    return source


async def test_plain_completion_has_openai_shape(
    provider: FakeProvider, session: aiohttp.ClientSession
) -> None:
    provider.script(Reply.ok("Hello there world", extra={"service_tier": "default"}))

    status, body = await post_chat(session, provider)

    assert status == 200
    assert body == {
        "id": "chatcmpl-fake-1",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-test",
        "system_fingerprint": "fp_fake",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello there world"},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13},
        "service_tier": "default",
    }


async def test_stream_assembles_to_the_plain_message(
    provider: FakeProvider, session: aiohttp.ClientSession
) -> None:
    reply = Reply.ok("Hello brave new world ", extra={"service_tier": "default"})
    provider.script(reply, reply)

    resp, raw = await stream_raw(session, provider)
    _, plain = await post_chat(session, provider)

    assert resp.headers["Content-Type"] == "text/event-stream"
    assert resp.headers["Cache-Control"] == "no-cache"
    chunks = stream_chunks(raw)
    assert [c["choices"][0]["delta"] for c in chunks] == [
        {"role": "assistant", "content": ""},
        {"content": "Hello"},
        {"content": " brave"},
        {"content": " new"},
        {"content": " world"},
        {"content": " "},
        {},
    ]
    assert [c["choices"][0]["finish_reason"] for c in chunks][-2:] == [None, "stop"]
    assert {(c["id"], c["created"], c["model"], c["object"]) for c in chunks} == {
        ("chatcmpl-fake-1", 1700000000, "gpt-test", "chat.completion.chunk")
    }
    assert all(c["service_tier"] == "default" and "usage" not in c for c in chunks)
    assert assemble(chunks) == plain["choices"][0]["message"]


async def test_stream_sends_usage_chunk_only_when_asked(
    provider: FakeProvider, session: aiohttp.ClientSession
) -> None:
    _, raw = await stream_raw(session, provider, stream_options={"include_usage": True})

    chunks = stream_chunks(raw)
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"


async def test_tool_calls_stream_openai_style(
    provider: FakeProvider, session: aiohttp.ClientSession
) -> None:
    provider.script(
        Reply.ok(None, tool_calls=WEATHER_CALLS), Reply.ok(None, tool_calls=WEATHER_CALLS)
    )

    _, plain = await post_chat(session, provider)
    _, raw = await stream_raw(session, provider)

    choice = plain["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"] == {"role": "assistant", "content": None, "tool_calls": WEATHER_CALLS}
    chunks = stream_chunks(raw)
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert deltas[1] == {
        "tool_calls": [
            {
                "index": 0,
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": ""},
            }
        ]
    }
    argument_pieces = [d["tool_calls"][0]["function"]["arguments"] for d in deltas[2:5]]
    assert len(argument_pieces) == 3
    assert "".join(argument_pieces) == '{"city":"Paris"}'
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert assemble(chunks) == choice["message"]


async def test_chunking_logprobs_and_message_extra_survive_streaming(
    provider: FakeProvider, session: aiohttp.ClientSession
) -> None:
    logprobs = {"content": [{"token": "abc", "logprob": -0.1, "bytes": None, "top_logprobs": []}]}
    reply = Reply.ok(
        "abcdefg",
        chunk_size=3,
        logprobs=logprobs,
        message_extra={"reasoning_content": "thinking", "refusal": None},
    )
    provider.script(reply, reply)

    _, raw = await stream_raw(session, provider)
    _, plain = await post_chat(session, provider)

    choices = [c["choices"][0] for c in stream_chunks(raw)]
    assert [c["delta"] for c in choices[:3]] == [
        {"role": "assistant", "content": "", "refusal": None},
        {"reasoning_content": "thinking"},
        {"content": "abc"},
    ]
    assert [c["delta"].get("content") for c in choices[3:5]] == ["def", "g"]
    assert [c["logprobs"] for c in choices] == [None, None, logprobs, None, None, None]
    assert plain["choices"][0]["logprobs"] == logprobs
    assert assemble(stream_chunks(raw)) == plain["choices"][0]["message"]


async def test_requests_are_recorded(
    provider: FakeProvider, session: aiohttp.ClientSession
) -> None:
    await post_chat(session, provider)
    headers = {"Authorization": "Bearer sk-test", "X-Custom": "yes"}
    async with session.post(f"{provider.url}/chat/completions", data=b"{oops", headers=headers):
        pass

    first, second = provider.requests
    assert provider.request_count == 2
    assert (first.method, first.path, first.body) == ("POST", "/v1/chat/completions", chat_body())
    assert json.loads(first.raw) == chat_body()
    assert not first.stream
    assert second.body is None
    assert second.raw == b"{oops"
    assert second.headers["Authorization"] == "Bearer sk-test"
    assert second.header("x-custom") == "yes"


async def test_script_is_consumed_in_order_then_default(
    provider: FakeProvider, session: aiohttp.ClientSession
) -> None:
    provider.script(Reply.ok("first"), Reply.error(500))
    provider.default = Reply.ok("fallback")

    results = [await post_chat(session, provider) for _ in range(3)]

    assert [status for status, _ in results] == [200, 500, 200]
    assert results[0][1]["choices"][0]["message"]["content"] == "first"
    assert results[2][1]["choices"][0]["message"]["content"] == "fallback"
    assert results[2][1]["id"] == "chatcmpl-fake-3"


async def test_callables_and_echo_answer_from_the_request(
    provider: FakeProvider, session: aiohttp.ClientSession
) -> None:
    def shout(request: RecordedRequest) -> Reply:
        assert request.body is not None
        return Reply.ok(request.body["messages"][-1]["content"].upper())

    provider.script(shout, Reply.echo())
    provider.default = lambda request: Reply.ok(f"call {provider.request_count}")

    contents = []
    for content in ("quiet", "echo me", "x", "y"):
        _, body = await post_chat(session, provider, content=content)
        contents.append(body["choices"][0]["message"]["content"])

    assert contents == ["QUIET", "echo me", "call 3", "call 4"]


async def test_echo_uses_multipart_text_and_counts_its_own_words(
    provider: FakeProvider, session: aiohttp.ClientSession
) -> None:
    provider.default = Reply.echo()
    parts = [
        {"type": "text", "text": "multi "},
        {"type": "image_url"},
        {"type": "text", "text": "part"},
    ]

    _, body = await post_chat(session, provider, content=parts)

    assert body["choices"][0]["message"]["content"] == "multi part"
    assert body["usage"]["completion_tokens"] == 2


async def test_error_reply_carries_status_headers_and_body(
    provider: FakeProvider, session: aiohttp.ClientSession
) -> None:
    provider.script(
        Reply.error(
            429,
            "slow down",
            type="requests",
            code="rate_limit_exceeded",
            retry_after=2.0,
            retry_after_ms=1500,
            should_retry=False,
            headers={"x-request-id": "req_1"},
        )
    )

    async with session.post(f"{provider.url}/chat/completions", json=chat_body()) as resp:
        body = await resp.json()

    assert resp.status == 429
    assert resp.headers["Retry-After"] == "2"
    assert resp.headers["retry-after-ms"] == "1500"
    assert resp.headers["x-should-retry"] == "false"
    assert resp.headers["x-request-id"] == "req_1"
    assert body == {
        "error": {
            "message": "slow down",
            "type": "requests",
            "param": None,
            "code": "rate_limit_exceeded",
        }
    }


@pytest.mark.parametrize(
    ("reply", "status", "error_type", "code"),
    [
        (Reply.rate_limited(), 429, "requests", "rate_limit_exceeded"),
        (Reply.quota(), 429, "insufficient_quota", "insufficient_quota"),
        (Reply.context_length(), 400, "invalid_request_error", "context_length_exceeded"),
        (Reply.auth_error(), 401, "invalid_request_error", "invalid_api_key"),
        (Reply.invalid_request("bad", param="temperature"), 400, "invalid_request_error", None),
        (Reply.content_filter(), 400, "invalid_request_error", "content_filter"),
        (Reply.server_error(), 500, "server_error", None),
        (Reply.overloaded(), 503, "server_error", None),
    ],
)
async def test_error_shortcuts_even_for_streaming_requests(
    provider: FakeProvider,
    session: aiohttp.ClientSession,
    reply: Reply,
    status: int,
    error_type: str,
    code: str | None,
) -> None:
    provider.script(reply)

    resp, raw = await stream_raw(session, provider)

    assert resp.status == status
    assert resp.headers["Content-Type"] == "application/json"
    error = json.loads(raw)["error"]
    assert (error["type"], error["code"]) == (error_type, code)
    assert error["message"]


async def test_raw_error_body_date_retry_after_and_html_page(
    provider: FakeProvider, session: aiohttp.ClientSession
) -> None:
    date = "Wed, 21 Oct 2015 07:28:00 GMT"
    provider.script(
        Reply.error(400, body="plain words", retry_after=date).with_headers(
            {"content-type": "text/plain"}
        ),
        Reply.html_error(),
    )

    async with session.post(f"{provider.url}/chat/completions", json=chat_body()) as resp:
        assert (resp.status, await resp.text()) == (400, "plain words")
        assert resp.headers.getall("Content-Type") == ["text/plain"]
        assert resp.headers["Retry-After"] == date
    async with session.post(f"{provider.url}/chat/completions", json=chat_body()) as resp:
        assert resp.status == 502
        assert resp.content_type == "text/html"
        assert "502 Bad Gateway" in await resp.text()


async def test_with_headers_applies_to_success(
    provider: FakeProvider, session: aiohttp.ClientSession
) -> None:
    provider.script(Reply.ok().with_headers({"x-ratelimit-remaining-requests": "9"}))

    resp, _ = await stream_raw(session, provider)

    assert resp.headers["x-ratelimit-remaining-requests"] == "9"


async def test_drop_after_cuts_the_stream(
    provider: FakeProvider, session: aiohttp.ClientSession
) -> None:
    provider.script(Reply.ok("one two three four").drop_after(2))
    received: list[bytes] = []

    with pytest.raises(aiohttp.ClientPayloadError):
        async with session.post(
            f"{provider.url}/chat/completions", json=chat_body(stream=True)
        ) as resp:
            assert resp.status == 200
            async for line in resp.content:
                received.append(line)

    assert [json.loads(d)["choices"][0]["delta"] for d in sse_data(b"".join(received))] == [
        {"role": "assistant", "content": ""},
        {"content": "one"},
    ]


async def test_drop_after_gives_plain_request_no_response(
    provider: FakeProvider, session: aiohttp.ClientSession
) -> None:
    provider.script(Reply.ok().drop_after(0))

    with pytest.raises(aiohttp.ServerDisconnectedError):
        await post_chat(session, provider)


async def test_hang_times_the_client_out_and_stop_is_prompt() -> None:
    provider = FakeProvider()
    await provider.start()
    arrived = asyncio.Event()
    provider.script(Reply.hang(), signalling(arrived, Reply.hang()))
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.2)) as session:
        with pytest.raises(TimeoutError):
            await post_chat(session, provider)
    async with aiohttp.ClientSession() as session:
        pending = asyncio.create_task(post_chat(session, provider))
        await arrived.wait()
        started = time.monotonic()
        await provider.stop()
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await pending

    assert time.monotonic() - started < 0.5


async def test_stall_after_keeps_connection_open_silently(
    provider: FakeProvider, session: aiohttp.ClientSession
) -> None:
    provider.script(Reply.ok("a b c").stall_after(2), Reply.ok().stall_after(0))
    received: list[bytes] = []
    idle = aiohttp.ClientTimeout(sock_read=0.1)

    with pytest.raises(TimeoutError):
        async with session.post(
            f"{provider.url}/chat/completions", json=chat_body(stream=True), timeout=idle
        ) as resp:
            async for line in resp.content:
                received.append(line)
    with pytest.raises(TimeoutError):
        async with session.post(
            f"{provider.url}/chat/completions", json=chat_body(), timeout=idle
        ) as resp:
            assert resp.status == 200
            await resp.read()

    assert len(sse_data(b"".join(received))) == 2


async def test_delays_are_real_and_stop_cuts_them_short() -> None:
    provider = FakeProvider()
    await provider.start()
    arrived = asyncio.Event()
    slow = Reply.ok("a b").delayed(0.05).with_chunk_delay(0.02)
    provider.script(slow, signalling(arrived, Reply.ok().delayed(30)))
    async with aiohttp.ClientSession() as session:
        started = time.monotonic()
        _, raw = await stream_raw(session, provider)  # real-time: checks the delays happen
        assert time.monotonic() - started >= 0.05 + 3 * 0.02
        assert len(stream_chunks(raw)) == 4

        pending = asyncio.create_task(post_chat(session, provider))
        await arrived.wait()
        started = time.monotonic()
        await provider.stop()
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await pending
        assert time.monotonic() - started < 0.5


async def test_truncated_json(provider: FakeProvider, session: aiohttp.ClientSession) -> None:
    provider.script(Reply.truncated_json(), Reply.truncated_json())

    async with session.post(f"{provider.url}/chat/completions", json=chat_body()) as resp:
        text = await resp.text()
    _, raw = await stream_raw(session, provider)

    assert resp.status == 200
    assert text.startswith('{"id": "chatcmpl-fake-1"')
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)
    assert raw.endswith(b'\n\ndata: {"id": "chatc')
    assert json.loads(sse_data(raw)[0])["choices"][0]["delta"]["role"] == "assistant"


async def test_malformed_sse(provider: FakeProvider, session: aiohttp.ClientSession) -> None:
    provider.script(Reply.malformed_sse(), Reply.malformed_sse())

    _, raw = await stream_raw(session, provider)
    async with session.post(f"{provider.url}/chat/completions", json=chat_body()) as resp:
        assert resp.content_type == "application/json"
        assert await resp.read() == b"not json"

    assert raw.startswith(b"data: not json\n\n")
    assert sse_data(raw)[-1] == "[DONE]"


@pytest.mark.parametrize("style", ["plain", "crlf", "comments", "coalesced", "split"])
async def test_sse_styles_all_assemble_to_the_same_message(
    provider: FakeProvider, session: aiohttp.ClientSession, style: Any
) -> None:
    provider.script(Reply.ok("same words either way", sse_style=style))

    _, raw = await stream_raw(session, provider)

    assert assemble(stream_chunks(raw))["content"] == "same words either way"
    if style == "crlf":
        assert raw.count(b"\r\n\r\n") == 7
    if style == "comments":
        assert raw.startswith(b": keep-alive\n\nevent: message\nid: 1\ndata: {")


async def test_models_route_and_unprefixed_chat_route(
    provider: FakeProvider, session: aiohttp.ClientSession
) -> None:
    root = provider.url.removesuffix("/v1")

    async with session.get(f"{provider.url}/models") as resp:
        models = await resp.json()
    async with session.post(f"{root}/chat/completions", json={"messages": []}) as resp:
        completion = await resp.json()

    assert models["object"] == "list"
    assert models["data"][0]["id"] == "fake-model"
    assert models["data"][0]["owned_by"] == "relaykit-fake"
    assert completion["model"] == "fake-model"
    assert [r.path for r in provider.requests] == ["/v1/models", "/chat/completions"]


async def test_reset_forgets_everything(
    provider: FakeProvider, session: aiohttp.ClientSession
) -> None:
    provider.script(Reply.error(500), Reply.error(500))
    provider.default = Reply.error(503)
    await post_chat(session, provider)

    provider.reset()
    status, body = await post_chat(session, provider)

    assert status == 200
    assert body["id"] == "chatcmpl-fake-1"
    assert body["choices"][0]["message"]["content"] == "Hello from FakeProvider."
    assert provider.request_count == 1


def test_sync_context_manager_serves_from_a_thread() -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with FakeProvider(model="sync-model") as provider:
        provider.script(Reply.ok("from a thread"), Reply.rate_limited(retry_after=3))
        request = urllib.request.Request(
            f"{provider.url}/chat/completions",
            data=json.dumps({"messages": []}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with opener.open(request, timeout=2) as resp:
            body = json.load(resp)
        with pytest.raises(urllib.error.HTTPError) as error:
            opener.open(request, timeout=2)
        error.value.close()
        address = urllib.parse.urlsplit(provider.url)

    assert body["model"] == "sync-model"
    assert body["choices"][0]["message"]["content"] == "from a thread"
    assert error.value.code == 429
    assert error.value.headers["Retry-After"] == "3"
    assert provider.request_count == 2
    with socket.socket() as probe:
        assert probe.connect_ex((address.hostname, address.port)) != 0, "server still listening"


async def test_url_requires_a_running_server() -> None:
    provider = FakeProvider()

    with pytest.raises(RuntimeError):
        _ = provider.url


async def test_a_body_over_the_limit_is_recorded_and_answered_413() -> None:
    async with FakeProvider(max_body_bytes=1000) as provider:
        client = OpenAICompatible(provider.url, api_key="sk-test", model="m")
        big = [{"role": "user", "content": "x" * 2000}]
        try:
            with pytest.raises(InvalidRequestError) as caught:
                await client.acomplete(
                    ChatRequest.model_validate({"messages": big}), CallContext(SystemClock())
                )
            small = await client.acomplete(
                ChatRequest.model_validate({"messages": [{"role": "user", "content": "hi"}]}),
                CallContext(SystemClock()),
            )
        finally:
            await client.aclose()

    assert caught.value.status == 413
    assert "FakeProvider(max_body_bytes=...)" in str(caught.value)
    assert provider.request_count == 2
    assert provider.requests[0].oversize_bytes is not None
    assert provider.requests[0].oversize_bytes > 1000
    assert provider.requests[0].body is None
    assert provider.requests[1].oversize_bytes is None and small.content


def test_the_body_limit_must_be_a_positive_whole_number() -> None:
    with pytest.raises(ValueError, match="max_body_bytes must be at least 1"):
        FakeProvider(max_body_bytes=0)
    with pytest.raises(ValueError, match="max_body_bytes must be a whole number"):
        FakeProvider(max_body_bytes="1MB")  # type: ignore[arg-type]


@pytest.mark.parametrize("style", ["json", "php", "raw"])
async def test_echo_credentials_repeats_headers_and_query_in_the_style_asked(style: str) -> None:
    key = 'k/e"y'
    async with FakeProvider() as provider:
        provider.script(Reply.echo_credentials(style=style))  # type: ignore[arg-type]
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{provider.url}/chat/completions?key=q1", json={}, headers={"x-api-key": key}
            ) as response,
        ):
            status, text = response.status, await response.text()

    assert status == 401
    escaped = json.dumps(key)[1:-1]
    expected = {"json": escaped, "php": escaped.replace("/", "\\/"), "raw": key}[style]
    assert f"x-api-key: {expected}" in text.replace("X-Api-Key", "x-api-key")
    assert "key=q1" in text
