"""FunctionBackend: any Python function as a backend, for local models, tests and glue code."""

from __future__ import annotations

import asyncio
import inspect
import itertools
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from typing import Any

from relaykit.backends.classify import describe_exception
from relaykit.contract.errors import BadResponseError, ProviderError, RelayError
from relaykit.contract.pipeline import CallContext
from relaykit.contract.schema import ChatCompletion, ChatCompletionChunk, ChatRequest
from relaykit.contract.stream import ChatStream

__all__ = ["FunctionBackend"]

_ids = itertools.count(1)
# Results that are one whole answer, although str, dict and pydantic models are all iterable.
_WHOLE = (str, dict, ChatCompletion)


class FunctionBackend:
    """Turns ``fn(request)`` into a backend.

    ``fn`` may be sync or async and may return a string (the answer's text), a dict or a
    ``ChatCompletion``; for streams it may also return an (async) iterable of strings or chunks.
    Sync functions run in a worker thread, so a blocking call does not stall the event loop.
    Exceptions that are not relaykit errors become ``ProviderError`` (retryable), so retry and
    fallback treat a failing function like a failing provider.

    >>> FunctionBackend(lambda request: "hello", name="local")
    """

    def __init__(
        self,
        fn: Callable[[ChatRequest], Any],
        *,
        name: str | None = None,
        model: str | None = None,
    ) -> None:
        self.fn = fn
        self.name: str = name or str(getattr(fn, "__name__", "function"))
        self.model = model
        # An object whose __call__ is async is async too.
        self._is_async = any(
            inspect.iscoroutinefunction(f) or inspect.isasyncgenfunction(f)
            for f in (fn, type(fn).__call__)
        )

    def __repr__(self) -> str:
        return f"FunctionBackend({self.fn!r}, name={self.name!r}, model={self.model!r})"

    async def _call(self, request: ChatRequest) -> Any:
        try:
            if self._is_async:
                result = self.fn(request)
                return await result if inspect.isawaitable(result) else result
            return await asyncio.to_thread(self.fn, request)
        except RelayError as exc:
            exc.target = exc.target or self.name
            raise
        except Exception as exc:
            raise ProviderError(f"raised {describe_exception(exc)}", target=self.name) from exc

    async def acomplete(self, request: ChatRequest, ctx: CallContext) -> ChatCompletion:
        result = await self._call(request)
        # A ChatCompletion is iterable too (pydantic models iterate their fields): not pieces.
        if isinstance(result, AsyncIterable | Iterable) and not isinstance(result, _WHOLE):
            return await ChatStream(None, self._chunks(request, result)).completion()
        return self._completion(request, result)

    async def astream(self, request: ChatRequest, ctx: CallContext) -> ChatStream:
        result = await self._call(request)
        if not isinstance(result, AsyncIterable | Iterable) or isinstance(result, _WHOLE):
            include_usage = bool(request.stream_options and request.stream_options.include_usage)
            return ChatStream.from_completion(
                self._completion(request, result), include_usage=include_usage, target=self.name
            )
        return await ChatStream.committed(self._chunks(request, result), target=self.name)

    def _completion(self, request: ChatRequest, result: Any) -> ChatCompletion:
        if isinstance(result, ChatCompletion):
            return result
        if isinstance(result, str):
            return ChatCompletion.model_validate(
                {
                    **self._head(request),
                    "object": "chat.completion",
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": result},
                            "finish_reason": "stop",
                        }
                    ],
                }
            )
        if isinstance(result, dict):
            return ChatCompletion.model_validate(result)
        raise BadResponseError(
            f"returned {type(result).__name__}; return a str, a dict or a ChatCompletion",
            target=self.name,
        )

    def _head(self, request: ChatRequest) -> dict[str, Any]:
        return {
            "id": f"chatcmpl-fn-{next(_ids)}",
            "created": int(time.time()),
            "model": self.model or request.model or self.name,
        }

    async def _chunks(
        self, request: ChatRequest, items: AsyncIterable[Any] | Iterable[Any]
    ) -> AsyncIterator[ChatCompletionChunk]:
        head = {**self._head(request), "object": "chat.completion.chunk"}
        source = aiter(items) if isinstance(items, AsyncIterable) else _aiter(items)
        texts = 0
        try:
            async for item in source:
                if isinstance(item, ChatCompletionChunk):
                    yield item
                elif isinstance(item, dict):
                    yield ChatCompletionChunk.model_validate(item)
                else:
                    delta = (
                        {"content": str(item)}
                        if texts
                        else {"role": "assistant", "content": str(item)}
                    )
                    texts += 1
                    yield ChatCompletionChunk.model_validate(
                        {**head, "choices": [{"index": 0, "delta": delta}]}
                    )
        except RelayError:
            raise
        except Exception as exc:
            raise ProviderError(f"raised {describe_exception(exc)}", target=self.name) from exc
        finally:
            # A stream closed early closes the function's generator now, so its ``finally``
            # (freeing a model slot, a file) runs before the caller moves on, not at collection.
            close = getattr(source, "aclose", None)
            if close is not None:
                await close()
        if texts:  # plain text pieces carry no finish_reason of their own
            yield ChatCompletionChunk.model_validate(
                {**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
            )

    async def aclose(self) -> None:
        """Nothing to release; present so every backend closes the same way."""


async def _aiter(items: Iterable[Any]) -> AsyncIterator[Any]:
    iterator = iter(items)
    try:
        for item in iterator:
            yield item
    finally:
        close = getattr(iterator, "close", None)  # a generator: run its finally now
        if close is not None:
            close()
