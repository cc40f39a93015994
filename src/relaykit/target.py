"""Target: one backend in a Relay, with its own name and per-target middleware."""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field

from relaykit.backends.base import Backend
from relaykit.errors import RelayError
from relaykit.events import AttemptFailed, AttemptStarted, AttemptSucceeded
from relaykit.pipeline import CallContext, Handler, Middleware, Response, compose
from relaykit.types import ChatRequest

__all__ = ["BoundTarget", "Target"]


@dataclass(frozen=True, slots=True)
class Target:
    """A backend as one step of a fallback chain.

    ``middleware`` wraps only this target (first listed = outermost), which is where a circuit
    breaker or a rate limit belongs: it then guards one provider, not the whole chain.
    ``context_window`` (tokens) lets the fallback skip to a larger model on a context error.

    >>> Target(backend, name="primary", middleware=[CircuitBreaker()])
    """

    backend: Backend
    name: str | None = None
    middleware: Sequence[Middleware] = field(default_factory=tuple)
    context_window: int | None = None

    @property
    def label(self) -> str:
        """The name errors, events and results use for this target."""
        return self.name or self.backend.name

    def bind(self) -> BoundTarget:
        """The target's handler: its middleware around one upstream request.

        ``ctx.target`` names this target from the moment it is tried, so per-target middleware
        (a breaker, a rate limit) can keep state by target, and after success it names the
        target that answered.
        """
        name = self.label
        inner = compose(self.middleware, _upstream(self.backend, name))

        def enter(request: ChatRequest, ctx: CallContext) -> Awaitable[Response]:
            ctx.target = name
            return inner(request, ctx)

        return BoundTarget(self, enter)


@dataclass(frozen=True, slots=True)
class BoundTarget:
    """A target with its composed handler, as strategies (Fallback, ...) receive it."""

    target: Target
    handler: Handler

    @property
    def name(self) -> str:
        return self.target.label


def _upstream(backend: Backend, name: str) -> Handler:
    async def call(request: ChatRequest, ctx: CallContext) -> Response:
        ctx.attempt += 1
        attempt = ctx.attempt
        started = ctx.clock.now()
        if ctx.listeners:
            ctx.emit(AttemptStarted(name, attempt, backend.model or request.model))
        try:
            if request.stream:
                stream = await backend.astream(request, ctx)
                stream.target = name
                result: Response = stream
            else:
                result = await backend.acomplete(request, ctx)
        except RelayError as exc:
            exc.target = name
            if ctx.listeners:
                ctx.emit(AttemptFailed(name, attempt, exc, ctx.clock.now() - started))
            raise
        if ctx.listeners:
            ctx.emit(AttemptSucceeded(name, attempt, ctx.clock.now() - started))
        return result

    return call
