"""What FakeProvider answers: the immutable ``Reply`` recipe, and ``RecordedRequest``.

A Reply says what to send, not how the bytes look on the wire (that is ``_wire``) nor when
they leave (that is the server in ``fake_provider``), so a test can build, share and adjust
replies without a server running.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from typing import Any, Literal, Self, TypeAlias

__all__ = ["RecordedRequest", "Reply", "ReplySource", "SSEStyle"]

DEFAULT_CONTENT = "Hello from FakeProvider."

JSONObject: TypeAlias = dict[str, Any]
SSEStyle: TypeAlias = Literal["plain", "crlf", "comments", "coalesced", "split"]
_Kind: TypeAlias = Literal[
    "ok", "fixed", "hang", "truncated_json", "malformed_sse", "echo_credentials"
]
EchoStyle: TypeAlias = Literal["json", "php", "raw"]

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
    query: str = ""
    # Set when the body was over the server's max_body_bytes: it was answered 413, and neither
    # ``body`` nor ``raw`` holds it. The size its Content-Length declared, else the limit + 1.
    oversize_bytes: int | None = None

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
    echo_style: EchoStyle = "json"
    end_at: int | None = None
    malformed_at: int | None = None
    error_at: int | None = None
    error_event: JSONObject = field(default_factory=dict)
    pause_at: int | None = None
    pause_s: float = 0.0

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
    def echo_credentials(cls, status: int = 401, *, style: EchoStyle = "json") -> Self:
        """An auth error whose message repeats every header, query parameter and top-level text
        field of the body the request carried, keys included, as careless providers and
        gateways do: for testing that a key never reaches an error, a log line or a span
        however it was sent.

        ``style`` is how the echo is written: ``json`` (a JSON error body, so quotes and
        backslashes in a key come escaped), ``php`` (also ``/`` as ``\\/``, as PHP's
        json_encode writes it) or ``raw`` (a text/plain body with the values as received).
        """
        if style not in ("json", "php", "raw"):
            raise ValueError(f"style must be 'json', 'php' or 'raw', got {style!r}")
        return cls(kind="echo_credentials", status=status, echo_style=style)

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
        """Wait this many seconds before sending anything, even the status line (on the
        server's ``clock`` when it has one, else real seconds)."""
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

    def end_after(self, n_chunks: int) -> Self:
        """Send ``n_chunks`` SSE events, then end the body cleanly: no finish_reason, no [DONE].

        The transport reports nothing wrong, as when a gateway closes an upstream stream that
        died; only a client that checks for the answer's end notices.
        """
        return replace(self, end_at=n_chunks)

    def malformed_after(self, n_chunks: int) -> Self:
        """Send ``n_chunks`` SSE events, then one whose data is not JSON, then the rest."""
        return replace(self, malformed_at=n_chunks)

    def fail_after(
        self, n_chunks: int, status: int = 500, message: str = "The server had an error."
    ) -> Self:
        """Send ``n_chunks`` SSE events, then an error event (``data: {"error": {...}}``, as
        vLLM, OpenRouter and others report a failure mid-stream), and end the stream."""
        error = {"message": message, "type": "server_error", "code": status}
        return replace(self, error_at=n_chunks, error_event={"error": error})

    def pause_after(self, n_chunks: int, seconds: float) -> Self:
        """Send ``n_chunks`` SSE events, go silent for ``seconds``, then send the rest.

        ``pause_after(1, 20)`` is a server that sends the role-only chunk at once and its first
        word 20 s later. Seconds are the server's ``clock``'s (real ones unless it has one).
        """
        return replace(self, pause_at=n_chunks, pause_s=seconds)

    def with_headers(self, headers: Mapping[str, str]) -> Self:
        """Add response headers (overriding earlier ones), e.g. request ids or rate-limit info."""
        return replace(self, headers={**self.headers, **headers})

    def with_chunk_delay(self, seconds: float) -> Self:
        """Wait this many real seconds between SSE events, so they surely arrive apart."""
        return replace(self, chunk_delay=seconds)


ReplySource: TypeAlias = Reply | Callable[[RecordedRequest], Reply]


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
