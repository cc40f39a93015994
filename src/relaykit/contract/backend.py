"""The Backend protocol: what a target must do to answer requests."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from relaykit.contract.pipeline import CallContext
from relaykit.contract.schema import ChatCompletion, ChatRequest
from relaykit.contract.stream import ChatStream

__all__ = ["Backend", "HasBaseURL"]


@runtime_checkable
class Backend(Protocol):
    """Anything with a ``name``, an optional ``model`` and these three coroutines is a backend.

    ``astream`` returns only after the first chunk arrived (the commit point) and raises a
    ``RelayError`` for any failure before it. ``model`` is what goes upstream; when it is None
    the request's own ``model`` is sent.
    """

    name: str
    model: str | None

    async def acomplete(self, request: ChatRequest, ctx: CallContext) -> ChatCompletion: ...

    async def astream(self, request: ChatRequest, ctx: CallContext) -> ChatStream: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class HasBaseURL(Protocol):
    """A backend that sends HTTP to ``base_url`` (credentials in it masked, host and port kept).

    The sync API reads it to notice a target served by the calling thread's own event loop,
    which no answer could come from while that thread waits.
    """

    base_url: str
