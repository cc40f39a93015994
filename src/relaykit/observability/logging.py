"""Logging: one structlog line per call, plus a line for every failure, retry and fallback.

``Logging`` is a listener first: the Relay registers its ``on_event`` and the events carry
everything a line needs, so the middleware itself adds nothing to a call unless message content
is asked for. structlog is used as the application configured it (processors, renderer, level);
relaykit never configures it.

Lines and their levels:

========================  =======  ===========================================================
event                     level    fields
========================  =======  ===========================================================
relaykit.completed        level=   target, model, latency_ms, attempts, prompt_tokens,
                                   completion_tokens, total_tokens, tenant, cached, stream
                                   (+ messages, answer with ``content=True``)
relaykit.failed           error    attempts, latency_ms, tenant, stream, error_type, status,
                                   error (the call failed: the caller gets this error)
relaykit.attempt_failed   warning  target, attempt, latency_ms, error_type, status, error
relaykit.retrying         warning  target, attempt, delay_s, error_type, status, error
relaykit.falling_back     warning  target, to_target, error_type, status, error
relaykit.circuit_opened   warning  target, cooldown_s, reason
relaykit.rate_limited     warning  target, wait_s, limit
relaykit.circuit_closed   info     target
relaykit.hedged           info     target (the one waited on), to_target, after_ms (Hedge)
relaykit.hedge_won        info     target, over (the requests cancelled)
relaykit.route            debug    target, route: each target the call considered and what
                                   happened there (only for a call that did more than get one
                                   answer from the first target it asked)
relaykit.attempt_started  debug    target, attempt, model        (only with ``verbose=True``)
relaykit.attempt_ok       debug    target, attempt, latency_ms   (only with ``verbose=True``)
relaykit.cache_hit        debug    key, age_s                    (only with ``verbose=True``)
relaykit.cache_miss       debug    key                           (only with ``verbose=True``)
========================  =======  ===========================================================

The completed line already says whether the answer was cached and how many attempts it took,
so the per-step debug lines are opt-in: without ``verbose`` the Relay does not even build the
events behind them.

Error texts come from relaykit's errors, which never contain an API key; request headers are
never logged.
"""

from __future__ import annotations

import logging as _stdlib_logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from relaykit._support.secrets import mask_shapes
from relaykit._support.thirdparty import is_lazy_proxy, proxy_caches_logger
from relaykit.contract.errors import RelayError, RouteStep
from relaykit.contract.events import (
    AttemptFailed,
    AttemptStarted,
    AttemptSucceeded,
    CacheHit,
    CacheMiss,
    CircuitClosed,
    CircuitOpened,
    Completed,
    Event,
    Failed,
    FallingBack,
    HedgeStarted,
    HedgeWon,
    RateLimited,
    Retrying,
    StoreDegraded,
    StoreRecovered,
)
from relaykit.contract.outcome import completed_event, served
from relaykit.contract.pipeline import CallContext, Handler, Response
from relaykit.contract.schema import ChatCompletion, ChatRequest
from relaykit.contract.stream import ChatStream

if TYPE_CHECKING:
    from structlog.typing import BindableLogger

__all__ = ["Logging"]

_LEVELS = {
    "debug": _stdlib_logging.DEBUG,
    "info": _stdlib_logging.INFO,
    "warning": _stdlib_logging.WARNING,
    "error": _stdlib_logging.ERROR,
    "critical": _stdlib_logging.CRITICAL,
}
_DEBUG = _stdlib_logging.DEBUG
_INFO = _stdlib_logging.INFO
_WARNING = _stdlib_logging.WARNING
_ERROR = _stdlib_logging.ERROR

_log = _stdlib_logging.getLogger("relaykit")


class Logging:
    """Logs each call once on success, and every failure, retry and fallback as it happens.

    ``level`` is the level of the one line a successful call writes; failures are warnings.
    ``verbose=True`` adds debug lines for each attempt start, attempt success and cache lookup.
    Message content (the request's messages and the answer's text) is logged only with
    ``content=True``. Place it first in ``Relay(middleware=[...])`` so its latency covers the
    whole call.

    >>> Relay(targets=[...], middleware=[Logging(), Cache(ttl_s=600), Retry(attempts=3)])
    """

    def __init__(
        self,
        *,
        logger: BindableLogger | None = None,
        level: str = "info",
        content: bool = False,
        verbose: bool = False,
    ) -> None:
        if not isinstance(level, str) or level.lower() not in _LEVELS:
            raise ValueError(f"level must be one of {', '.join(map(repr, _LEVELS))}, got {level!r}")
        self.level = level.lower()
        self.content = content
        self.verbose = verbose
        import structlog  # here, not at import: a Relay without Logging never loads it

        self.logger: Any = logger if logger is not None else structlog.get_logger("relaykit")
        self._structlog_config = structlog.get_config
        self._levelno = _LEVELS[self.level]
        # A lazy proxy (what structlog.get_logger returns) assembles a new logger on every call,
        # which costs more than the level check it would serve. Assemble it once and again only
        # when the app reconfigures structlog, so configuring after building the Relay works.
        self._proxy: Any = self.logger if is_lazy_proxy(self.logger) else None
        self._config_key: tuple[object, ...] | None = None
        self._bound: Any = self.logger
        self._check: Callable[[int], bool] | None = _level_check(self.logger)
        self._write_failed = self._writer(*_LINES[Failed])
        self._handlers: dict[type[Event], Callable[[Any], None]] = {
            kind: self._writer(*line)
            for kind, line in _LINES.items()
            if verbose or kind not in _VERBOSE_ONLY
        }
        self._handlers[Failed] = self._failed
        # With content, __call__ writes the completion line (it has the request).
        self._handlers[Completed] = self._route if content else self._completed
        # The Relay builds only the events some listener wants (see relaykit.events).
        self.wants = frozenset(self._handlers) | {Completed}

    def __repr__(self) -> str:
        return f"Logging(level={self.level!r}, content={self.content!r}, verbose={self.verbose!r})"

    # --- middleware: a pass-through unless content is logged -----------------------------------

    def __call__(
        self, request: ChatRequest, ctx: CallContext, call_next: Handler
    ) -> Awaitable[Response]:
        # Not a coroutine: without content, the call costs no frame of its own.
        if self.content:
            return self._with_content(request, ctx, call_next)
        return call_next(request, ctx)

    async def _with_content(
        self, request: ChatRequest, ctx: CallContext, call_next: Handler
    ) -> Response:
        result = await call_next(request, ctx)
        if isinstance(result, ChatStream):

            def finished(stream: ChatStream, error: RelayError | None) -> None:
                if error is None and stream.ended_cleanly:
                    self._content_completed(request, ctx, stream.partial(), stream=True)

            result.on_finish(finished)
        else:
            # A completion answering a stream request (a cache hit) is replayed by the Relay;
            # it is logged now, as the replay cannot fail.
            self._content_completed(request, ctx, result, stream=bool(request.stream))
        return result

    def _content_completed(
        self, request: ChatRequest, ctx: CallContext, completion: ChatCompletion, *, stream: bool
    ) -> None:
        try:
            if self._enabled(self._levelno) is None:
                return  # the messages are not even dumped
            self._completed(
                completed_event(ctx, completion, served(ctx, completion.relay), stream=stream),
                messages=[m.model_dump(mode="json", exclude_none=True) for m in request.messages],
                answer=completion.content,
            )
        except Exception:  # a logging failure never fails the call or breaks the stream
            _log.exception("relaykit Logging failed to log a completed call")

    # --- listener ------------------------------------------------------------------------------

    def on_event(self, event: Event) -> None:
        """Write the line for ``event`` (the Relay calls this for every event of a call)."""
        handler = self._handlers.get(type(event))
        if handler is not None:
            handler(event)

    def _enabled(self, levelno: int) -> Any | None:
        """The logger to write with, or None when ``levelno`` is filtered out."""
        if self._proxy is not None:
            self._follow_configuration(self._proxy)
        check = self._check
        return self._bound if check is None or check(levelno) else None

    def _follow_configuration(self, proxy: Any) -> None:
        config = self._structlog_config()
        key = (
            config["processors"],
            config["wrapper_class"],
            config["logger_factory"],
            config["context_class"],
        )
        if key != self._config_key:
            self._bound = proxy.bind()
            self._check = _level_check(self._bound)
            self._config_key = key
            if proxy_caches_logger(proxy):
                # structlog cached the logger (cache_logger_on_first_use): the proxy now keeps
                # it whatever the configuration becomes, so there is nothing left to follow.
                self._proxy = None

    def _completed(self, e: Completed, **content: Any) -> None:
        """The one line of a successful call; ``content`` adds messages and answer."""
        log = self._enabled(self._levelno)
        if log is not None:
            if content:  # bound, so the plain line is written without unpacking a dict
                log = log.bind(**content)
            relay = e.relay
            if relay is not None and relay.continued:  # who wrote the part before the break
                log = log.bind(continued_from=list(relay.continued_from))
            usage = e.usage
            getattr(log, self.level)(
                "relaykit.completed",
                target=e.target,
                model=e.model,
                latency_ms=_ms(e.latency_s),
                attempts=e.attempts,
                prompt_tokens=None if usage is None else usage.prompt_tokens,
                completion_tokens=None if usage is None else usage.completion_tokens,
                total_tokens=None if usage is None else usage.total_tokens,
                tenant=e.tenant,
                cached=e.cached,
                stream=e.stream,
            )
        self._route(e)

    def _route(self, e: Completed) -> None:
        relay = e.relay
        if relay is not None and relay.rerouted:
            self._route_line(e.target, relay.route)

    def _route_line(self, target: str | None, route: Sequence[RouteStep]) -> None:
        log = self._enabled(_DEBUG)
        if log is not None:
            log.debug("relaykit.route", target=target, route=[step.describe() for step in route])

    def _writer(self, levelno: int, name: str, fields: _Fields) -> Callable[[Any], None]:
        """The handler that writes one table row's line for an event."""
        method = _METHODS[levelno]

        def write(event: Any) -> None:
            log = self._enabled(levelno)
            if log is not None:
                getattr(log, method)(name, **fields(event))

        return write

    def _failed(self, e: Failed) -> None:
        self._write_failed(e)
        if e.error.route:
            self._route_line(None, e.error.route)


def _level_check(logger: Any) -> Callable[[int], bool] | None:
    """The logger's own "is this level on?" test; None when it has none (then all levels are)."""
    check = getattr(logger, "is_enabled_for", None) or getattr(logger, "isEnabledFor", None)
    return check if callable(check) else None


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)


def _error_fields(error: RelayError) -> dict[str, Any]:
    # str(error) is relaykit's own message ("target 'x' answered 503: ..."), masked where it was
    # built; the key-shape net catches an error a user's own middleware or function raised.
    text = mask_shapes(str(error))
    return {"error_type": type(error).__name__, "status": error.status, "error": text}


_Fields = Callable[[Any], dict[str, Any]]
_METHODS = {_DEBUG: "debug", _INFO: "info", _WARNING: "warning", _ERROR: "error"}

# Every line but the completion line (its level is the Logging's own, and it may carry content):
# event kind -> (level, line, the line's fields), as the table in this module's docstring.
_LINES: dict[type[Event], tuple[int, str, _Fields]] = {
    Failed: (
        _ERROR,
        "relaykit.failed",
        lambda e: {
            "attempts": e.attempts,
            "latency_ms": _ms(e.latency_s),
            "tenant": e.tenant,
            "stream": e.stream,
            **_error_fields(e.error),
        },
    ),
    AttemptFailed: (
        _WARNING,
        "relaykit.attempt_failed",
        lambda e: {
            "target": e.target,
            "attempt": e.attempt,
            "latency_ms": _ms(e.latency_s),
            **_error_fields(e.error),
        },
    ),
    Retrying: (
        _WARNING,
        "relaykit.retrying",
        lambda e: {
            "target": e.target,
            "attempt": e.attempt,
            "delay_s": round(e.delay_s, 3),
            **_error_fields(e.error),
        },
    ),
    FallingBack: (
        _WARNING,
        "relaykit.falling_back",
        lambda e: {"target": e.from_target, "to_target": e.to_target, **_error_fields(e.error)},
    ),
    CircuitOpened: (
        _WARNING,
        "relaykit.circuit_opened",
        lambda e: {"target": e.target, "cooldown_s": round(e.cooldown_s, 3), "reason": e.reason},
    ),
    RateLimited: (
        _WARNING,
        "relaykit.rate_limited",
        lambda e: {"target": e.target, "wait_s": round(e.wait_s, 3), "limit": e.limit},
    ),
    CircuitClosed: (_INFO, "relaykit.circuit_closed", lambda e: {"target": e.target}),
    HedgeStarted: (
        _INFO,
        "relaykit.hedged",
        lambda e: {"target": e.waiting_on, "to_target": e.target, "after_ms": _ms(e.after_s)},
    ),
    HedgeWon: (
        _INFO,
        "relaykit.hedge_won",
        lambda e: {"target": e.target, "over": list(e.over)},
    ),
    StoreDegraded: (
        _WARNING,
        "relaykit.store_degraded",
        lambda e: {"store": e.store, "error": e.error},
    ),
    StoreRecovered: (
        _INFO,
        "relaykit.store_recovered",
        lambda e: {"store": e.store, "down_s": round(e.down_s, 3)},
    ),
    AttemptStarted: (
        _DEBUG,
        "relaykit.attempt_started",
        lambda e: {"target": e.target, "attempt": e.attempt, "model": e.model},
    ),
    AttemptSucceeded: (
        _DEBUG,
        "relaykit.attempt_ok",
        lambda e: {"target": e.target, "attempt": e.attempt, "latency_ms": _ms(e.latency_s)},
    ),
    CacheHit: (_DEBUG, "relaykit.cache_hit", lambda e: {"key": e.key, "age_s": round(e.age_s, 3)}),
    CacheMiss: (_DEBUG, "relaykit.cache_miss", lambda e: {"key": e.key}),
}
# The per-step lines written only with verbose=True (the completion line says the rest).
_VERBOSE_ONLY = frozenset({AttemptStarted, AttemptSucceeded, CacheHit, CacheMiss})
