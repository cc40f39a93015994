"""ChatStream: the streamed answer, past its commit point.

The commit point is the first chunk that carries part of the answer: text, a tool-call delta or
a finish_reason. The role-only chunk (``{"role": "assistant", "content": ""}``) that vLLM and
many gateways send the moment they accept a request is not it: a stream that breaks after it has
told the caller nothing. A handler returns a ChatStream only once the commit point has arrived
(``ChatStream.committed``), holding back the chunks before it and delivering them first. Before
it, a failure is an ordinary exception that retry and fallback handle; after it, the caller owns
the stream, and a failure surfaces as ``StreamInterruptedError`` carrying the partial answer.

``Relay.astream()`` hands out a *pending* ChatStream: iterate it directly, or ``await`` it first
to reach the commit point (so errors before the first chunk raise at the ``await``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Sequence
from types import TracebackType
from typing import Any, Self

from relaykit.contract.assembler import StreamAssembler, chunks_from_completion
from relaykit.contract.errors import BadResponseError, RelayError, StreamInterruptedError
from relaykit.contract.schema import ChatCompletion, ChatCompletionChunk, RelayInfo, set_relay_info

__all__ = ["ChatStream", "StreamFinalizer", "commits"]

_log = logging.getLogger("relaykit")

StreamFinalizer = Callable[["ChatStream", "RelayError | None"], None]


def commits(chunk: ChatCompletionChunk) -> bool:
    """Whether ``chunk`` carries part of the answer, which makes it the stream's commit point.

    Text of any kind counts (content, a refusal, a provider's ``reasoning_content``), as do a
    tool-call delta and a finish_reason; a role, empty strings and a usage-only chunk do not.
    """
    for choice in chunk.choices:
        if choice.finish_reason:
            return True
        delta = choice.delta
        if delta.content or delta.tool_calls or delta.function_call or delta.refusal:
            return True
        extras = delta.__pydantic_extra__
        if extras and any(isinstance(value, str) and value for value in extras.values()):
            return True
    return False


class ChatStream:
    """An async iterator of ``ChatCompletionChunk``; ``await stream.completion()`` assembles.

    Finalizers added with ``on_finish`` run exactly once: when the stream ends cleanly
    (``error`` is None and ``ended_cleanly`` is True), when it breaks (``error`` set), or when
    the caller closes it early (``error`` None, ``ended_cleanly`` False). Closing early includes
    ``aclose()``, a cancelled reader, an exception that is not a ``RelayError``, and a ``break``
    out of ``async for``. Python does not tell an async iterator about a ``break``; the stream
    notices only when it is garbage-collected, possibly on another thread, so its finalizers
    then run as a callback on the event loop where they were added, or at once if that loop is
    closed. Finalizers must be cheap and synchronous, and must cope with a closed loop.
    """

    __slots__ = (
        "_ahead",
        "_assembler",
        "_chunks",
        "_finalizers",
        "_finished",
        "_loop",
        "_opener",
        "ended_cleanly",
        "relay",
        "target",
    )

    def __init__(
        self,
        first: ChatCompletionChunk | None,
        chunks: AsyncIterator[ChatCompletionChunk],
        *,
        target: str | None = None,
    ) -> None:
        # Chunks already read, delivered before the rest: the first one, and any held back
        # before the commit point.
        self._ahead: deque[ChatCompletionChunk] = deque(() if first is None else (first,))
        self._chunks = chunks
        self._opener: Callable[[], Awaitable[ChatStream]] | None = None
        self._assembler = StreamAssembler()
        self._finalizers: list[StreamFinalizer] = []
        self._finished = False
        self._loop: asyncio.AbstractEventLoop | None = None  # where the finalizers were added
        self.ended_cleanly = False
        self.target = target
        self.relay: RelayInfo | None = None

    @classmethod
    def pending(cls, opener: Callable[[], Awaitable[ChatStream]]) -> ChatStream:
        """A stream that calls ``opener`` on first use and then behaves as what it returned."""
        stream = cls(None, _iterate(()))
        stream._opener = opener
        return stream

    @classmethod
    async def committed(
        cls, chunks: AsyncIterator[ChatCompletionChunk], *, target: str | None = None
    ) -> ChatStream:
        """The stream of ``chunks``, returned once its commit point has arrived.

        Chunks before the commit point (the role-only chunk) are held back and delivered
        first. A failure before it propagates as it is, an ordinary failure; a stream that
        ends before it raises ``BadResponseError``: it had no answer to give.
        """
        withheld: list[ChatCompletionChunk] = []
        while True:
            chunk = await anext(chunks, None)
            if chunk is None:
                raise BadResponseError(
                    f"ended its stream after {len(withheld)} chunk"
                    f"{'s' if len(withheld) != 1 else ''} and no content, tool call or "
                    "finish_reason in them",
                    target=target,
                )
            withheld.append(chunk)
            if commits(chunk):
                stream = cls(withheld[0], chunks, target=target)
                stream._ahead.extend(withheld[1:])
                return stream

    @classmethod
    def replay(cls, chunks: Sequence[ChatCompletionChunk], *, target: str | None = None) -> Self:
        """A committed stream of chunks already in hand (a cache hit, a function's answer)."""
        if not chunks:
            raise ValueError("a replayed stream needs at least one chunk")
        return cls(chunks[0], _iterate(chunks[1:]), target=target)

    @classmethod
    def from_completion(
        cls, completion: ChatCompletion, *, include_usage: bool, target: str | None = None
    ) -> Self:
        """A committed stream of the chunks a provider would have sent for ``completion``.

        The usage chunk is sent only when ``include_usage`` asks for it (the request's
        ``stream_options.include_usage``), as OpenAI does.
        """
        return cls.replay(
            chunks_from_completion(completion, include_usage=include_usage), target=target
        )

    @classmethod
    async def through(
        cls, stream: ChatStream, chunks: AsyncIterator[ChatCompletionChunk]
    ) -> ChatStream:
        """``stream`` as read through ``chunks``, a generator over it that a middleware adds.

        The first chunk has already arrived (``stream`` is committed); taking it through
        ``chunks`` starts the generator, so closing the new stream early closes ``stream`` too.
        """
        first = await anext(chunks)
        wrapped = cls(first, chunks, target=stream.target)
        wrapped.relay = stream.relay
        return wrapped

    async def _open(self) -> None:
        opener, self._opener = self._opener, None
        assert opener is not None
        inner = await opener()
        # Adopt the committed stream: its source, its assembler, and its finalizers.
        self._ahead, inner._ahead = inner._ahead, deque()
        self._chunks = inner._chunks
        self._assembler = inner._assembler
        self._finalizers.extend(inner._finalizers)
        inner._finalizers = []
        inner._finished = True
        self._loop = self._loop or inner._loop
        self.target = inner.target
        self.relay = self.relay or inner.relay

    def __await__(self) -> Generator[Any, None, Self]:
        return self._committed().__await__()

    async def _committed(self) -> Self:
        if self._opener is not None:
            await self._open()
        return self

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> ChatCompletionChunk:
        if self._opener is not None:
            await self._open()
        if self._ahead:
            chunk = self._ahead.popleft()
        else:
            try:
                chunk = await self._chunks.__anext__()
            except StopAsyncIteration:
                self.ended_cleanly = True
                self._finish(None)
                raise
            except RelayError as exc:
                cause = _breaking(exc)
                # An inner stream knows which target broke (a continuation's, say), and what
                # was tried to continue it (its notes).
                inner = isinstance(exc, StreamInterruptedError)
                notes = getattr(exc, "__notes__", ()) if inner else ()
                broke = (exc.target if inner else None) or self.target
                error = self._interrupted(cause, broke, notes)
                self._finish(error)
                raise error from cause
            except BaseException:  # cancelled, or a bug: the caller will not read on
                self._finish(None)
                raise
        self._assembler.add(chunk)
        return chunk

    def _interrupted(
        self, cause: RelayError, target: str | None, notes: Sequence[str]
    ) -> StreamInterruptedError:
        received = self._assembler.chunk_count
        advice = (
            " ".join(notes) + " The partial answer is in .partial."
            if notes  # continuing it was tried, or ruled out
            else "The partial answer is in .partial; retry the call or use "
            "Fallback(continue_streams=True) to continue on another target."
        )
        error = StreamInterruptedError(
            f"broke its stream after {received} chunk{'s' if received != 1 else ''}: "
            f"{cause.message.rstrip('.')}. {advice}",
            partial=self._assembler.completion(),
            target=target or cause.target,  # the Target's name, not the backend's
        )
        for note in notes:  # so a stream wrapped around this one says it too
            error.add_note(note)
        return error

    def on_finish(self, finalizer: StreamFinalizer) -> None:
        """Run ``finalizer(stream, error)`` once, when the stream ends, breaks or is closed."""
        self._finalizers.append(finalizer)
        if self._loop is None:
            with contextlib.suppress(RuntimeError):  # added outside async code: no loop to use
                self._loop = asyncio.get_running_loop()

    def _finish(self, error: RelayError | None) -> None:
        if self._finished:
            return
        self._finished = True
        for finalizer in self._finalizers:
            try:
                finalizer(self, error)
            except Exception:  # one failing finalizer must not keep the others from running
                _log.exception("relaykit stream finalizer %r failed", finalizer)

    def partial(self) -> ChatCompletion:
        """What has arrived so far, assembled (the whole answer once the stream ended)."""
        return self._assembler.completion()

    async def completion(self) -> ChatCompletion:
        """Read the rest of the stream and return it as one ChatCompletion."""
        async for _ in self:
            pass
        completion = self._assembler.completion()
        set_relay_info(completion, self.relay)
        return completion

    async def aclose(self) -> None:
        """Stop reading and release the connection; safe to call more than once."""
        self._opener = None
        aclose = getattr(self._chunks, "aclose", None)
        if aclose is not None:
            await aclose()
        self._finish(None)

    def __del__(self) -> None:
        # A ``break`` out of ``async for`` leaves the stream unfinished; its collection is the
        # only sign. Collection happens at any point of any thread (a SyncChatStream dropped by
        # sync code), so the finalizers are handed to their loop as a callback of their own,
        # where they run as if the stream had ended there (and the loop's exception handler
        # reports a failing one). Nothing may escape from here, and a half-built stream has no
        # slots set.
        if getattr(self, "_finished", True) or not self._finalizers:
            return
        loop = self._loop
        if loop is not None:
            try:
                loop.call_soon_threadsafe(self._finish, None)
                return
            except RuntimeError:  # the loop is closed: nobody waits there, finish right here
                pass
        with contextlib.suppress(Exception):  # no loop, no caller: nobody to report to
            self._finish(None)

    async def __aenter__(self) -> Self:
        return await self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        state = "pending" if self._opener else ("finished" if self._finished else "open")
        return f"<ChatStream {state} target={self.target!r} chunks={self._assembler.chunk_count}>"


def _breaking(error: RelayError) -> RelayError:
    """The error that broke the stream, under a StreamInterruptedError a middleware passed on."""
    if isinstance(error, StreamInterruptedError) and isinstance(error.__cause__, RelayError):
        return error.__cause__
    return error


async def _iterate(chunks: Sequence[ChatCompletionChunk]) -> AsyncIterator[ChatCompletionChunk]:
    for chunk in chunks:
        yield chunk
