"""``@resilient``: relaykit's middlewares around a function that calls a model itself.

The function calls a model with any SDK (the openai SDK, httpx, ...); the same middlewares run
around it, the SDK's exceptions are classified into relaykit's taxonomy, and fallback calls the
function again with the next model.
"""

from __future__ import annotations

import asyncio
import contextvars
import copy
import functools
import inspect
import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from pydantic import PrivateAttr

from relaykit._support.checks import is_number
from relaykit.backends.classify import classify_exception, describe_exception
from relaykit.backends.function import FunctionBackend
from relaykit.contract.errors import InvalidRequestError, RelayError
from relaykit.contract.pipeline import Middleware
from relaykit.contract.schema import ChatCompletion, ChatRequest
from relaykit.contract.target import Target
from relaykit.facade.loop_thread import LoopThread
from relaykit.facade.relay import Relay

__all__ = ["resilient"]

F = TypeVar("F", bound=Callable[..., Any])

_CALL: contextvars.ContextVar[tuple[tuple[Any, ...], dict[str, Any]]] = contextvars.ContextVar(
    "relaykit_resilient_call"
)


class _Envelope(ChatCompletion):
    """Carries the wrapped function's own return value through the pipeline and the cache."""

    _value: Any = PrivateAttr(default=None)


def resilient(
    *,
    retry: Middleware | int | None = None,
    fallback_models: Sequence[str] = (),
    cache: Middleware | None = None,
    timeout: Middleware | float | None = None,
    middleware: Sequence[Middleware] = (),
    model_arg: str = "model",
) -> Callable[[F], F]:
    """Run relaykit's middlewares around your own model-calling function.

    The function is called with its own arguments; fallback calls it again with its
    ``model_arg`` parameter set to the next model. Exceptions from the openai SDK, httpx,
    aiohttp or requests are classified (status, Retry-After, timeouts, connection errors) so
    Retry and Fallback decide as they would for a relaykit backend; any other exception is the
    function's own bug and reaches the caller unchanged, with no retry and no fallback. Cache
    keys are the function's module, qualified name and arguments.

    >>> @resilient(retry=3, fallback_models=["gpt-4o-mini"], timeout=30)
    ... async def ask(question: str, model: str = "gpt-4o") -> str:
    ...     answer = await client.chat.completions.create(model=model, messages=[...])
    ...     return answer.choices[0].message.content
    """

    if isinstance(fallback_models, str) or not all(isinstance(m, str) for m in fallback_models):
        raise ValueError(
            f"fallback_models must be a list of model names, e.g. fallback_models=['gpt-4o-mini'], "
            f"got {fallback_models!r}"
        )

    if cache is not None and (isinstance(cache, type) or not callable(cache)):
        raise ValueError(f"cache must be a Cache (e.g. Cache(ttl_s=600)), got {cache!r}")

    def decorate(fn: F) -> F:
        signature = inspect.signature(fn)
        if fallback_models and model_arg not in signature.parameters:
            raise TypeError(
                f"{fn.__qualname__} has no {model_arg!r} parameter, so fallback_models cannot be "
                f"passed to it; add the parameter or set model_arg="
            )
        targets = [Target(_backend(fn, signature, model_arg, None), name=fn.__name__)] + [
            Target(_backend(fn, signature, model_arg, m), name=f"{fn.__name__}[{m}]")
            for m in fallback_models
        ]
        layers = [*(_as_timeout(timeout) or ()), *middleware]
        if cache is not None:
            layers.insert(0, cache)
        if retry is not None:
            layers.append(_as_retry(retry))
        relay = Relay(targets=targets, middleware=layers)
        # A sync function's calls run on one private loop thread, as Relay.complete's do; it
        # starts on the first call.
        loop = LoopThread()
        function_name = f"{fn.__module__}.{fn.__qualname__}"

        def request_for(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            key = json.dumps(bound.arguments, sort_keys=True, default=repr)
            # The model names the function, module included: two functions sharing a Cache
            # must not share entries, and the name must be stable across processes for a
            # shared store (so no id()).
            return {"messages": [{"role": "user", "content": key}], "model": function_name}

        async def invoke(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            # The call's arguments reach the backend through a context variable, which the
            # pipeline's tasks inherit; the synthetic request only carries the cache key.
            token = _CALL.set((args, kwargs))
            own: BaseException | None
            try:
                answer = await relay.acomplete(**request_for(args, kwargs))
            except _UnclassifiedError as error:
                own = _own_exception(error)
            else:
                own = None
            finally:
                _CALL.reset(token)
            if own is not None:
                raise own  # the function's own exception, cause and traceback as it raised it
            return answer._value if isinstance(answer, _Envelope) else answer.content

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                return await invoke(args, kwargs)

            run_async.relay = relay  # type: ignore[attr-defined]
            return run_async  # type: ignore[return-value]

        @functools.wraps(fn)
        def run_sync(*args: Any, **kwargs: Any) -> Any:
            return loop.run(invoke(args, kwargs))

        run_sync.relay = relay  # type: ignore[attr-defined]
        return run_sync  # type: ignore[return-value]

    return decorate


class _UnclassifiedError(InvalidRequestError):
    """The wrapped function raised something that is not a model-call failure (a bug of its
    own): it fails fast, with no retry and no fallback, and the caller gets the original."""


def _own_exception(error: BaseException) -> BaseException:
    """The wrapped function's own exception behind an _UnclassifiedError.

    A cache follower gets a copy of the leader's error chained to the original: follow the
    causes past relaykit's wrappers; a follower raises a copy, so concurrent callers never
    share (and pile tracebacks onto) one exception object.
    """
    follower = False
    while isinstance(error, RelayError) and error.__cause__ is not None:
        follower = follower or isinstance(error.__cause__, RelayError)
        error = error.__cause__
    if not follower:
        return error
    try:
        twin = copy.copy(error)
    except Exception:  # an exception class copy cannot rebuild: share the original
        return error
    twin.__cause__, twin.__context__ = error.__cause__, error.__context__
    twin.__suppress_context__ = error.__suppress_context__
    return twin.with_traceback(error.__traceback__)


def _backend(
    fn: Callable[..., Any], signature: inspect.Signature, model_arg: str, model: str | None
) -> FunctionBackend:
    async def call(request: ChatRequest) -> _Envelope:
        args, kwargs = _CALL.get()
        if model is not None:  # a fallback model replaces the argument, however it was passed
            bound = signature.bind(*args, **kwargs)
            bound.arguments[model_arg] = model
            args, kwargs = bound.args, bound.kwargs
        try:
            if inspect.iscoroutinefunction(fn):
                value = await fn(*args, **kwargs)
            else:
                value = await asyncio.to_thread(fn, *args, **kwargs)
        except RelayError:
            raise
        except Exception as exc:
            error = classify_exception(exc)
            if error is None:
                raise _UnclassifiedError(f"raised {describe_exception(exc)}") from exc
            raise error from exc
        envelope = _Envelope.model_validate(
            {
                "id": "resilient",
                "object": "chat.completion",
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": _text(value)},
                        "finish_reason": "stop",
                    }
                ],
            }
        )
        envelope._value = value
        return envelope

    return FunctionBackend(call, name=fn.__name__, model=model)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)


def _as_retry(retry: Middleware | int) -> Middleware:
    from relaykit.middleware.retry import Retry

    if isinstance(retry, int) and not isinstance(retry, bool):
        return Retry(attempts=retry)
    if not isinstance(retry, Retry):
        raise ValueError(f"retry must be a Retry or a number of attempts, got {retry!r}")
    return retry


def _as_timeout(timeout: Middleware | float | None) -> list[Middleware] | None:
    from relaykit.middleware.timeout import Timeout

    if timeout is None:
        return None
    if is_number(timeout):
        return [Timeout(total_s=timeout)]
    if not isinstance(timeout, Timeout):
        raise ValueError(f"timeout must be a Timeout or a number of seconds, got {timeout!r}")
    return [timeout]
