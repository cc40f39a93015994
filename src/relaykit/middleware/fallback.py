"""Fallback: try the targets in order, moving on at once when one fails.

Which failures move on is a policy by error type (most specific class wins): invalid requests
fail fast, everything else — including auth, quota, context-window, open circuits and local rate
limits — moves to the next target. There is no backoff between targets: when another target can
answer, waiting helps nobody.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from relaykit.errors import (
    AllTargetsFailedError,
    Attempt,
    ContextWindowError,
    InvalidRequestError,
    RelayError,
)
from relaykit.events import FallingBack
from relaykit.pipeline import CallContext, Handler, Response
from relaykit.target import BoundTarget
from relaykit.types import ChatRequest

__all__ = ["Fallback"]

ErrorRule = type[RelayError] | Callable[[RelayError], bool]


class Fallback:
    """The default strategy: the first target that answers wins.

    ``fallback_on`` replaces the default rule with error types and predicates on errors; an
    error matching any of them moves on to the next target.
    """

    def __init__(self, *, fallback_on: Sequence[ErrorRule] | None = None) -> None:
        self.fallback_on = tuple(fallback_on) if fallback_on is not None else None

    def moves_on(self, error: RelayError) -> bool:
        """Whether ``error`` from one target should send the call to the next one."""
        if self.fallback_on is None:
            return isinstance(error, ContextWindowError) or not isinstance(
                error, InvalidRequestError
            )
        return any(
            isinstance(error, rule) if isinstance(rule, type) else rule(error)
            for rule in self.fallback_on
        )

    def build(self, targets: Sequence[BoundTarget]) -> Handler:
        if len(targets) == 1:
            return targets[0].handler  # one target raises its own typed error
        chain = tuple(targets)

        async def fallback(request: ChatRequest, ctx: CallContext) -> Response:
            attempts: list[Attempt] = []
            for index, target in enumerate(chain):
                started = ctx.clock.now()
                try:
                    return await target.handler(request, ctx)
                except RelayError as exc:
                    attempts.append(Attempt(target.name, exc, ctx.clock.now() - started))
                    if not self.moves_on(exc):
                        raise
                    if ctx.listeners and index + 1 < len(chain):
                        ctx.emit(FallingBack(target.name, chain[index + 1].name, exc))
            raise AllTargetsFailedError(attempts)

        return fallback
