"""OpenTelemetry: a span per call and a child span per upstream attempt, GenAI conventions.

The call span (``chat {model}``, kind CLIENT) is opened around the rest of the pipeline and is
the current span meanwhile, so spans from the app's own instrumentation nest under it. It ends
when the call completes; for a stream, when the stream finishes. Attempt spans come from the
events the targets emit (AttemptStarted, then AttemptSucceeded or AttemptFailed); events are
emitted in the task that runs the call, so a context variable tells which call they belong to.

Attributes follow the OpenTelemetry GenAI semantic conventions (``gen_ai.*``) plus the route
relaykit took (``relaykit.target``, ``relaykit.attempt``, ``relaykit.cached``,
``relaykit.fallback``, and ``relaykit.route``: one line per target the call considered, in
order, saying what happened there, as ``RouteStep.describe`` writes it). Message content is
recorded only with ``capture_content=True``.

Needs the ``otel`` extra: ``pip install relaykit[otel]``.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import AsyncIterator, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from relaykit._support.secrets import mask_shapes
from relaykit.contract.errors import RelayError, StreamInterruptedError
from relaykit.contract.events import (
    AttemptFailed,
    AttemptStarted,
    AttemptSucceeded,
    CacheHit,
    CircuitOpened,
    Event,
    FallingBack,
    HedgeStarted,
    RateLimited,
    Retrying,
)
from relaykit.contract.outcome import served
from relaykit.contract.pipeline import CallContext, Handler, Response
from relaykit.contract.schema import ChatCompletion, ChatCompletionChunk, ChatRequest
from relaykit.contract.stream import ChatStream
from relaykit.observability._genai import (
    input_messages,
    output_messages,
    request_attributes,
    response_attributes,
)

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Span, TracerProvider

__all__ = ["OpenTelemetry"]

_log = logging.getLogger("relaykit")

# Semantic conventions' fallback when no better error type is known.
_OTHER = "_OTHER"


@dataclass(slots=True)
class _Attempt:
    span: Span
    target: str
    succeeded_ns: int | None = None


@dataclass(slots=True, eq=False)
class _CallTrace:
    """One call's spans; lives in a context variable while the call runs."""

    owner: OpenTelemetry
    span: Span
    parent: Context
    attempts: dict[int, _Attempt] = field(default_factory=dict)
    targets: set[str] = field(default_factory=set)
    fell_back: bool = False


_CURRENT: ContextVar[_CallTrace | None] = ContextVar("relaykit_otel_call", default=None)


class OpenTelemetry:
    """Traces every call and every attempt with OpenTelemetry's GenAI conventions.

    Spans go to ``tracer_provider`` (default: the global one the app set up). Put it in
    ``Relay(middleware=[...])``, first, so its call span covers the whole call; the Relay also
    registers its ``on_event`` as a listener. ``capture_content=True`` records the request's
    messages and the answer (``gen_ai.input.messages`` / ``gen_ai.output.messages``); off by
    default, as prompts often hold personal data.

    >>> Relay(targets=[...], middleware=[OpenTelemetry(tracer_provider=provider), Retry()])
    """

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider | None = None,
        capture_content: bool = False,
        system: str = "openai",
    ) -> None:
        try:
            from opentelemetry import context as otel_context
            from opentelemetry import trace
        except ImportError as exc:
            raise ImportError(
                "OpenTelemetry() needs the OpenTelemetry API and SDK, which are not installed; "
                "install them with: pip install relaykit[otel]"
            ) from exc
        self.capture_content = capture_content
        # gen_ai.system names the API family, not a target: relaykit's backends speak OpenAI's.
        self.system = system
        self._tracer = trace.get_tracer("relaykit", tracer_provider=tracer_provider)
        self._client = trace.SpanKind.CLIENT
        self._in_context = trace.set_span_in_context
        self._attach = otel_context.attach
        self._detach = otel_context.detach
        self._status = trace.Status
        self._error_code = trace.StatusCode.ERROR
        self._handlers: dict[type[Event], Callable[[_CallTrace, Any], None]] = {
            AttemptStarted: self._attempt_started,
            AttemptSucceeded: self._attempt_succeeded,
            AttemptFailed: self._attempt_failed,
            Retrying: self._retrying,
            FallingBack: self._falling_back,
            HedgeStarted: self._hedge_started,
            CacheHit: self._cache_hit,
            CircuitOpened: self._circuit_opened,
            RateLimited: self._rate_limited,
        }

    def __repr__(self) -> str:
        return f"OpenTelemetry(capture_content={self.capture_content!r})"

    # --- the call span -------------------------------------------------------------------------

    async def __call__(
        self, request: ChatRequest, ctx: CallContext, call_next: Handler
    ) -> Response:
        span = self._tracer.start_span(
            f"chat {request.model}" if request.model else "chat",
            kind=self._client,
            attributes=request_attributes(request),
        )
        parent = self._in_context(span)
        call = _CallTrace(self, span, parent)
        token = _CURRENT.set(call)
        otel_token = self._attach(parent)
        try:
            result = await call_next(request, ctx)
        except BaseException as exc:
            self._failed(call, ctx, request, exc)
            raise
        finally:
            self._detach(otel_token)
            _CURRENT.reset(token)
        if isinstance(result, ChatStream):

            def finished(stream: ChatStream, error: RelayError | None) -> None:
                try:
                    if error is not None:
                        self._failed(call, ctx, request, error)
                    else:
                        if not stream.ended_cleanly:
                            call.span.set_attribute("relaykit.stream.closed_early", True)
                        self._succeeded(call, ctx, request, stream.partial())
                except Exception:  # tracing never breaks the caller's stream
                    _log.exception("relaykit OpenTelemetry failed to end a stream's span")

            result.on_finish(finished)
            # Read with this call current, so the attempts a continuation makes (Fallback's
            # continue_streams) get their spans under this call.
            return await ChatStream.through(result, _read_as(call, result))
        self._succeeded(call, ctx, request, result)
        return result

    def _succeeded(
        self, call: _CallTrace, ctx: CallContext, request: ChatRequest, completion: ChatCompletion
    ) -> None:
        response = response_attributes(completion)
        if self.capture_content:
            response["gen_ai.output.messages"] = output_messages(completion)
        answered = self._answering_attempt(call, ctx.target)
        for number, attempt in list(call.attempts.items()):
            if attempt is answered:
                attempt.span.set_attributes(response)
            self._end_attempt(call, number, None)
        span = call.span
        # A cache hit made no attempt: its answer names the target that once gave it.
        info = served(ctx, completion.relay)
        route = self._route_attributes(call, ctx, request, cached=info.cached, target=info.target)
        if not info.cached:
            route["relaykit.route"] = [step.describe() for step in info.route]
        span.set_attributes(route)
        span.set_attributes(response)
        span.end()

    def _failed(
        self, call: _CallTrace, ctx: CallContext, request: ChatRequest, error: BaseException
    ) -> None:
        error_type = _error_type(error)
        _note_broken_stream(call, error)
        for number in list(call.attempts):
            self._end_attempt(call, number, error_type)
        span = call.span
        route = self._route_attributes(call, ctx, request, cached=False, target=ctx.target)
        if ctx.route:
            route["relaykit.route"] = [step.describe() for step in ctx.route]
        span.set_attributes(route)
        span.set_attribute("error.type", error_type)
        if isinstance(error, Exception):
            # Without the chain: a cause is another library's exception as it wrote it (the
            # openai SDK's, under @resilient), which may quote a key the provider echoed;
            # relaykit's own messages are masked.
            stack = mask_shapes("".join(traceback.format_exception(error, chain=False)))
            span.record_exception(
                error,
                attributes={
                    "exception.message": mask_shapes(str(error)),
                    "exception.stacktrace": stack,
                },
            )
        span.set_status(self._status(self._error_code, mask_shapes(str(error)) or error_type))
        span.end()

    def _route_attributes(
        self,
        call: _CallTrace,
        ctx: CallContext,
        request: ChatRequest,
        *,
        cached: bool,
        target: str | None,
    ) -> dict[str, Any]:
        attributes: dict[str, Any] = {
            "gen_ai.system": self.system,
            "gen_ai.provider.name": self.system,  # the newer conventions' name for it
            "relaykit.attempt": ctx.attempt,
            "relaykit.cached": cached,
            "relaykit.fallback": call.fell_back or len(call.targets) > 1,
        }
        if target is not None:
            attributes["relaykit.target"] = target
        if ctx.options.tenant is not None:
            attributes["relaykit.tenant"] = ctx.options.tenant
        if self.capture_content:
            attributes["gen_ai.input.messages"] = input_messages(request)
        return attributes

    # --- attempt spans, from events ------------------------------------------------------------

    def on_event(self, event: Event) -> None:
        """Start and end attempt spans; note retries, fallbacks and waits on the call span."""
        handler = self._handlers.get(type(event))
        if handler is None:
            return
        call = _CURRENT.get()
        # No call of ours is running: an event from a stream continuing after its call
        # returned, or this object is only a listener. There is no span to attach it to.
        if call is not None and call.owner is self:
            handler(call, event)

    def _attempt_started(self, call: _CallTrace, e: AttemptStarted) -> None:
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.system": self.system,
            "gen_ai.provider.name": self.system,  # the newer conventions' name for it
            "relaykit.target": e.target,
            "relaykit.attempt": e.attempt,
        }
        if e.model:
            attributes["gen_ai.request.model"] = e.model
        span = self._tracer.start_span(
            f"attempt {e.target}", context=call.parent, kind=self._client, attributes=attributes
        )
        call.attempts[e.attempt] = _Attempt(span, e.target)
        call.targets.add(e.target)

    def _attempt_succeeded(self, call: _CallTrace, e: AttemptSucceeded) -> None:
        attempt = call.attempts.get(e.attempt)
        if attempt is not None:
            # Ended once the answer is known, so it can carry the response's attributes, but
            # timed as of now. OTel timestamps are wall-clock ns, as the SDK's own are.
            attempt.succeeded_ns = time.time_ns()

    def _attempt_failed(self, call: _CallTrace, e: AttemptFailed) -> None:
        self._end_attempt(call, e.attempt, _error_type(e.error), mask_shapes(str(e.error)))

    def _retrying(self, call: _CallTrace, e: Retrying) -> None:
        self._end_open_attempts(call, e.target, e.error)
        call.span.add_event(
            "relaykit.retrying",
            {
                "relaykit.target": e.target or "",
                "relaykit.attempt": e.attempt,
                "relaykit.delay_s": e.delay_s,
                "error.type": _error_type(e.error),
            },
        )

    def _hedge_started(self, call: _CallTrace, e: HedgeStarted) -> None:
        call.span.add_event(
            "relaykit.hedge",
            {
                "relaykit.target": e.waiting_on,
                "relaykit.to_target": e.target,
                "relaykit.after_s": e.after_s,
            },
        )

    def _falling_back(self, call: _CallTrace, e: FallingBack) -> None:
        call.fell_back = True
        _note_broken_stream(call, e.error)
        self._end_open_attempts(call, e.from_target, e.error)
        call.span.add_event(
            "relaykit.fallback",
            {
                "relaykit.target": e.from_target,
                "relaykit.to_target": e.to_target,
                "error.type": _error_type(e.error),
            },
        )

    def _cache_hit(self, call: _CallTrace, e: CacheHit) -> None:
        call.span.add_event("relaykit.cache_hit", {"relaykit.cache.age_s": e.age_s})

    def _circuit_opened(self, call: _CallTrace, e: CircuitOpened) -> None:
        call.span.add_event(
            "relaykit.circuit_opened",
            {"relaykit.target": e.target, "relaykit.cooldown_s": e.cooldown_s},
        )

    def _rate_limited(self, call: _CallTrace, e: RateLimited) -> None:
        call.span.add_event(
            "relaykit.rate_limited",
            {
                "relaykit.target": e.target,
                "relaykit.wait_s": e.wait_s,
                "relaykit.limit": e.limit,
            },
        )

    def _end_open_attempts(self, call: _CallTrace, target: str | None, error: RelayError) -> None:
        # A retry or fallback means that target's attempt is over, even if a layer outside it
        # (an attempt timeout) ended it without an AttemptFailed event.
        for number, attempt in list(call.attempts.items()):
            if attempt.succeeded_ns is None and (target is None or attempt.target == target):
                self._end_attempt(call, number, _error_type(error), mask_shapes(str(error)))

    def _end_attempt(
        self, call: _CallTrace, number: int, error_type: str | None, message: str | None = None
    ) -> None:
        attempt = call.attempts.pop(number, None)
        if attempt is None:
            return
        span = attempt.span
        if attempt.succeeded_ns is not None:
            span.end(end_time=attempt.succeeded_ns)
            return
        # Never answered: it failed, or the call ended around it (a timeout, a cancellation).
        span.set_attribute("error.type", error_type or _OTHER)
        span.set_status(self._status(self._error_code, message or error_type or _OTHER))
        span.end()

    @staticmethod
    def _answering_attempt(call: _CallTrace, target: str | None) -> _Attempt | None:
        """The last attempt that succeeded on the target that answered."""
        for attempt in reversed(call.attempts.values()):
            if attempt.succeeded_ns is not None and attempt.target == target:
                return attempt
        return None


def _note_broken_stream(call: _CallTrace, error: BaseException) -> None:
    """An attempt whose stream committed, then broke, failed: it ends with the error."""
    if isinstance(error, StreamInterruptedError):
        for attempt in call.attempts.values():
            if error.target is None or attempt.target == error.target:
                attempt.succeeded_ns = None


async def _read_as(call: _CallTrace, stream: ChatStream) -> AsyncIterator[ChatCompletionChunk]:
    try:
        while True:
            token = _CURRENT.set(call)
            try:
                chunk = await anext(stream)
            except StopAsyncIteration:
                return
            finally:
                _CURRENT.reset(token)
            yield chunk
    finally:
        await stream.aclose()


def _error_type(error: BaseException) -> str:
    return type(error).__name__
