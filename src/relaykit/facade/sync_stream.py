"""SyncChatStream: a ChatStream read from synchronous code, one chunk per loop-thread hop."""

from __future__ import annotations

from collections.abc import Iterator
from types import TracebackType
from typing import Self

from relaykit.contract.schema import ChatCompletion, ChatCompletionChunk, RelayInfo
from relaykit.contract.stream import ChatStream
from relaykit.facade.loop_thread import LoopThread

__all__ = ["SyncChatStream"]


class SyncChatStream:
    """A ChatStream read from synchronous code; each chunk is fetched on the Relay's loop."""

    __slots__ = ("_loop", "_stream")

    def __init__(self, loop: LoopThread, stream: ChatStream) -> None:
        self._loop = loop
        self._stream = stream

    def __iter__(self) -> Iterator[ChatCompletionChunk]:
        return self

    def __next__(self) -> ChatCompletionChunk:
        try:
            return self._loop.run(anext(self._stream))
        except StopAsyncIteration:
            raise StopIteration from None

    def open(self) -> Self:
        """Reach the commit point now, so failures before the first chunk raise here."""
        self._loop.run(_committed(self._stream))
        return self

    def completion(self) -> ChatCompletion:
        return self._loop.run(self._stream.completion())

    @property
    def relay(self) -> RelayInfo | None:
        return self._stream.relay

    def close(self) -> None:
        self._loop.run(self._stream.aclose())

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


async def _committed(stream: ChatStream) -> ChatStream:
    """The stream once it reached its commit point: awaiting a ChatStream does exactly that."""
    return await stream
