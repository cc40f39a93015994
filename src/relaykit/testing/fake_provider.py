"""A real OpenAI-compatible HTTP server for tests, with scripted replies and injectable faults.

Mocks at the Python level cannot show what a client does with real HTTP: chunked bodies,
events split across network reads, connections cut mid-stream, ``Retry-After`` headers. This
server speaks the OpenAI chat-completions wire format on a loopback port so a configuration can
be exercised end to end. It depends on nothing else in relaykit, so it tests relaykit from the
outside and ships to users unchanged. This module is the server: the script, the timing and
the faults that act on the connection; what a reply contains is ``replies``, and how it looks
on the wire is ``_wire``.

Typical use::

    async with FakeProvider() as provider:
        provider.script(Reply.rate_limited(retry_after=1), Reply.ok("hi"))
        ...  # point a client at provider.url
        assert provider.request_count == 2
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import replace
from types import TracebackType
from typing import Protocol, Self

from aiohttp import web
from multidict import CIMultiDict

from relaykit.testing._wire import (
    CREATED,
    Envelope,
    credential_echo,
    group_writes,
    include_usage,
    json_body,
    last_user_text,
    parse_object,
    stream_events,
)
from relaykit.testing.replies import RecordedRequest, Reply, ReplySource, SSEStyle

# Re-exported so that imports from this module, the original home of these names, keep working.
__all__ = ["FakeProvider", "RecordedRequest", "Reply", "ReplySource", "SSEStyle"]


# Handlers wake on stop() by themselves; this only bounds one still reading a slow request body.
_SHUTDOWN_BACKSTOP_S = 2.0
DEFAULT_MAX_BODY_BYTES = 16 * 2**20
"""The largest request body FakeProvider reads (16 MiB); a larger one is recorded and answered
413, like a provider's own limit."""


class Sleeps(Protocol):
    """A clock the server's delays can run on (``FakeClock``): only ``sleep`` is used."""

    async def sleep(self, seconds: float) -> None: ...


class FakeProvider:
    """An OpenAI-compatible server on a random loopback port that replays scripted replies.

    ``async with`` runs it on the current event loop; plain ``with`` runs it on a loop in a
    background thread, for synchronous tests. Each chat request consumes the next scripted
    reply, or ``default`` once the script is exhausted; either may be a function of the
    ``RecordedRequest``. Response ids are ``chatcmpl-fake-<n>`` where ``provider.requests[n - 1]``
    is the request that got it.

    Delays (``Reply.delayed``, ``with_chunk_delay``) are real seconds, or seconds of ``clock``
    when one is given: with the test's ``FakeClock``, a reply "takes" 2 s of the clock the
    client measures with, and no test waits for it.
    """

    def __init__(
        self,
        *,
        model: str = "fake-model",
        host: str = "127.0.0.1",
        port: int = 0,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        clock: Sleeps | None = None,
    ):
        if isinstance(max_body_bytes, bool) or not isinstance(max_body_bytes, int):
            raise ValueError(f"max_body_bytes must be a whole number, got {max_body_bytes!r}")
        if max_body_bytes < 1:
            raise ValueError(f"max_body_bytes must be at least 1, got {max_body_bytes}")
        self.model = model
        self.max_body_bytes = max_body_bytes
        self.host = host
        self.clock = clock
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

    @property
    def open_connections(self) -> int:
        """Client connections open right now (idle keep-alive ones included): a client that
        gave up on a reply and closed its connection shows here as one fewer."""
        if self._runner is None or self._runner.server is None:
            return 0
        # aiohttp keeps a handler listed until its reply coroutine ends, which for a delayed
        # reply is long after the client left: a connection is open while its transport is.
        return sum(
            1
            for handler in self._runner.server.connections
            if handler.transport is not None and not handler.transport.is_closing()
        )

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
        app = web.Application(client_max_size=self.max_body_bytes)
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
        """Store the request and return it with its 1-based arrival number; an oversize body
        is recorded too (``oversize_bytes``), without its content."""
        oversize: int | None = None
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raw = b""
            oversize = request.content_length or self.max_body_bytes + 1
        recorded = RecordedRequest(
            method=request.method,
            path=request.path,
            headers=dict(request.headers),
            body=parse_object(raw),
            raw=raw,
            query=request.query_string,
            oversize_bytes=oversize,
        )
        self.requests.append(recorded)
        return recorded, len(self.requests)

    def _too_large(self, recorded: RecordedRequest) -> web.Response:
        message = (
            f"Request body is larger than FakeProvider's limit of {self.max_body_bytes} bytes "
            f"({recorded.oversize_bytes} bytes); raise it with FakeProvider(max_body_bytes=...)"
        )
        error = {"message": message, "type": "invalid_request_error", "code": "request_too_large"}
        return web.json_response({"error": error}, status=413)

    async def _models(self, request: web.Request) -> web.StreamResponse:
        recorded, _ = await self._record(request)
        if recorded.oversize_bytes is not None:
            return self._too_large(recorded)
        model = {
            "id": self.model,
            "object": "model",
            "created": CREATED,
            "owned_by": "relaykit-fake",
        }
        return web.json_response({"object": "list", "data": [model]})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        recorded, number = await self._record(request)
        if recorded.oversize_bytes is not None:
            return self._too_large(recorded)
        reply = self._next_reply(recorded)
        model = recorded.body.get("model") if recorded.body else None
        envelope = Envelope(
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
            return replace(reply, echoes=False, content=last_user_text(recorded.body))
        if reply.kind == "echo_credentials":
            body, content_type = credential_echo(
                recorded.headers, recorded.query, recorded.body, reply.echo_style
            )
            return replace(reply, kind="fixed", body=body, content_type=content_type)
        return reply

    async def _send(
        self, request: web.Request, recorded: RecordedRequest, reply: Reply, envelope: Envelope
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
            events = stream_events(reply, envelope, include_usage(recorded.body))
            return await self._send_stream(request, reply, events)
        return await self._send_json(request, reply, json_body(reply, envelope))

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
        cuts = (reply.drop_at, reply.stall_at, reply.end_at)
        cut = next((at for at in cuts if at is not None), None)
        headers = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        response = web.StreamResponse(headers=_headers(reply, headers))
        if reply.kind == "truncated_json":
            response.force_close()
        await response.prepare(request)
        for index, writes in enumerate(group_writes(events[:cut], reply.sse_style)):
            if index and await self._pause(reply.chunk_delay):
                return _abort(request, response)
            if index and index == reply.pause_at and await self._pause(reply.pause_s):
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
            if self.clock is not None:
                stopping = asyncio.ensure_future(self._stopping.wait())
                sleeping = asyncio.ensure_future(self.clock.sleep(seconds))
                try:
                    await asyncio.wait((stopping, sleeping), return_when=asyncio.FIRST_COMPLETED)
                finally:
                    stopping.cancel()
                    sleeping.cancel()
                return self._stopping.is_set()
            try:
                await asyncio.wait_for(self._stopping.wait(), seconds)
            except TimeoutError:
                return False
        return self._stopping.is_set()


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
