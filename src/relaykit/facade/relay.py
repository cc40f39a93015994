"""Relay: the facade that validates a request once and runs it through the pipeline."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

from relaykit._support.checks import layer_list
from relaykit.contract.backend import Backend, HasBaseURL
from relaykit.contract.capabilities import (
    ClosesResources,
    KeysRequests,
    ObservesEvents,
    RetriesCalls,
    WantsEvents,
    check_capabilities,
)
from relaykit.contract.clock import Clock, SystemClock
from relaykit.contract.errors import (
    ConfigError,
    RelayClosedError,
    RelayError,
    RequestValidationError,
)
from relaykit.contract.events import ALL_EVENTS, Completed, Event, Failed, Listener
from relaykit.contract.outcome import completed_event, price_answer, served
from relaykit.contract.pipeline import (
    PLAIN_CALL,
    CacheMode,
    CallContext,
    CallOptions,
    Handler,
    Middleware,
    Response,
    compose,
)
from relaykit.contract.pricing import ceiling
from relaykit.contract.schema import ChatCompletion, ChatRequest, set_relay_info
from relaykit.contract.stream import ChatStream
from relaykit.contract.target import Group, Strategy, Target, chain_of, leaves_of
from relaykit.facade.loop_thread import LoopThread, served_here
from relaykit.facade.request import check_call_options, check_validate, validate_request
from relaykit.facade.sync_stream import SyncChatStream
from relaykit.middleware.budget import Budget
from relaykit.middleware.timeout import Timeout
from relaykit.strategies.fallback import Fallback

__all__ = ["Relay", "Strategy", "SyncChatStream"]

F = TypeVar("F", bound=Callable[..., Any])


class Relay:
    """Reliable chat completions over one or more targets.

    Several targets form a fallback chain, in order (``strategy=`` changes that). ``middleware``
    wraps the whole call, first listed = outermost. Request arguments are OpenAI's
    (``messages=``, ``model=``, ``tools=``, ...), validated before anything is sent; provider
    extras go in ``extra_body=``.

    >>> relay = Relay(targets=[OpenAICompatible(url, api_key=key, model="gpt-4o-mini")])
    >>> answer = await relay.acomplete(messages=[{"role": "user", "content": "Hi"}])
    >>> answer.content, answer.relay.target
    """

    def __init__(
        self,
        targets: Sequence[Backend | Target | Group] = (),
        *,
        routes: Mapping[str, Sequence[Backend | Target | Group]] | None = None,
        middleware: Sequence[Middleware] = (),
        strategy: Strategy | None = None,
        clock: Clock | None = None,
        listeners: Sequence[Listener] = (),
    ) -> None:
        if not targets and not routes:
            raise ValueError("targets must name at least one backend or Target (or give routes=)")
        self.targets = chain_of("targets", targets)
        self.routes = {
            alias: chain_of(f"routes[{alias!r}]", chain) for alias, chain in (routes or {}).items()
        }
        self.middleware = layer_list("middleware", middleware)
        listeners = layer_list("listeners", listeners, what="listeners (functions of an event)")
        if strategy is not None and not callable(getattr(strategy, "build", None)):
            raise ValueError(
                f"strategy must be a strategy object such as Fallback(), LoadBalance() or "
                f"Hedge(), got {strategy!r}"
            )
        if clock is not None and not isinstance(clock, Clock):
            raise ValueError(
                f"clock must be a Clock (now, sleep, timeout, random), such as FakeClock() in "
                f"tests, got {clock!r}"
            )
        self.strategy = strategy or Fallback()
        self.clock = clock or SystemClock()
        # A target named in several routes is one target: its middleware is checked once. A
        # group stands for its members.
        every_target = tuple(
            {
                id(leaf): leaf
                for t in (*self.targets, *(t for chain in self.routes.values() for t in chain))
                for leaf in leaves_of(t)
            }.values()
        )
        _reject_stacked_retries(self.middleware, every_target)
        _require_prices(self.middleware, every_target)
        # What an answer may cost per token, for the layers outside the targets (a Budget).
        self._price = ceiling(t.price for t in every_target)
        # Typed as objects: what a layer offers beyond __call__ is asked with isinstance below.
        self._layers: tuple[object, ...] = tuple(
            {
                id(m): m
                for m in (*self.middleware, *(m for t in every_target for m in t.middleware))
            }.values()
        )
        # The optional capabilities (relaykit.contract.capabilities) are read here, once; a near
        # miss of one of their names is refused rather than left silently off.
        for layer in self._layers:
            check_capabilities("middleware", layer)
        for listener in listeners:
            check_capabilities("listener", listener)
        self._backends = tuple({id(t.backend): t.backend for t in every_target}.values())
        self._identify = any(
            isinstance(layer, KeysRequests) and layer.keys_requests for layer in self._layers
        )
        observers = [layer for layer in self._layers if isinstance(layer, ObservesEvents)]
        self.listeners = (*listeners, *(layer.on_event for layer in observers))
        self._observed = frozenset[type[Event]]().union(
            *(
                source.wants if isinstance(source, WantsEvents) else ALL_EVENTS
                for source in (*listeners, *observers)
            )
        )
        self._handler = compose(self.middleware, self._router())
        self._loop = LoopThread()
        self._closed = False
        # Where the HTTP targets are, for the sync API to notice one served by its own thread.
        self._endpoints = tuple(
            backend.base_url for backend in self._backends if isinstance(backend, HasBaseURL)
        )

    @classmethod
    def from_config(
        cls,
        source: str | Path | Mapping[str, Any],
        *,
        clock: Clock | None = None,
        listeners: Sequence[Listener] = (),
    ) -> Relay:
        """A Relay from a YAML file or a dict (see ``relaykit.config.loader`` and
        docs/config.md)."""
        from relaykit.config.loader import build_relay_arguments, load_config

        arguments = build_relay_arguments(load_config(source))
        try:
            return cls(**arguments, clock=clock, listeners=listeners)
        except ConfigError:
            raise
        except ValueError as exc:  # duplicate names, stacked retries: the chain as a whole
            raise ConfigError("targets", str(exc)) from None

    def prompt(self, **options: Any) -> Callable[[F], F]:
        """Decorate a typed function as a model call through this Relay.

        The docstring (or the string the function returns) is the prompt and the arguments fill
        it; a ``str`` return annotation gives the answer's text, a pydantic model gives validated
        structured output. ``options`` are request arguments (``model=``, ``temperature=``) and
        ``system=`` for a system message. See ``relaykit.decorators``.
        """
        from relaykit.facade.prompt import prompt

        return prompt(self, **options)

    def _router(self) -> Handler:
        """One handler per chain, picked by the request's model alias when routes exist."""
        default = self.strategy.build([t.bind() for t in self.targets]) if self.targets else None
        if not self.routes:
            assert default is not None
            return default
        by_alias = {
            alias: self.strategy.build([t.bind() for t in chain])
            for alias, chain in self.routes.items()
        }
        aliases = ", ".join(map(repr, by_alias))

        def route(request: ChatRequest, ctx: CallContext) -> Awaitable[Response]:
            handler = by_alias.get(request.model or "", default)
            if handler is None:
                raise RequestValidationError(
                    f"model {request.model!r} names no route; routes are {aliases}",
                    field="model",
                )
            return handler(request, ctx)

        return route

    def __repr__(self) -> str:
        return f"Relay(targets={[t.label for t in self.targets]})"

    # --- async API -----------------------------------------------------------------------------

    async def acomplete(
        self,
        *,
        tenant: str | None = None,
        cache: CacheMode = "use",
        cache_ttl_s: float | None = None,
        cache_max_age_s: float | None = None,
        extra_headers: Mapping[str, str] | None = None,
        extra_body: Mapping[str, Any] | None = None,
        validate: Callable[[ChatCompletion], None] | None = None,
        # The openai SDK's per-call argument, kept by name so code moving over keeps working.
        timeout: float | None = None,  # noqa: ASYNC109
        **request: Any,
    ) -> ChatCompletion:
        """One chat completion; raises a typed ``RelayError`` when no target could answer.

        ``validate(answer)`` may raise ``BadResponseError`` to reject an answer: that attempt
        then counts as failed, and Retry and Fallback handle it like any other failure.
        ``timeout`` (seconds) bounds this call as a ``Timeout(total_s=...)`` around the whole
        pipeline would: retries, fallbacks and backoff included.
        """
        self._refuse_if_closed()
        chat = validate_request(request, extra_body, stream=False, identify=self._identify)
        if validate is not None:
            check_validate(validate)
        ctx = self._context(
            tenant, cache, cache_ttl_s, cache_max_age_s, extra_headers, timeout, validate
        )
        try:
            result = await self._handler_for(timeout)(chat, ctx)
        except RelayError as exc:
            _routed(ctx, exc)
            if Failed in ctx.observed:
                self._failed(ctx, exc, stream=False)
            raise
        if isinstance(result, ChatStream):  # a middleware answered with a stream: read it all
            result = await result.completion()
        earlier = result.relay
        info = served(ctx, earlier)
        if info is not earlier:  # a cache hit's answer says how it was served already
            price_answer(info, ctx, chat, result)
            set_relay_info(result, info)
        if Completed in ctx.observed:
            ctx.emit(completed_event(ctx, result, info, stream=False))
        return result

    def astream(
        self,
        *,
        tenant: str | None = None,
        cache: CacheMode = "use",
        cache_ttl_s: float | None = None,
        cache_max_age_s: float | None = None,
        extra_headers: Mapping[str, str] | None = None,
        extra_body: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        **request: Any,
    ) -> ChatStream:
        """A streamed completion: ``async for chunk in relay.astream(...)``.

        ``await relay.astream(...)`` reaches the commit point (the first chunk) first, so every
        failure before it raises there, after retries and fallbacks. Invalid arguments raise
        here at once. ``timeout`` (seconds) bounds the whole call, reading the stream to its
        end included.
        """
        self._refuse_if_closed()
        chat = validate_request(request, extra_body, stream=True, identify=self._identify)
        ctx = self._context(tenant, cache, cache_ttl_s, cache_max_age_s, extra_headers, timeout)
        handler = self._handler_for(timeout)

        async def open_stream() -> ChatStream:
            try:
                result = await handler(chat, ctx)
            except RelayError as exc:
                _routed(ctx, exc)
                if Failed in ctx.observed:
                    self._failed(ctx, exc, stream=True)
                raise
            earlier = None
            if isinstance(result, ChatCompletion):  # e.g. a cache hit: replay it as chunks
                earlier = result.relay
                include_usage = bool(chat.stream_options and chat.stream_options.include_usage)
                result = ChatStream.from_completion(
                    result, include_usage=include_usage, target=ctx.target
                )
            result.relay = served(ctx, earlier)
            result.on_finish(finished)
            return result

        def finished(stream: ChatStream, error: RelayError | None) -> None:
            if error is not None:
                _routed(ctx, error)
                if Failed in ctx.observed:
                    self._failed(ctx, error, stream=True)
                return
            if ctx.continued:  # another target finished it: answer and event both say so
                stream.relay = served(ctx, None)
            if stream.relay is not None:  # streamed spend is never zero: estimated when unsaid
                price_answer(stream.relay, ctx, chat, stream.partial())
            if stream.ended_cleanly and Completed in ctx.observed:
                assert stream.relay is not None
                ctx.emit(completed_event(ctx, stream.partial(), stream.relay, stream=True))

        return ChatStream.pending(open_stream)

    def _context(
        self,
        tenant: str | None,
        cache: CacheMode,
        cache_ttl_s: float | None,
        cache_max_age_s: float | None,
        extra_headers: Mapping[str, str] | None,
        timeout: float | None,
        validate: Callable[[ChatCompletion], None] | None = None,
    ) -> CallContext:
        plain = (
            tenant is None
            and cache == "use"
            and cache_ttl_s is None
            and cache_max_age_s is None
            and extra_headers is None
        )
        if not plain or timeout is not None:  # a plain call skips checks of what it did not give
            check_call_options(tenant, cache, cache_ttl_s, cache_max_age_s, extra_headers, timeout)
        if plain and validate is None:
            options = PLAIN_CALL  # one shared value for every call that gave no options
        else:
            options = CallOptions(
                tenant, cache, cache_ttl_s, cache_max_age_s, extra_headers, validate
            )
        ctx = CallContext(self.clock, self.clock.now(), self.listeners, self._observed, options)
        ctx.price = self._price
        return ctx

    def _failed(self, ctx: CallContext, error: RelayError, *, stream: bool) -> None:
        latency_s = ctx.clock.now() - ctx.started
        ctx.emit(Failed(error, ctx.attempt, latency_s, stream, ctx.options.tenant))

    def _handler_for(self, timeout: float | None) -> Handler:
        """The pipeline, bounded by the call's own ``timeout=`` when it gave one."""
        if timeout is None:
            return self._handler
        bound = _CallTimeout(total_s=timeout)
        handler = self._handler
        return lambda request, ctx: bound(request, ctx, handler)

    def _refuse_if_closed(self) -> None:
        if self._closed:
            raise RelayClosedError(
                "this Relay is closed (its 'with' block ended, or close()/aclose() was called), "
                "so nothing was sent. Make a new Relay, or keep the calls inside its 'with' block"
            )

    async def aclose(self) -> None:
        """Close every backend's connections and every middleware that holds resources; the
        Relay then refuses calls with ``RelayClosedError``, as httpx and the openai SDK do."""
        self._closed = True
        for backend in self._backends:
            await backend.aclose()
        for layer in self._layers:
            if isinstance(layer, ClosesResources):
                await layer.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # --- sync API: the same pipeline on one private event-loop thread ---------------------------

    def complete(self, **request: Any) -> ChatCompletion:
        """``acomplete`` for synchronous code."""
        self._refuse_sync_here("complete")
        return self._loop.run(self.acomplete(**request))

    def stream(self, **request: Any) -> SyncChatStream:
        """``astream`` for synchronous code: ``for chunk in relay.stream(...)``."""
        self._refuse_sync_here("stream")
        return SyncChatStream(self._loop, self.astream(**request))

    def _refuse_sync_here(self, method: str) -> None:
        """Refuse a sync call that cannot work: on a closed Relay, or on the thread whose event
        loop serves one of the targets (a FakeProvider started with ``async with``): blocking
        that loop until the answer comes means the answer never comes."""
        self._refuse_if_closed()
        served = served_here(self._endpoints)
        if served is not None:
            raise RuntimeError(
                f"relay.{method}() was called on the thread whose event loop serves "
                f"{served}, one of this Relay's targets: the call would block that loop, so the "
                f"server could never answer. In async code use 'await relay.a{method}(...)'; "
                "or run the server on another thread (a FakeProvider with plain 'with')"
            )

    def close(self) -> None:
        """Close connections and stop the private loop thread (``aclose`` for sync code).

        Also right after async use (``asyncio.run(relay.acomplete(...))``): the connection
        pools that use left behind are closed too.
        """
        self._loop.run(self.aclose())
        self._loop.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class _CallTimeout(Timeout):
    """A call's own ``timeout=``: a Timeout around the whole pipeline for that call."""

    __slots__ = ()
    raise_hint = "Pass a larger timeout="


def _routed(ctx: CallContext, error: RelayError) -> None:
    """Give the error the caller gets the call's routing trace."""
    if ctx.route:
        error.route = tuple(ctx.route)


def _require_prices(outer: Sequence[Middleware], targets: Sequence[Target]) -> None:
    """A Budget prices what it covers: every target for one around the chain, its own for one
    on a target. Refuse, naming the target, one that has no price to reserve by."""
    outer_budget = next((layer for layer in outer if isinstance(layer, Budget)), None)
    for target in targets:
        budget = outer_budget or next(
            (layer for layer in target.middleware if isinstance(layer, Budget)), None
        )
        if budget is not None and target.price is None:
            raise ValueError(
                f"target {target.label!r} has no price, and {budget!r} needs one to reserve "
                "each call's worst case; give it Target(..., price=Price(input_per_mtok=..., "
                "output_per_mtok=...)) (or use a backend that knows its price, e.g. LiteLLM)"
            )


def _reject_stacked_retries(outer: Sequence[Middleware], targets: Sequence[Target]) -> None:
    """A Retry inside a Retry multiplies attempts (3 x 3 = 9 upstream calls); refuse it."""
    places = [("middleware", layer) for layer in outer] + [
        (f"target {t.label!r}", layer) for t in targets for layer in t.middleware
    ]
    retries = [
        where
        for where, layer in places
        if isinstance(layer, RetriesCalls) and layer.stacks_with_retry is False
    ]
    if len(retries) > 1 and ("middleware" in retries or len(set(retries)) < len(retries)):
        raise ValueError(
            f"Retry appears more than once on one call path ({', '.join(retries)}): attempts "
            "would multiply. Keep one Retry around the chain, or one per target"
        )
