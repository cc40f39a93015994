"""A real OpenAI-compatible HTTP server for tests, with scripted replies and injectable faults.

Mocks at the Python level cannot show what a client does with real HTTP: chunked bodies,
events split across network reads, connections cut mid-stream, ``Retry-After`` headers. This
server speaks the OpenAI chat-completions wire format on a loopback port so a configuration can
be exercised end to end. It depends on nothing else in relaykit, so it tests relaykit from the
outside and ships to users unchanged.

Typical use::

    async with FakeProvider() as provider:
        provider.script(Reply.rate_limited(retry_after=1), Reply.ok("hi"))
        ...  # point a client at provider.url
        assert provider.request_count == 2
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import re
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from types import TracebackType
from typing import Any, Literal, Self, TypeAlias

from aiohttp import web
from multidict import CIMultiDict

__all__ = ["FakeProvider", "RecordedRequest", "Reply", "ReplySource", "SSEStyle"]

DEFAULT_CONTENT = "Hello from FakeProvider."
CREATED = 1_700_000_000
SYSTEM_FINGERPRINT = "fp_fake"

JSONObject: TypeAlias = dict[str, Any]
SSEStyle: TypeAlias = Literal["plain", "crlf", "comments", "coalesced", "split"]
_Kind: TypeAlias = Literal["ok", "fixed", "hang", "truncated_json", "malformed_sse"]

# Handlers wake on stop() by themselves; this only bounds one still reading a slow request body.
_SHUTDOWN_BACKSTOP_S = 2.0
_TRUNCATED_EVENT = b'data: {"id": "chatc'
_HTML_PAGE = (
    "<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
    "<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server received it, so tests assert on what a client really sent."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None
    raw: bytes

    @property
    def stream(self) -> bool:
        """Whether the client asked for SSE, which is what decides the reply's wire form."""
        return self.body is not None and self.body.get("stream") is True

    def header(self, name: str) -> str | None:
        """Look a header up case-insensitively, since clients disagree on header casing."""
        wanted = name.lower()
        return next((value for key, value in self.headers.items() if key.lower() == wanted), None)


@dataclass(frozen=True, kw_only=True)
class Reply:
    """What the server does for one request.

    A single Reply renders as a JSON completion or as an SSE stream, whichever the request
    asks for, so a test can check that a streamed-and-assembled result equals the plain one.
    Build replies with the classmethods and adjust them with the modifiers, which return new
    replies: the fields are the recipe those produce, not an API of their own.
    """

    kind: _Kind = "ok"
    content: str | None = DEFAULT_CONTENT
    echoes: bool = False
    tool_calls: tuple[JSONObject, ...] = ()
    finish_reason: str | None = None
    usage: JSONObject | None = None
    logprobs: JSONObject | None = None
    chunk_size: int | None = None
    extra: JSONObject = field(default_factory=dict)
    message_extra: JSONObject = field(default_factory=dict)
    sse_style: SSEStyle = "plain"
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    first_byte_delay: float = 0.0
    chunk_delay: float = 0.0
    drop_at: int | None = None
    stall_at: int | None = None

    @classmethod
    def ok(
        cls,
        content: str | None = DEFAULT_CONTENT,
        *,
        tool_calls: Sequence[Mapping[str, Any]] | None = None,
        finish_reason: str | None = None,
        usage: Mapping[str, Any] | None = None,
        logprobs: Mapping[str, Any] | None = None,
        chunk_size: int | None = None,
        extra: Mapping[str, Any] | None = None,
        message_extra: Mapping[str, Any] | None = None,
        sse_style: SSEStyle = "plain",
    ) -> Self:
        """A successful completion.

        ``finish_reason`` and ``usage`` are derived when the reply is sent rather than here,
        so that ``echo`` replies count the words they actually answer with. ``extra`` lands
        at the top level of the completion and of every chunk (it may override ``created``);
        ``message_extra`` lands in the message (string fields stream as deltas of their own).
        """
        if chunk_size is not None and chunk_size < 1:
            raise ValueError("chunk_size must be at least 1")
        return cls(
            content=content,
            tool_calls=tuple(_copied(call) for call in tool_calls or ()),
            finish_reason=finish_reason,
            usage=_copied(usage) if usage is not None else None,
            logprobs=_copied(logprobs) if logprobs is not None else None,
            chunk_size=chunk_size,
            extra=_copied(extra or {}),
            message_extra=_copied(message_extra or {}),
            sse_style=sse_style,
        )

    @classmethod
    def echo(cls) -> Self:
        """Answer with the last user message, so every distinct prompt gets a distinct answer."""
        return cls(echoes=True)

    @classmethod
    def error(
        cls,
        status: int = 500,
        message: str = "The fake provider returned an error.",
        *,
        type: str | None = None,
        code: str | None = None,
        param: str | None = None,
        retry_after: float | str | None = None,
        retry_after_ms: float | None = None,
        headers: Mapping[str, str] | None = None,
        should_retry: bool | None = None,
        body: bytes | str | None = None,
    ) -> Self:
        """An HTTP error with an OpenAI error body, sent as plain JSON even to streaming requests.

        ``type`` defaults to what OpenAI uses for the status class, because clients classify
        errors by it. ``body`` replaces the JSON body verbatim, for providers that send odd ones.
        """
        error_type = type or ("server_error" if status >= 500 else "invalid_request_error")
        payload = {"error": {"message": message, "type": error_type, "param": param, "code": code}}
        raw = body.encode() if isinstance(body, str) else body
        return cls(
            kind="fixed",
            status=status,
            body=json.dumps(payload).encode() if raw is None else raw,
            headers={
                **_retry_headers(retry_after, retry_after_ms, should_retry),
                **(headers or {}),
            },
        )

    @classmethod
    def rate_limited(cls, retry_after: float | None = None) -> Self:
        """A per-minute request limit, the 429 a retry policy should wait out."""
        message = (
            "Rate limit reached for requests per min (RPM): Limit 3, Used 3, Requested 1. "
            "Please try again later."
        )
        return cls.error(
            429, message, type="requests", code="rate_limit_exceeded", retry_after=retry_after
        )

    @classmethod
    def quota(cls) -> Self:
        """The 429 that retrying cannot fix: the account is out of credit."""
        message = (
            "You exceeded your current quota, please check your plan and billing details. "
            "For more information on this error, read the docs: "
            "https://platform.openai.com/docs/guides/error-codes/api-errors."
        )
        return cls.error(429, message, type="insufficient_quota", code="insufficient_quota")

    @classmethod
    def context_length(cls) -> Self:
        """The prompt is too long for the model, which a fallback to a larger model can fix."""
        message = (
            "This model's maximum context length is 8192 tokens. However, your messages "
            "resulted in 9000 tokens. Please reduce the length of the messages."
        )
        return cls.error(
            400,
            message,
            type="invalid_request_error",
            code="context_length_exceeded",
            param="messages",
        )

    @classmethod
    def auth_error(cls) -> Self:
        """A bad API key: never worth retrying against the same provider."""
        return cls.error(
            401,
            "Incorrect API key provided.",
            type="invalid_request_error",
            code="invalid_api_key",
        )

    @classmethod
    def invalid_request(cls, message: str, param: str | None = None) -> Self:
        """A 400 blaming the request itself."""
        return cls.error(400, message, type="invalid_request_error", param=param)

    @classmethod
    def content_filter(cls) -> Self:
        """The prompt was refused by a moderation layer, as Azure OpenAI reports it."""
        message = (
            "The response was filtered due to the prompt triggering the content management "
            "policy. Please modify your prompt and retry."
        )
        return cls.error(400, message, type="invalid_request_error", code="content_filter")

    @classmethod
    def server_error(cls) -> Self:
        """OpenAI's generic 500, the textbook retryable failure."""
        return cls.error(
            500, "The server had an error while processing your request. Sorry about that!"
        )

    @classmethod
    def overloaded(cls) -> Self:
        """A 503, which providers send when shedding load."""
        return cls.error(503, "The engine is currently overloaded, please try again later.")

    @classmethod
    def hang(cls) -> Self:
        """Never answer (until the server stops), to exercise client timeouts."""
        return cls(kind="hang")

    @classmethod
    def truncated_json(cls) -> Self:
        """A 200 whose body is cut off mid-JSON.

        Streamed, it sends one valid chunk and a cut-off event, then ends the body cleanly and
        closes the connection: unlike ``drop_after``, the transport reports no error, so only
        the parser can notice.
        """
        return cls(kind="truncated_json")

    @classmethod
    def malformed_sse(cls) -> Self:
        """Start the stream with an event whose data is not JSON (plain: a ``not json`` body)."""
        return cls(kind="malformed_sse")

    @classmethod
    def html_error(cls, status: int = 502) -> Self:
        """An HTML page such as a reverse proxy sends, which clients must not parse as JSON."""
        title = f"{status} {HTTPStatus(status).phrase}"
        return cls(
            kind="fixed",
            status=status,
            body=_HTML_PAGE.format(title=title).encode(),
            content_type="text/html; charset=utf-8",
        )

    def delayed(self, first_byte_s: float) -> Self:
        """Wait this many real seconds before sending anything, even the status line."""
        return replace(self, first_byte_delay=first_byte_s)

    def drop_after(self, n_chunks: int) -> Self:
        """Send ``n_chunks`` SSE events (the role chunk is the first), then cut the connection.

        The chunked body is never terminated, so the client sees a payload or connection error
        rather than a clean end. A non-streamed request is cut before any response at all.
        """
        return replace(self, drop_at=n_chunks)

    def stall_after(self, n_chunks: int) -> Self:
        """Send ``n_chunks`` SSE events, then go silent without closing, for idle timeouts.

        A non-streamed request gets its status and headers but never its body.
        """
        return replace(self, stall_at=n_chunks)

    def with_headers(self, headers: Mapping[str, str]) -> Self:
        """Add response headers (overriding earlier ones), e.g. request ids or rate-limit info."""
        return replace(self, headers={**self.headers, **headers})

    def with_chunk_delay(self, seconds: float) -> Self:
        """Wait this many real seconds between SSE events, so they surely arrive apart."""
        return replace(self, chunk_delay=seconds)


ReplySource: TypeAlias = Reply | Callable[[RecordedRequest], Reply]


class FakeProvider:
    """An OpenAI-compatible server on a random loopback port that replays scripted replies.

    ``async with`` runs it on the current event loop; plain ``with`` runs it on a loop in a
    background thread, for synchronous tests. Each chat request consumes the next scripted
    reply, or ``default`` once the script is exhausted; either may be a function of the
    ``RecordedRequest``. Response ids are ``chatcmpl-fake-<n>`` where ``provider.requests[n - 1]``
    is the request that got it.
    """

    def __init__(self, *, model: str = "fake-model", host: str = "127.0.0.1", port: int = 0):
        self.model = model
        self.host = host
        self.default: ReplySource = Reply.ok()
        self.requests: list[RecordedRequest] = []
        self._requested_port = port
        self._port: int | None = None
        self._script: deque[ReplySource] = deque()
        self._stopping = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._background: tuple[asyncio.AbstractEventLoop, threading.Thread] | None = None

    @property
    def url(self) -> str:
        """The base URL to give a client, ``/v1`` included."""
        if self._port is None:
            raise RuntimeError("FakeProvider is not running")
        return f"http://{self.host}:{self._port}/v1"

    @property
    def request_count(self) -> int:
        """How many requests arrived, the usual assertion for retry and cache tests."""
        return len(self.requests)

    def script(self, *replies: ReplySource) -> None:
        """Queue replies for the coming chat requests, one consumed per request, in order."""
        self._script.extend(replies)

    def reset(self) -> None:
        """Forget requests and script and restore the default, to reuse one server across cases."""
        self.requests.clear()
        self._script.clear()
        self.default = Reply.ok()

    async def start(self) -> None:
        """Listen on the current event loop; the port is chosen by the OS unless one was given."""
        if self._runner is not None:
            raise RuntimeError("FakeProvider is already running")
        self._stopping = asyncio.Event()
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/models", self._models)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=_SHUTDOWN_BACKSTOP_S)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self._requested_port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = runner.addresses[0][1]

    async def stop(self) -> None:
        """Close the server, first waking hung and stalled replies so shutdown is prompt."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self._stopping.set()
        await runner.cleanup()
        self._port = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def __enter__(self) -> Self:
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="FakeProvider", daemon=True)
        thread.start()
        self._background = (loop, thread)
        try:
            asyncio.run_coroutine_threadsafe(self.start(), loop).result()
        except BaseException:
            self._stop_background()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop_background()

    def _stop_background(self) -> None:
        if self._background is None:
            return
        loop, thread = self._background
        self._background = None
        asyncio.run_coroutine_threadsafe(self.stop(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()

    async def _record(self, request: web.Request) -> tuple[RecordedRequest, int]:
        """Store the request and return it with its 1-based arrival number."""
        raw = await request.read()
        recorded = RecordedRequest(
            method=request.method,
            path=request.path,
            headers=dict(request.headers),
            body=_parse_object(raw),
            raw=raw,
        )
        self.requests.append(recorded)
        return recorded, len(self.requests)

    async def _models(self, request: web.Request) -> web.StreamResponse:
        await self._record(request)
        model = {
            "id": self.model,
            "object": "model",
            "created": CREATED,
            "owned_by": "relaykit-fake",
        }
        return web.json_response({"object": "list", "data": [model]})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        recorded, number = await self._record(request)
        reply = self._next_reply(recorded)
        model = recorded.body.get("model") if recorded.body else None
        envelope = _Envelope(
            id=f"chatcmpl-fake-{number}", model=model if isinstance(model, str) else self.model
        )
        try:
            return await self._send(request, recorded, reply, envelope)
        except ConnectionError:
            # The client left mid-reply (usually its own timeout): there is no one to answer.
            return web.Response()

    def _next_reply(self, recorded: RecordedRequest) -> Reply:
        try:
            source = self._script.popleft()
        except IndexError:
            source = self.default
        reply = source if isinstance(source, Reply) else source(recorded)
        if reply.echoes:
            return replace(reply, echoes=False, content=_last_user_text(recorded.body))
        return reply

    async def _send(
        self, request: web.Request, recorded: RecordedRequest, reply: Reply, envelope: _Envelope
    ) -> web.StreamResponse:
        if await self._pause(reply.first_byte_delay):
            return _abort(request, web.Response())
        if reply.kind == "hang":
            await self._stopping.wait()
            return _abort(request, web.Response())
        if reply.kind == "fixed":
            headers = _headers(reply, {"Content-Type": reply.content_type})
            return web.Response(status=reply.status, body=reply.body, headers=headers)
        if recorded.stream:
            events = _stream_events(reply, envelope, _include_usage(recorded.body))
            return await self._send_stream(request, reply, events)
        return await self._send_json(request, reply, _json_body(reply, envelope))

    async def _send_json(
        self, request: web.Request, reply: Reply, body: bytes
    ) -> web.StreamResponse:
        if reply.drop_at is not None:
            return _abort(request, web.Response())
        headers = _headers(reply, {"Content-Type": "application/json"})
        if reply.stall_at is None:
            return web.Response(body=body, headers=headers)
        response = web.StreamResponse(headers=headers)
        response.content_length = len(body)
        await response.prepare(request)
        await self._stopping.wait()
        return _abort(request, response)

    async def _send_stream(
        self, request: web.Request, reply: Reply, events: list[bytes]
    ) -> web.StreamResponse:
        cut = reply.drop_at if reply.drop_at is not None else reply.stall_at
        headers = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        response = web.StreamResponse(headers=_headers(reply, headers))
        if reply.kind == "truncated_json":
            response.force_close()
        await response.prepare(request)
        for index, writes in enumerate(_group_writes(events[:cut], reply.sse_style)):
            if index and await self._pause(reply.chunk_delay):
                return _abort(request, response)
            for data in writes:
                await response.write(data)
                # Yield so the bytes leave before the next write instead of piling up behind it.
                await asyncio.sleep(0)
        if reply.drop_at is not None:
            return _abort(request, response)
        if reply.stall_at is not None:
            await self._stopping.wait()
            return _abort(request, response)
        return response

    async def _pause(self, seconds: float) -> bool:
        """Sleep, but wake at once on stop() so slow replies never hold up shutdown.

        Returns whether the server is stopping, in which case the reply should be abandoned.
        """
        if seconds > 0:
            try:
                await asyncio.wait_for(self._stopping.wait(), seconds)
            except TimeoutError:
                return False
        return self._stopping.is_set()


@dataclass(frozen=True)
class _Envelope:
    """The identity every completion or chunk of one response shares."""

    id: str
    model: str

    def head(self, object_type: str) -> JSONObject:
        return {
            "id": self.id,
            "object": object_type,
            "created": CREATED,
            "model": self.model,
            "system_fingerprint": SYSTEM_FINGERPRINT,
        }


def _copied(value: Mapping[str, Any]) -> JSONObject:
    """Deep-copy caller data so a Reply cannot change after it was built."""
    return copy.deepcopy(dict(value))


def _number_text(value: float) -> str:
    """Render 2.0 as "2": integer-only Retry-After parsers are common."""
    return str(int(value)) if float(value).is_integer() else str(value)


def _retry_headers(
    retry_after: float | str | None, retry_after_ms: float | None, should_retry: bool | None
) -> dict[str, str]:
    headers: dict[str, str] = {}
    if retry_after is not None:
        text = retry_after if isinstance(retry_after, str) else _number_text(retry_after)
        headers["Retry-After"] = text
    if retry_after_ms is not None:
        headers["retry-after-ms"] = _number_text(retry_after_ms)
    if should_retry is not None:
        headers["x-should-retry"] = "true" if should_retry else "false"
    return headers


def _headers(reply: Reply, base: Mapping[str, str]) -> CIMultiDict[str]:
    """Merge the reply's headers over the defaults case-insensitively, avoiding duplicates."""
    headers = CIMultiDict(base)
    headers.update(reply.headers)
    return headers


def _abort(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    """Cut the TCP connection so the client sees a transport error, not a clean end.

    aiohttp then fails to finish ``response`` on the dead transport, which it treats as an
    ordinary client disconnect.
    """
    if request.transport is not None:
        request.transport.abort()
    return response


def _parse_object(raw: bytes) -> dict[str, Any] | None:
    try:
        parsed = json.loads(raw)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _include_usage(body: dict[str, Any] | None) -> bool:
    options = body.get("stream_options") if body else None
    return isinstance(options, dict) and options.get("include_usage") is True


def _last_user_text(body: dict[str, Any] | None) -> str:
    messages = body.get("messages") if body else None
    if not isinstance(messages, list):
        return ""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return _text_of(message.get("content"))
    return ""


def _text_of(content: Any) -> str:
    """The text of a message content, which may be a string or a list of typed parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def _finish_reason(reply: Reply) -> str:
    if reply.finish_reason is not None:
        return reply.finish_reason
    return "tool_calls" if reply.tool_calls else "stop"


def _usage(reply: Reply) -> JSONObject:
    if reply.usage is not None:
        return reply.usage
    completion_tokens = max(1, len((reply.content or "").split()))
    return {
        "prompt_tokens": 10,
        "completion_tokens": completion_tokens,
        "total_tokens": 10 + completion_tokens,
    }


def _completion(reply: Reply, envelope: _Envelope) -> JSONObject:
    message: JSONObject = {"role": "assistant", "content": reply.content}
    if reply.tool_calls:
        message["tool_calls"] = list(reply.tool_calls)
    message.update(reply.message_extra)
    choice = {
        "index": 0,
        "message": message,
        "logprobs": reply.logprobs,
        "finish_reason": _finish_reason(reply),
    }
    return {
        **envelope.head("chat.completion"),
        "choices": [choice],
        "usage": _usage(reply),
        **reply.extra,
    }


def _json_body(reply: Reply, envelope: _Envelope) -> bytes:
    if reply.kind == "malformed_sse":
        return b"not json"
    body = json.dumps(_completion(reply, envelope)).encode()
    if reply.kind == "truncated_json":
        return body[: len(body) // 2]
    return body


def _content_pieces(reply: Reply) -> list[str]:
    """Split content the way models stream it: a word per chunk, leading space attached.

    The pieces always join back to the exact content, trailing whitespace included.
    """
    text = reply.content or ""
    if reply.chunk_size is not None:
        size = reply.chunk_size
        return [text[start : start + size] for start in range(0, len(text), size)]
    return re.findall(r"\s*\S+|\s+", text)


def _thirds(text: str) -> list[str]:
    """Split tool arguments in up to three pieces, so clients must concatenate partial JSON."""
    cuts = [0, len(text) // 3, 2 * len(text) // 3, len(text)]
    return [text[start:end] for start, end in itertools.pairwise(cuts) if start < end]


def _tool_call_deltas(tool_calls: Sequence[JSONObject]) -> list[JSONObject]:
    deltas: list[JSONObject] = []
    for index, call in enumerate(tool_calls):
        function = call.get("function", {})
        opening = {
            "index": index,
            "id": call.get("id"),
            "type": call.get("type", "function"),
            "function": {"name": function.get("name"), "arguments": ""},
        }
        deltas.append({"tool_calls": [opening]})
        deltas.extend(
            {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}
            for piece in _thirds(str(function.get("arguments", "")))
        )
    return deltas


def _deltas(reply: Reply) -> list[tuple[JSONObject, JSONObject | None]]:
    """Every (delta, logprobs) pair of a stream before the finishing chunk, in OpenAI's order.

    Non-string ``message_extra`` fields ride on the role chunk; string ones get a chunk each.
    The role chunk's content is null for a null-content reply so that assembling the stream
    reproduces the plain message exactly.
    """
    strings = {key: value for key, value in reply.message_extra.items() if isinstance(value, str)}
    others = {key: value for key, value in reply.message_extra.items() if key not in strings}
    role = {"role": "assistant", "content": None if reply.content is None else "", **others}
    deltas: list[tuple[JSONObject, JSONObject | None]] = [(role, None)]
    deltas.extend(({key: value}, None) for key, value in strings.items())
    deltas.extend(
        ({"content": piece}, reply.logprobs if index == 0 else None)
        for index, piece in enumerate(_content_pieces(reply))
    )
    deltas.extend((delta, None) for delta in _tool_call_deltas(reply.tool_calls))
    return deltas


def _stream_payloads(reply: Reply, envelope: _Envelope, include_usage: bool) -> list[str]:
    """The ``data:`` payloads of a stream, ``[DONE]`` included."""
    head = envelope.head("chat.completion.chunk")
    if include_usage:
        head["usage"] = None  # OpenAI's other chunks carry a null usage when usage is requested

    def chunk(delta: JSONObject, logprobs: JSONObject | None, finish: str | None) -> JSONObject:
        choice = {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
        return {**head, "choices": [choice], **reply.extra}

    chunks = [chunk(delta, logprobs, None) for delta, logprobs in _deltas(reply)]
    # Logprobs ride on the first content chunk; with no content they must still arrive somewhere.
    final_logprobs = None if _content_pieces(reply) else reply.logprobs
    chunks.append(chunk({}, final_logprobs, _finish_reason(reply)))
    if include_usage:
        chunks.append({**head, "choices": [], **reply.extra, "usage": _usage(reply)})
    return [json.dumps(item) for item in chunks] + ["[DONE]"]


def _event(data: str, style: SSEStyle, number: int) -> bytes:
    """Frame one SSE event in the reply's style."""
    if style == "crlf":
        return f"data: {data}\r\n\r\n".encode()
    if style == "comments":
        return f": keep-alive\n\nevent: message\nid: {number}\ndata: {data}\n\n".encode()
    return f"data: {data}\n\n".encode()


def _stream_events(reply: Reply, envelope: _Envelope, include_usage: bool) -> list[bytes]:
    payloads = _stream_payloads(reply, envelope, include_usage)
    if reply.kind == "malformed_sse":
        payloads.insert(0, "not json")
    events = [_event(data, reply.sse_style, number) for number, data in enumerate(payloads, 1)]
    if reply.kind == "truncated_json":
        return [*events[:1], _TRUNCATED_EVENT]
    return events


def _slices(event: bytes) -> list[bytes]:
    """Cut an event mid-payload and between its last two line-end bytes.

    Those are the boundaries SSE parsers most often get wrong: a JSON document split across
    reads, and a blank line (or a CRLF) whose halves arrive separately.
    """
    middle = len(event) // 2
    return [part for part in (event[:middle], event[middle:-1], event[-1:]) if part]


def _group_writes(events: list[bytes], style: SSEStyle) -> list[list[bytes]]:
    """The writes for each event, in order: one each, sliced, or all events in a single write."""
    if style == "coalesced":
        return [[b"".join(events)]]
    if style == "split":
        return [_slices(event) for event in events]
    return [[event] for event in events]
