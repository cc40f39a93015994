"""The native backend: any OpenAI-compatible chat-completions API over aiohttp, JSON and SSE."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Collection, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import SecretStr, ValidationError

from relaykit._support.checks import positive_seconds, whole_number
from relaykit._support.secrets import (
    MASK,
    SecretDict,
    Secrets,
    SecretURL,
    is_secret_name,
    mask_url,
)
from relaykit.backends._request_json import request_json
from relaykit.backends._sse import SSEDecoder, SSEEvent
from relaykit.backends._timing import time_allowed, timed_out
from relaykit.backends.classify import error_from_http, parse_error_body
from relaykit.contract.errors import (
    BadResponseError,
    InvalidRequestError,
    ProviderConnectionError,
    RelayError,
)
from relaykit.contract.pipeline import CallContext
from relaykit.contract.schema import ChatCompletion, ChatCompletionChunk, ChatRequest
from relaykit.contract.stream import ChatStream

if TYPE_CHECKING:
    import aiohttp

__all__ = ["OpenAICompatible"]


class OpenAICompatible:
    """A backend for any server that speaks OpenAI's ``POST /chat/completions``.

    One aiohttp session (one connection pool) per event loop, opened on first use and closed
    by ``Relay.aclose()``; a pool left open by a loop that has since closed (an ``asyncio.run()``
    without ``aclose()``) is let go when the backend is next used on another loop. ``timeout``
    (seconds) bounds a whole non-streamed answer, the wait for a stream's first chunk, and any
    silence between two chunks; a call's deadline shortens it.

    ``base_url`` may carry a query, which every request keeps (Azure OpenAI's
    ``?api-version=...``; the path is joined before it). Credentials stay secret wherever
    they are passed: ``api_key``, a credential header in ``headers`` (``x-api-key``,
    ``api-key``, ``x-goog-api-key``, any name ending in ``key``, ``token``, ``secret``, ... and
    those you add with ``secret_headers=``), a call's ``extra_headers``, a ``?key=`` query
    parameter or a ``user:password@`` in ``base_url``. None of them appears in a repr, a log
    line, an event, a span or an error, also when a provider echoes it back.

    >>> backend = OpenAICompatible("http://127.0.0.1:8000/v1", api_key="sk-...", model="gpt-4o")
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | SecretStr | None = None,
        *,
        model: str | None = None,
        name: str | None = None,
        headers: Mapping[str, str] | None = None,
        extra_body: Mapping[str, Any] | None = None,
        timeout: float = 60.0,
        connect_timeout: float = 10.0,
        auth_header: str = "Authorization",
        auth_scheme: str | None = "Bearer",
        max_connections: int = 100,
        secret_headers: Collection[str] = (),
    ) -> None:
        if isinstance(secret_headers, str) or not all(isinstance(h, str) for h in secret_headers):
            raise ValueError(
                f"secret_headers must be a list of header names, e.g. ['x-tenant-pass'], got "
                f"{secret_headers!r}"
            )
        self._secret_names = frozenset(h.lower() for h in secret_headers)
        if not isinstance(base_url, str):
            raise ValueError(f"base_url must be a string, got {type(base_url).__name__}")
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(
                f"base_url must be an http(s) URL such as 'https://api.openai.com/v1', "
                f"got {mask_url(base_url, self._secret_names)!r}"
            )
        if not isinstance(api_key, str | SecretStr | None):
            raise ValueError(f"api_key must be a string, got {type(api_key).__name__}")
        for argument, value in (("model", model), ("name", name)):
            if value is not None and (not isinstance(value, str) or not value):
                raise ValueError(f"{argument} must be a non-empty string, got {value!r}")
        if extra_body is not None and not isinstance(extra_body, Mapping):
            raise ValueError(
                f"extra_body must be a dict of fields to add to every request, got {extra_body!r}"
            )
        self.timeout = positive_seconds("timeout", timeout)
        self.connect_timeout = positive_seconds("connect_timeout", connect_timeout)
        self.max_connections = whole_number("max_connections", max_connections, minimum=1)
        given_headers = dict(headers or {})
        for header, value in given_headers.items():
            if not isinstance(header, str) or not isinstance(value, str):
                shown = MASK if is_secret_name(str(header), self._secret_names) else repr(value)
                raise ValueError(f"headers must map header names to strings; {header!r} is {shown}")
        # The path is joined before the query, which is kept: Azure OpenAI's base URL is
        # ``https://<resource>/openai/deployments/<name>?api-version=2024-06-01``.
        path = parts.path.rstrip("/")
        # What relaykit shows (repr, errors) has user:password@ and credential query values
        # (``?key=``) masked; only the URL requests go to keeps them.
        self.base_url = mask_url(
            urlunsplit(parts._replace(path=path, fragment="")), self._secret_names
        )
        self.model = model
        self.name = name or parts.netloc.rpartition("@")[2]
        self.extra_body = SecretDict(extra_body or {}, self._secret_names)
        self._api_key = api_key if isinstance(api_key, SecretStr | None) else SecretStr(api_key)
        self._url = SecretURL(
            urlunsplit(parts._replace(path=f"{path}/chat/completions", fragment=""))
        )
        base_headers = {"Content-Type": "application/json", **given_headers}
        key = self._api_key.get_secret_value() if self._api_key else ""
        if key:
            base_headers[auth_header] = f"{auth_scheme} {key}" if auth_scheme else key
        names = self._secret_names | {auth_header.lower()}
        # Some gateways take the key in the body: extra_body's credential-named fields count.
        in_body = [
            v for k, v in self.extra_body.items() if isinstance(v, str) and is_secret_name(k, names)
        ]
        self._secrets = Secrets.of(
            headers=base_headers, url=base_url, values=[key, *in_body], names=names
        )
        self._json_headers = SecretDict({**base_headers, "Accept": "application/json"}, names)
        self._sse_headers = SecretDict({**base_headers, "Accept": "text/event-stream"}, names)
        self._sessions: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession] = {}

    def __repr__(self) -> str:
        key = repr(MASK) if self._api_key else "None"
        return (
            f"OpenAICompatible(base_url={self.base_url!r}, api_key={key}, "
            f"model={self.model!r}, name={self.name!r})"
        )

    # --- the two calls -------------------------------------------------------------------------

    async def acomplete(self, request: ChatRequest, ctx: CallContext) -> ChatCompletion:
        payload = self._payload(request, stream=False)
        timeout = self._budget(ctx)
        try:
            async with self._session().post(
                self._url,
                data=payload,
                headers=self._headers(ctx, self._json_headers),
                timeout=aiohttp.ClientTimeout(total=timeout, sock_connect=self.connect_timeout),
            ) as response:
                raw = await response.read()
                if response.status >= 400:
                    raise self._http_error(response.status, raw, response.headers, ctx)
        except RelayError:
            raise
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self._transport_error(exc, timeout, ctx) from self._cause(exc, ctx)
        return self._completion(raw, ctx)

    def _completion(self, raw: bytes, ctx: CallContext) -> ChatCompletion:
        try:
            return ChatCompletion.model_validate_json(raw)
        except ValidationError as exc:
            raise self._bad_body(raw, exc, ctx) from None

    async def astream(self, request: ChatRequest, ctx: CallContext) -> ChatStream:
        payload = self._payload(request, stream=True)
        timeout = self._budget(ctx)
        session = self._session()
        try:
            # The commit point must arrive within the budget; later silences are bounded by
            # sock_read, and the stream's total length by whoever owns it.
            async with asyncio.timeout(timeout):
                response = await session.post(
                    self._url,
                    data=payload,
                    headers=self._headers(ctx, self._sse_headers),
                    timeout=aiohttp.ClientTimeout(
                        total=None, sock_connect=self.connect_timeout, sock_read=self.timeout
                    ),
                )
                if response.status >= 400:
                    try:
                        raw = await response.read()
                    finally:
                        response.release()
                    raise self._http_error(response.status, raw, response.headers, ctx)
                # The body decides, not the header (some servers mislabel either way): JSON
                # means the server ignored stream=true and answered whole, served as a stream.
                try:
                    head = await response.content.readany()
                except BaseException:
                    response.release()
                    raise
                if head.lstrip()[:1] == b"{":
                    try:
                        raw = head + await response.read()
                    finally:
                        response.release()
                    options = request.stream_options
                    return ChatStream.from_completion(
                        self._completion(raw, ctx),
                        include_usage=bool(options and options.include_usage),
                        target=self.name,
                    )
                # Returned at the commit point: the first chunk with content, not the role-only
                # chunk a server sends as it accepts the request, so a break before the answer
                # began is an ordinary failure that retry and fallback handle.
                return await ChatStream.committed(
                    self._chunks(response, head, ctx), target=self.name
                )
        except RelayError:
            raise
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self._transport_error(exc, timeout, ctx) from self._cause(exc, ctx)

    async def _chunks(
        self, response: aiohttp.ClientResponse, head: bytes, ctx: CallContext
    ) -> AsyncIterator[ChatCompletionChunk]:
        decoder = SSEDecoder()
        finished = False
        try:
            async for data in _prepend(head, response.content.iter_any()):
                for event in decoder.feed(data):
                    if event.data == "[DONE]":
                        return
                    chunk = self._chunk(event, ctx)
                    finished = finished or _finishes(chunk)
                    yield chunk
            # The last event may lack its blank line; it can still be the one that finishes.
            for event in decoder.flush():
                if event.data == "[DONE]":
                    return
                chunk = self._chunk(event, ctx)
                finished = finished or _finishes(chunk)
                yield chunk
            if not finished:
                raise ProviderConnectionError(
                    "closed its stream before the answer was finished (no finish_reason and no "
                    "[DONE])",
                    target=self.name,
                )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self._transport_error(exc, self.timeout, ctx) from self._cause(exc, ctx)
        finally:
            response.release()

    def _chunk(self, event: SSEEvent, ctx: CallContext) -> ChatCompletionChunk:
        try:
            return ChatCompletionChunk.model_validate_json(event.data)
        except ValidationError as exc:
            raise self._bad_body(event.data.encode(), exc, ctx, in_stream=True) from None

    # --- building the request ------------------------------------------------------------------

    def _payload(self, request: ChatRequest, *, stream: bool) -> bytes:
        model = self.model or request.model
        if not model:
            raise InvalidRequestError(
                "has no model to send: pass model= to the call, or give the backend a model",
                target=self.name,
            )
        return request_json(request, model, stream=stream, extra=self.extra_body)

    def _headers(self, ctx: CallContext, base: dict[str, str]) -> dict[str, str]:
        return {**base, **ctx.options.extra_headers} if ctx.options.extra_headers else base

    def _budget(self, ctx: CallContext) -> float:
        return time_allowed(ctx, self.timeout, self.name)

    def _session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        session = self._sessions.get(loop)
        if session is None or session.closed:
            _import_aiohttp()
            # A new loop: earlier ones may be gone (successive asyncio.run calls).
            for dead in [other for other in self._sessions if other.is_closed()]:
                _abandon(self._sessions.pop(dead))
            session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.max_connections, ttl_dns_cache=300),
            )
            self._sessions[loop] = session
        return session

    async def aclose(self) -> None:
        """Close the connection pools; those of other, still running loops close there."""
        current = asyncio.get_running_loop()
        sessions, self._sessions = self._sessions, {}
        for loop, session in sessions.items():
            if loop is current:
                await session.close()
            elif loop.is_running():
                asyncio.run_coroutine_threadsafe(session.close(), loop)
            elif loop.is_closed():
                _abandon(session)

    # --- errors --------------------------------------------------------------------------------

    def _call_secrets(self, ctx: CallContext) -> Secrets:
        """This backend's credentials and those the call added (``extra_headers``)."""
        if not ctx.options.extra_headers:
            return self._secrets
        return self._secrets + Secrets.of(
            headers=ctx.options.extra_headers, names=self._secret_names
        )

    def _cause(self, exc: BaseException, ctx: CallContext) -> BaseException | None:
        """``exc`` to chain to our error, unless its own text shows a credential (an aiohttp
        error quoting the URL with its ``?key=``): tracebacks and spans print the chain."""
        secrets = self._call_secrets(ctx)
        return None if secrets.contained_in(f"{exc!s} {exc!r}") else exc

    def _http_error(
        self, status: int, raw: bytes, headers: Mapping[str, str], ctx: CallContext
    ) -> RelayError:
        text = self._call_secrets(ctx).mask(raw.decode("utf-8", "replace"))
        return error_from_http(status, text, headers, target=self.name)

    def _bad_body(
        self, raw: bytes, exc: ValidationError, ctx: CallContext, *, in_stream: bool = False
    ) -> RelayError:
        text = self._call_secrets(ctx).mask(raw.decode("utf-8", "replace"))
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if isinstance(data, dict) and "error" in data:
            # Some servers report errors with status 200, or as an event inside the stream.
            code = parse_error_body(data).get("code")
            status = int(code) if isinstance(code, int | str) and str(code).isdigit() else 500
            return error_from_http(status, data, {}, target=self.name)
        where = "a stream chunk" if in_stream else "a body"
        problem = exc.errors(include_url=False)[0]
        return BadResponseError(
            f"sent {where} that is not a valid completion ({problem['msg']}); it starts with "
            f"{text[:120]!r}",
            target=self.name,
        )

    def _transport_error(self, exc: BaseException, timeout: float, ctx: CallContext) -> RelayError:
        if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
            return timed_out(timeout, self.timeout, self.name)
        if isinstance(exc, aiohttp.ClientConnectorError):
            return ProviderConnectionError(
                f"could not be reached at {self.base_url}: {exc.os_error}. Check base_url and "
                "that the server is up",
                target=self.name,
            )
        return ProviderConnectionError(
            f"dropped the connection: {type(exc).__name__}: "
            f"{self._call_secrets(ctx).mask(str(exc))}",
            target=self.name,
        )


def _import_aiohttp() -> None:
    """Load aiohttp as the first connection pool opens, not when relaykit is imported.

    Importing it costs a tenth of a second (it builds its SSL contexts then), which a program
    that imports relaykit and never calls a provider over HTTP should not pay. Every other use
    of the name in this module runs after a pool was opened.
    """
    global aiohttp
    import aiohttp


def _abandon(session: aiohttp.ClientSession) -> None:
    """Let go of a session whose event loop has closed, without that loop.

    Its sockets cannot be shut down properly any more (asyncio needs the loop for that; they
    close when collected), but closing the connector empties its pool and marks session and
    connector closed, so neither warns about being left open and nothing here keeps the dead
    loop's objects alive.
    """
    connector = session.connector
    if connector is None:
        return
    # aiohttp (3.9+) returns an awaitable that warns unless awaited. With the loop closed it
    # has no connection to wait for, so it finishes at its first step, right here.
    steps = connector.close().__await__()
    with contextlib.suppress(StopIteration):
        steps.send(None)
    steps.close()


def _finishes(chunk: ChatCompletionChunk) -> bool:
    """Whether ``chunk`` ends the answer: a stream that had one is complete without [DONE]."""
    return any(choice.finish_reason for choice in chunk.choices)


async def _prepend(head: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The bytes already read to decide what the body is, then the rest of it."""
    if head:
        yield head
    async for data in rest:
        yield data
