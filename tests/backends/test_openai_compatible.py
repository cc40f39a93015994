"""OpenAICompatible against a real loopback server: what the caller gets, what the provider sees."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import math
import socket
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from relaykit import (
    AuthenticationError,
    BadResponseError,
    CallContext,
    ChatCompletion,
    ChatRequest,
    ChatStream,
    ContextWindowError,
    InvalidRequestError,
    OpenAICompatible,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeout,
    QuotaExceededError,
    RateLimitError,
    RelayError,
    StreamInterruptedError,
    SystemClock,
)
from relaykit.contract.pipeline import CallOptions, TimeBounds
from relaykit.facade.loop_thread import LoopThread
from relaykit.testing import FakeProvider, Reply

BackendFactory = Callable[..., OpenAICompatible]  # the conftest ``backend`` fixture

SECRET = "sk-secret-123"

TOOL_CALLS: list[dict[str, Any]] = [
    {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city":"Paris","unit":"celsius"}'},
    },
    {
        "id": "call_2",
        "type": "function",
        "function": {"name": "get_time", "arguments": '{"timezone":"Europe/Paris"}'},
    },
]
USAGE = {
    "prompt_tokens": 21,
    "completion_tokens": 9,
    "total_tokens": 30,
    "prompt_tokens_details": {"cached_tokens": 16, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 4, "accepted_prediction_tokens": 0},
}
LOGPROBS = {
    "content": [
        {"token": "Hel", "logprob": -0.1, "bytes": [72, 101, 108], "top_logprobs": []},
    ]
}


def request(stream: bool = False, **fields: Any) -> ChatRequest:
    return ChatRequest.model_validate(
        {"messages": [{"role": "user", "content": "Hi"}], "stream": stream, **fields}
    )


def context(**fields: Any) -> CallContext:
    return CallContext(clock=SystemClock(), **fields)


async def ask(backend: OpenAICompatible, stream: bool, **fields: Any) -> ChatCompletion:
    """One call, streamed (assembled) or not."""
    if stream:
        answer = await backend.astream(request(True, **fields), context())
        return await answer.completion()
    return await backend.acomplete(request(**fields), context())


async def stream_from(url: str, **options: Any) -> tuple[ChatStream, ChatCompletion]:
    """Stream one answer from the server at ``url`` to its end, with a backend of its own that
    is closed afterwards; the stream and its assembled answer."""
    client = OpenAICompatible(url, api_key="sk-test", model="m", **options)
    try:
        stream = await client.astream(request(True), context())
        return stream, await stream.completion()
    finally:
        await client.aclose()


def without_id(completion: ChatCompletion) -> dict[str, Any]:
    data = completion.model_dump(exclude_none=True)
    data.pop("id")
    return data


def assert_no_secret(error: BaseException) -> None:
    for text in (str(error), repr(error), repr(error.args), str(error.__cause__ or "")):
        assert SECRET not in text


# --- answers ---------------------------------------------------------------------------------


async def test_plain_completion_returns_the_answer_and_sends_the_target_model(
    provider: FakeProvider, backend: BackendFactory
) -> None:
    provider.script(Reply.ok("Paris."))

    answer = await backend(provider).acomplete(request(model="alias"), context())

    assert answer.content == "Paris."
    assert answer.model == "m"
    assert answer.choices[0].finish_reason == "stop"
    assert provider.request_count == 1
    sent = provider.requests[0]
    assert sent.path == "/v1/chat/completions"
    assert sent.body == {
        "messages": [{"role": "user", "content": "Hi"}],
        "model": "m",
        "stream": False,
    }


async def test_request_model_goes_upstream_when_the_backend_names_none(
    provider: FakeProvider, backend: BackendFactory
) -> None:
    answer = await backend(provider, model=None).acomplete(request(model="gpt-4o"), context())

    assert answer.model == "gpt-4o"
    assert provider.requests[0].body is not None
    assert provider.requests[0].body["model"] == "gpt-4o"


async def test_no_model_anywhere_fails_before_sending(
    provider: FakeProvider, backend: BackendFactory
) -> None:
    with pytest.raises(InvalidRequestError, match="no model"):
        await backend(provider, model=None).acomplete(request(), context())

    assert provider.request_count == 0


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
async def test_every_request_field_reaches_the_provider(
    provider: FakeProvider, backend: BackendFactory, stream: bool
) -> None:
    fields = {
        "temperature": 0.2,
        "max_completion_tokens": 50,
        "tools": [{"type": "function", "function": {"name": "get_weather"}}],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "parallel_tool_calls": True,
        "reasoning_effort": "low",
        "logprobs": True,
        "top_logprobs": 2,
        "response_format": {"type": "json_object"},
        "seed": 7,
        "vendor_flag": {"x": 1},
    }

    await ask(backend(provider), stream, **fields)

    body = provider.requests[0].body
    assert body == {
        "messages": [{"role": "user", "content": "Hi"}],
        "model": "m",
        "stream": stream,
        **fields,
    }


@pytest.mark.parametrize("reply", ["text", "tool_calls"])
async def test_streamed_and_assembled_equals_the_plain_answer(
    provider: FakeProvider, backend: BackendFactory, reply: str
) -> None:
    scripted = (
        Reply.ok("The capital of France is Paris.", usage=USAGE, logprobs=LOGPROBS)
        if reply == "text"
        else Reply.ok(None, tool_calls=TOOL_CALLS, usage=USAGE)
    )
    provider.script(scripted, scripted)
    client = backend(provider)

    plain = await ask(client, stream=False)
    streamed = await ask(client, stream=True, stream_options={"include_usage": True})

    assert without_id(streamed) == without_id(plain)
    assert streamed.usage is not None and streamed.usage.model_dump(exclude_none=True) == USAGE
    if reply == "tool_calls":
        calls = streamed.choices[0].message.tool_calls or []
        assert [c.function.arguments for c in calls] == [
            c["function"]["arguments"] for c in TOOL_CALLS
        ]
        assert streamed.choices[0].finish_reason == "tool_calls"
    assert provider.requests[1].body is not None
    assert provider.requests[1].body["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("style", ["plain", "crlf", "comments", "coalesced", "split"])
async def test_every_sse_framing_streams_the_same_answer(
    provider: FakeProvider, backend: BackendFactory, style: Any
) -> None:
    text = "One two three four."
    provider.script(Reply.ok(text, sse_style=style), Reply.ok(text))
    client = backend(provider)

    stream = await client.astream(request(True, stream_options={"include_usage": True}), context())
    chunks = [chunk async for chunk in stream]
    plain = await ask(client, stream=False)

    assert [c.choices[0].delta.content for c in chunks if c.choices][1:5] == [
        "One",
        " two",
        " three",
        " four.",
    ]
    assert without_id(stream.partial()) == without_id(plain)
    assert stream.ended_cleanly


async def test_stream_without_include_usage_has_no_usage(
    provider: FakeProvider, backend: BackendFactory
) -> None:
    stream = await backend(provider).astream(request(True), context())

    answer = await stream.completion()

    assert answer.usage is None
    assert provider.requests[0].body is not None
    assert "stream_options" not in provider.requests[0].body


async def test_stream_options_are_dropped_for_a_plain_call(
    provider: FakeProvider, backend: BackendFactory
) -> None:
    await backend(provider).acomplete(request(stream_options={"include_usage": True}), context())

    assert provider.requests[0].body is not None
    assert "stream_options" not in provider.requests[0].body


async def test_headers_carry_the_bearer_key_and_extra_headers(
    provider: FakeProvider, backend: BackendFactory
) -> None:
    client = backend(provider, headers={"X-Org": "acme"})

    await client.acomplete(
        request(), context(options=CallOptions(extra_headers={"X-Request-Id": "r-1"}))
    )
    await client.astream(request(True), context())

    plain, streamed = provider.requests
    assert plain.header("Authorization") == "Bearer sk-test"
    assert plain.header("X-Org") == "acme"
    assert plain.header("X-Request-Id") == "r-1"
    assert plain.header("Content-Type") == "application/json"
    assert streamed.header("Authorization") == "Bearer sk-test"
    assert streamed.header("Accept") == "text/event-stream"
    assert streamed.header("X-Request-Id") is None  # per-call headers stay with their call


async def test_a_custom_auth_header_without_scheme(
    provider: FakeProvider, backend: BackendFactory
) -> None:
    client = backend(provider, auth_header="api-key", auth_scheme=None)

    await client.acomplete(request(), context())

    assert provider.requests[0].header("api-key") == "sk-test"
    assert provider.requests[0].header("Authorization") is None


async def test_no_key_sends_no_authorization(
    provider: FakeProvider, backend: BackendFactory
) -> None:
    await backend(provider, api_key=None).acomplete(request(), context())

    assert provider.requests[0].header("Authorization") is None


async def test_extra_body_is_merged_into_every_request(
    provider: FakeProvider, backend: BackendFactory
) -> None:
    client = backend(provider, extra_body={"session_id": "s-1", "top_k": 40})

    await client.acomplete(request(), context())
    await client.astream(request(True), context())

    for sent in provider.requests:
        assert sent.body is not None
        assert sent.body["session_id"] == "s-1"
        assert sent.body["top_k"] == 40


def test_bad_constructor_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="base_url"):
        OpenAICompatible("api.openai.com/v1")
    with pytest.raises(ValueError, match="timeout"):
        OpenAICompatible("http://127.0.0.1:1/v1", timeout=0)
    with pytest.raises(ValueError, match="max_connections"):
        OpenAICompatible("http://127.0.0.1:1/v1", max_connections=0)


@pytest.mark.parametrize("value", [math.nan, math.inf, True, "30", -1.0])
@pytest.mark.parametrize("name", ["timeout", "connect_timeout"])
def test_a_timeout_that_is_not_a_positive_finite_number_is_refused_by_name(
    name: str, value: object
) -> None:
    # The shared argument checks, so NaN (which fails every comparison) and True (an int)
    # cannot slip past a hand-written "<= 0".
    with pytest.raises(ValueError, match=f"^{name} must be a positive, finite number of seconds"):
        OpenAICompatible("http://127.0.0.1:1/v1", **{name: value})


# --- failures before the commit point ---------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize(
    ("reply", "kind", "status", "retryable"),
    [
        (Reply.rate_limited(retry_after=7), RateLimitError, 429, True),
        (Reply.error(429, retry_after_ms=1500), RateLimitError, 429, True),
        (Reply.quota(), QuotaExceededError, 429, False),
        (Reply.context_length(), ContextWindowError, 400, False),
        (Reply.auth_error(), AuthenticationError, 401, False),
        (Reply.error(403, "Forbidden"), AuthenticationError, 403, False),
        (
            Reply.invalid_request("Bad 'temperature'.", "temperature"),
            InvalidRequestError,
            400,
            False,
        ),
        (Reply.server_error(), ProviderError, 500, True),
        (Reply.overloaded(), ProviderError, 503, True),
        (Reply.html_error(502), ProviderError, 502, True),
        (Reply.server_error().with_headers({"x-should-retry": "false"}), ProviderError, 500, False),
    ],
    ids=[
        "429",
        "429-ms",
        "quota",
        "context",
        "401",
        "403",
        "400",
        "500",
        "503",
        "html-502",
        "no-retry",
    ],
)
async def test_http_errors_raise_their_type(
    provider: FakeProvider,
    backend: BackendFactory,
    stream: bool,
    reply: Reply,
    kind: type[RelayError],
    status: int,
    retryable: bool,
) -> None:
    provider.script(reply)

    with pytest.raises(kind) as caught:
        await ask(backend(provider, api_key=SECRET, name="main"), stream)

    error = caught.value
    assert type(error) is kind
    assert error.status == status
    assert error.retryable is retryable
    assert error.target == "main"
    assert str(error).startswith(f"target 'main' answered {status}")
    assert provider.request_count == 1
    assert_no_secret(error)


async def test_retry_after_reaches_the_error(
    provider: FakeProvider, backend: BackendFactory
) -> None:
    provider.script(Reply.rate_limited(retry_after=7), Reply.error(429, retry_after_ms=1500))
    client = backend(provider)

    with pytest.raises(RateLimitError) as seconds:
        await client.acomplete(request(), context())
    with pytest.raises(RateLimitError) as milliseconds:
        await client.astream(request(True), context())

    assert seconds.value.retry_after == 7.0
    assert milliseconds.value.retry_after == 1.5


async def test_connection_refused_is_a_connection_error(backend: BackendFactory) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = OpenAICompatible(f"http://127.0.0.1:{port}/v1", api_key=SECRET, model="m")

    try:
        with pytest.raises(ProviderConnectionError, match="could not be reached") as plain:
            await client.acomplete(request(), context())
        with pytest.raises(ProviderConnectionError) as streamed:
            await client.astream(request(True), context())
    finally:
        await client.aclose()

    assert plain.value.retryable and streamed.value.retryable
    assert_no_secret(plain.value)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
async def test_slow_first_byte_beyond_the_timeout_is_a_timeout(
    provider: FakeProvider, backend: BackendFactory, stream: bool
) -> None:
    # real-time: the backend's aiohttp timeout runs on the loop's clock, not a FakeClock.
    provider.script(Reply.ok().delayed(1))

    with pytest.raises(ProviderTimeout, match=r"did not answer within 0\.2 s") as caught:
        await ask(backend(provider, timeout=0.2), stream)

    assert caught.value.retryable
    assert provider.request_count == 1


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
async def test_a_provider_that_never_answers_is_a_timeout(
    provider: FakeProvider, backend: BackendFactory, stream: bool
) -> None:
    # real-time: as above, a 0.2 s wait on the real clock.
    provider.script(Reply.hang())

    with pytest.raises(ProviderTimeout):
        await ask(backend(provider, timeout=0.2), stream)


async def test_a_call_past_its_deadline_is_not_sent(
    provider: FakeProvider, backend: BackendFactory
) -> None:
    clock = SystemClock()

    with pytest.raises(ProviderTimeout, match="deadline"):
        await backend(provider).acomplete(
            request(), CallContext(clock=clock, bounds=TimeBounds(deadline=clock.now() - 1))
        )

    assert provider.request_count == 0


async def test_truncated_json_is_a_bad_response(
    provider: FakeProvider, backend: BackendFactory
) -> None:
    provider.script(Reply.truncated_json())

    with pytest.raises(BadResponseError, match="not a valid completion") as caught:
        await backend(provider).acomplete(request(), context())

    assert caught.value.retryable


async def test_malformed_sse_before_the_first_chunk_is_raised_by_astream(
    provider: FakeProvider, backend: BackendFactory
) -> None:
    provider.script(Reply.malformed_sse())

    with pytest.raises(BadResponseError, match="stream chunk"):
        await backend(provider).astream(request(True), context())


async def test_an_error_body_sent_with_status_200_is_typed_and_redacted(
    provider: FakeProvider, backend: BackendFactory
) -> None:
    body = f'{{"error": {{"message": "Key {SECRET} was revoked", "code": "401"}}}}'
    provider.script(Reply.error(200, body=body))

    with pytest.raises(AuthenticationError) as caught:
        await backend(provider, api_key=SECRET).acomplete(request(), context())

    assert "revoked" in str(caught.value)
    assert_no_secret(caught.value)


# --- failures after the commit point ----------------------------------------------------------


async def test_a_dropped_stream_raises_interrupted_with_the_partial_answer(
    provider: FakeProvider, backend: BackendFactory
) -> None:
    provider.script(Reply.ok("Hello from FakeProvider.").drop_after(3))
    client = backend(provider, api_key=SECRET, name="main")
    stream = await client.astream(request(True), context())
    received: list[str] = []

    with pytest.raises(StreamInterruptedError) as caught:
        async for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")

    error = caught.value
    assert "".join(received) == "Hello from"
    assert isinstance(error.partial, ChatCompletion)
    assert error.partial.content == "Hello from"
    assert error.partial.choices[0].finish_reason is None
    assert error.target == "main"
    assert str(error).startswith("target 'main' broke its stream after 3 chunks")
    assert_no_secret(error)


async def test_a_stalled_stream_raises_interrupted_after_the_idle_timeout(
    provider: FakeProvider, backend: BackendFactory
) -> None:
    # real-time: the idle timeout is aiohttp's sock_read, 0.2 s on the real clock.
    provider.script(Reply.ok("Hello from FakeProvider.").stall_after(2))
    stream = await backend(provider, timeout=0.2).astream(request(True), context())

    with pytest.raises(StreamInterruptedError, match="did not answer within") as caught:
        await stream.completion()

    assert caught.value.partial.content == "Hello"


async def test_a_stream_cut_mid_event_after_its_role_chunk_fails_before_the_commit_point(
    provider: FakeProvider, backend: BackendFactory
) -> None:
    provider.script(Reply.truncated_json())  # the role-only chunk, then half an event

    with pytest.raises(BadResponseError, match="not a valid completion"):
        await backend(provider).astream(request(True), context())


async def test_a_stream_truncated_mid_event_after_content_raises_interrupted(
    provider: FakeProvider, backend: BackendFactory
) -> None:
    provider.script(Reply.ok("one two three").malformed_after(3))
    stream = await backend(provider).astream(request(True), context())

    with pytest.raises(StreamInterruptedError) as caught:
        await stream.completion()

    assert isinstance(caught.value.__cause__, BadResponseError)
    assert caught.value.partial.content == "one two"


async def test_a_stream_closed_early_by_the_caller_releases_it(
    provider: FakeProvider, backend: BackendFactory
) -> None:
    client = backend(provider)
    stream = await client.astream(request(True), context())

    await anext(stream)
    await stream.aclose()
    answer = await client.acomplete(request(), context())  # the pool still serves

    assert not stream.ended_cleanly
    assert answer.content == "Hello from FakeProvider."


# --- the key stays secret ---------------------------------------------------------------------


def test_the_key_is_not_in_the_repr() -> None:
    client = OpenAICompatible("https://api.example.com/v1", api_key=SECRET, model="m")

    assert SECRET not in repr(client)
    assert SECRET not in str(client)
    assert "api_key='**********'" in repr(client)
    assert SECRET not in repr(vars(client).get("_api_key"))


async def test_credentials_in_the_base_url_are_sent_but_never_shown(
    provider: FakeProvider,
) -> None:
    with_credentials = provider.url.replace("http://", f"http://user:{SECRET}@")
    client = OpenAICompatible(with_credentials, model="m")
    host = provider.url.split("//")[1].split("/")[0]

    answer = await client.acomplete(request(), context())
    await client.aclose()

    assert answer.content == "Hello from FakeProvider."
    assert provider.requests[0].headers["Authorization"].startswith("Basic ")  # sent
    assert client.name == host
    assert SECRET not in repr(client) and "user" not in client.base_url
    assert client.base_url.startswith("http://**********@")
    with pytest.raises(ValueError) as caught:
        OpenAICompatible(f"ftp://user:{SECRET}@example.com/v1")
    assert SECRET not in str(caught.value)


async def test_an_unreachable_url_with_credentials_never_shows_them() -> None:
    with socket.socket() as sock:  # a port nobody listens on: bound, never accepting
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        client = OpenAICompatible(f"http://user:{SECRET}@127.0.0.1:{port}/v1", model="m")
        with pytest.raises(ProviderConnectionError) as caught:
            await client.acomplete(request(), context())
        await client.aclose()

    assert "could not be reached at http://**********@127.0.0.1" in str(caught.value)
    assert_no_secret(caught.value)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
async def test_a_provider_echoing_the_key_never_puts_it_in_the_error(
    provider: FakeProvider, backend: BackendFactory, stream: bool
) -> None:
    provider.script(Reply.error(401, message=f"Incorrect API key provided: {SECRET}"))

    with pytest.raises(AuthenticationError) as caught:
        await ask(backend(provider, api_key=SECRET), stream)

    assert "Incorrect API key provided" in str(caught.value)
    assert_no_secret(caught.value)
    assert all(SECRET not in str(arg) for arg in caught.value.args)
    assert SECRET not in caught.value.message


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
async def test_a_key_echoed_json_escaped_never_reaches_the_error(
    provider: FakeProvider, backend: BackendFactory, stream: bool
) -> None:
    key = 'sk-ab/cd"ef\\gh-0123456789'
    escaped = json.dumps(key)[1:-1].replace("/", "\\/")  # as PHP's json_encode writes it
    message = f'"message": "Incorrect API key provided: {escaped}"'
    body = '{"error": {' + message + ', "type": "auth"}}'
    provider.script(Reply(kind="fixed", status=401, body=body.encode()))

    with pytest.raises(AuthenticationError) as caught:
        await ask(backend(provider, api_key=key), stream)

    assert "Incorrect API key provided: **********" in str(caught.value)
    for form in (key, escaped, json.dumps(key)[1:-1], key.replace("/", "\\/")):
        assert form not in str(caught.value) and form not in repr(caught.value)


async def test_sessions_are_closed_by_aclose_and_reopened_on_use(
    provider: FakeProvider, backend: BackendFactory
) -> None:
    client = backend(provider)
    await client.acomplete(request(), context())

    await client.aclose()
    answer = await client.acomplete(request(), context())

    assert answer.content == "Hello from FakeProvider."
    assert provider.request_count == 2


# --- raw server bytes ---------------------------------------------------------------------------


def sse_chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
    chunk = {
        "id": "chatcmpl-raw",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }
    return b"data: " + json.dumps(chunk).encode()


@contextlib.asynccontextmanager
async def serve(
    answer: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> AsyncIterator[str]:
    """A bare aiohttp server on 127.0.0.1 answering chat calls with ``answer``; its base URL."""
    app = web.Application()
    app.router.add_post("/v1/chat/completions", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}/v1"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def raw_sse_server(body: bytes) -> AsyncIterator[tuple[str, list[bytes]]]:
    """A bare aiohttp server that answers each call with exactly ``body``, then ends the stream.

    FakeProvider always frames its events properly; this one sends what a sloppy provider does.
    Yields the base URL and the request bodies received.
    """
    received: list[bytes] = []

    async def answer(request: web.Request) -> web.StreamResponse:
        received.append(await request.read())
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(body)
        await response.write_eof()
        return response

    async with serve(answer) as url:
        yield url, received


async def test_a_last_finishing_event_without_its_blank_line_ends_the_stream_cleanly() -> None:
    # No blank line after the last event and no [DONE]: the event still finishes the answer.
    body = sse_chunk({"role": "assistant", "content": "Hel"}) + b"\n\n"
    body += sse_chunk({"content": "lo"}, finish_reason="stop")
    async with raw_sse_server(body) as (url, received):
        stream, answer = await stream_from(url, name="raw")

    assert answer.content == "Hello"
    assert answer.choices[0].finish_reason == "stop"
    assert stream.ended_cleanly
    assert len(received) == 1 and json.loads(received[0])["stream"] is True


async def test_a_stream_ending_mid_answer_without_a_blank_line_is_still_broken() -> None:
    body = (
        sse_chunk({"role": "assistant", "content": "Hel"}) + b"\n\n" + sse_chunk({"content": "lo"})
    )
    async with raw_sse_server(body) as (url, _):
        with pytest.raises(
            StreamInterruptedError, match="before the answer was finished"
        ) as caught:
            await stream_from(url, name="raw")

    assert caught.value.partial.content == "Hello"


async def test_a_byte_that_is_not_utf8_in_a_stream_is_replaced_not_raised() -> None:
    body = sse_chunk({"role": "assistant", "content": "caf"}).replace(b"caf", b"caf\xff")
    body += b"\n\n" + sse_chunk({}, finish_reason="stop") + b"\n\ndata: [DONE]\n\n"
    async with raw_sse_server(body) as (url, _):
        _, answer = await stream_from(url, name="raw")

    assert answer.content == "caf\ufffd"
    assert answer.choices[0].finish_reason == "stop"


# --- one backend, several event loops -----------------------------------------------------------


def test_a_backend_used_from_two_asyncio_runs_leaves_no_unclosed_session() -> None:
    server = LoopThread()  # the provider outlives both loops, as a real one would
    provider = FakeProvider()
    server.run(provider.__aenter__())
    try:
        client = OpenAICompatible(provider.url, api_key="sk-test", model="m")

        async def call(client: OpenAICompatible, close: bool) -> str | None:
            answer = await client.acomplete(request(), context())
            if close:
                await client.aclose()
            return answer.content

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            first = asyncio.run(call(client, close=False))  # a script that forgot aclose()
            second = asyncio.run(call(client, close=True))
            del client
            gc.collect()
    finally:
        server.run(provider.__aexit__(None, None, None))
        server.close()

    assert first == second == "Hello from FakeProvider."
    assert provider.request_count == 2
    unclosed = [
        str(w.message)
        for w in caught
        if str(w.message).startswith(("Unclosed client session", "Unclosed connector"))
        or "never awaited" in str(w.message)
        or "Connector.close() is a coroutine" in str(w.message)
    ]
    assert unclosed == []


@contextlib.asynccontextmanager
async def raw_json_server(payload: dict[str, Any]) -> AsyncIterator[str]:
    """A server that ignores stream=true and answers every call with one JSON body."""

    async def answer(request: web.Request) -> web.Response:
        return web.json_response(payload)

    async with serve(answer) as url:
        yield url


async def test_a_server_that_ignores_stream_true_is_still_served_as_a_stream() -> None:
    whole = {
        "id": "c1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "Hi"}, "finish_reason": "stop"}
        ],
    }
    async with raw_json_server(whole) as url:
        stream, answer = await stream_from(url)
    assert answer.content == "Hi" and stream.ended_cleanly


async def test_an_error_body_with_status_200_on_a_stream_is_a_typed_error() -> None:
    error = {"error": {"message": "quota gone", "code": "insufficient_quota"}}
    async with raw_json_server(error) as url:
        client = OpenAICompatible(url, api_key="sk-test", model="m")
        try:
            with pytest.raises(QuotaExceededError, match="quota gone"):
                await client.astream(request(True), context())
        finally:
            await client.aclose()


@contextlib.asynccontextmanager
async def mislabelled_server(body: bytes, content_type: str) -> AsyncIterator[str]:
    """A server whose Content-Type says the opposite of what its body is."""

    async def answer(request: web.Request) -> web.Response:
        return web.Response(body=body, headers={"Content-Type": content_type})

    async with serve(answer) as url:
        yield url


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (
            sse_chunk({"role": "assistant", "content": "Hi"}, "stop")
            + b"\n\n"
            + b"data: [DONE]\n\n",
            "application/json",
        ),
        (
            json.dumps(
                {
                    "id": "c",
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": "Hi"},
                            "finish_reason": "stop",
                        }
                    ],
                }
            ).encode(),
            "text/event-stream",
        ),
    ],
    ids=["sse-labelled-json", "json-labelled-sse"],
)
async def test_a_mislabelled_body_is_read_for_what_it_is(body: bytes, content_type: str) -> None:
    async with mislabelled_server(body, content_type) as url:
        _, answer = await stream_from(url)
    assert answer.content == "Hi"


# --- base_url with a query (Azure OpenAI) -------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize("slash", ["", "/"], ids=["no slash", "trailing slash"])
async def test_a_base_url_with_a_query_posts_to_the_path_and_keeps_the_query(
    provider: FakeProvider, stream: bool, slash: str
) -> None:
    client = OpenAICompatible(
        f"{provider.url}{slash}?api-version=2024-06-01", api_key="sk-test", model="m"
    )
    try:
        answer = await ask(client, stream)
    finally:
        await client.aclose()

    assert answer.content == "Hello from FakeProvider."
    assert provider.requests[0].path == "/v1/chat/completions"
    assert provider.requests[0].query == "api-version=2024-06-01"
    assert client.base_url == f"{provider.url}?api-version=2024-06-01"
