"""Fallback: try the targets in order, moving on at once when one fails.

Which failures move on is a policy by error type: invalid requests fail fast; everything else
moves on, including auth and quota errors (which also mark that target as skipped for the rest of
the call, so an outer Retry does not ask it again), context-window errors (to the next target
with a larger ``context_window`` when windows are configured), a missing model (404
``model_not_found``: another target may have it), open circuits and local rate limits (the
rule is ``relaykit.contract.error_rules.default_fallback_on``). There is no backoff between targets:
when another target can answer, waiting helps nobody.

Answers can move on too: ``fallback_on=[answer_check(empty_answer)]`` treats an empty answer
like a failure. Answer checks apply to non-streamed calls (a stream is committed at its first
content, before the answer is known).

``continue_streams=True``: when a stream breaks after its commit point, the next target is
asked to continue the partial answer and the caller sees one answer (``_continuation``): a
continuation that starts over has its repeated part dropped, one that diverges is passed
over, streams that were producing tool calls are not continued. A continuation attempt keeps
the time bounds the attempts before it had, and a continued answer is not cached.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from relaykit.contract.error_rules import ErrorRule, check_rules
from relaykit.contract.errors import (
    Attempt,
    BadResponseError,
    RelayError,
    RouteStep,
)
from relaykit.contract.events import FallingBack
from relaykit.contract.pipeline import CallContext, Handler, Response
from relaykit.contract.schema import ChatCompletion, ChatRequest
from relaykit.contract.stream import ChatStream
from relaykit.contract.target import BoundTarget
from relaykit.strategies._continuation import continued
from relaykit.strategies._route import (
    give_up,
    moves_on,
    note_failure,
    skip_reason,
    skipped,
    too_small_after,
)

__all__ = [
    "AnswerCheck",
    "Fallback",
    "answer_check",
    "empty_answer",
    "invalid_json",
    "refusal",
]


@dataclass(frozen=True, slots=True)
class AnswerCheck:
    """A predicate on answers: when it returns True the answer is rejected and the call moves on."""

    check: Callable[[ChatCompletion], bool]
    name: str


def answer_check(check: Callable[[ChatCompletion], bool]) -> AnswerCheck:
    """Mark ``check`` as a predicate on answers, for ``Fallback(fallback_on=[...])``."""
    return AnswerCheck(check, getattr(check, "__name__", "answer check"))


def _empty_answer(answer: ChatCompletion) -> bool:
    message = answer.choices[0].message if answer.choices else None
    return message is None or (not (message.content or "").strip() and not message.tool_calls)


def _refusal(answer: ChatCompletion) -> bool:
    return any(c.message.refusal for c in answer.choices)


def _invalid_json(answer: ChatCompletion) -> bool:
    try:
        json.loads(answer.content or "")
    except ValueError:
        return True
    return False


empty_answer = AnswerCheck(_empty_answer, "empty_answer")
refusal = AnswerCheck(_refusal, "refusal")
invalid_json = AnswerCheck(_invalid_json, "invalid_json")


class Fallback:
    """The default strategy: the first target that answers wins.

    ``fallback_on`` takes error types, predicates on errors, and answer checks. Error rules,
    when given, replace the default rule (list ``default_fallback_on`` among them to add to it
    instead); answer checks add to it.

    >>> Fallback(fallback_on=[RateLimitError, ProviderError, empty_answer])
    >>> Fallback(fallback_on=[default_fallback_on, ContentFilterError])
    """

    def __init__(
        self,
        *,
        fallback_on: Sequence[ErrorRule | AnswerCheck] | None = None,
        continue_streams: bool = False,
    ) -> None:
        if isinstance(fallback_on, type | str | AnswerCheck):
            raise ValueError(
                f"fallback_on must be a list of error types, predicates on errors and answer "
                f"checks, e.g. fallback_on=[RateLimitError, empty_answer]; got {fallback_on!r}"
            )
        rules = tuple(fallback_on or ())
        self.answer_checks = tuple(r for r in rules if isinstance(r, AnswerCheck))
        errors = check_rules("fallback_on", [r for r in rules if not isinstance(r, AnswerCheck)])
        # None keeps the default rule: only answer checks (or nothing) were given.
        self.error_rules: tuple[ErrorRule, ...] | None = errors or None
        self.continue_streams = continue_streams

    def moves_on(self, error: RelayError) -> bool:
        """Whether ``error`` from one target should send the call to the next one."""
        return moves_on(error, self.error_rules)

    def rejected_by(self, answer: ChatCompletion) -> AnswerCheck | None:
        return next((c for c in self.answer_checks if c.check(answer)), None)

    def build(self, targets: Sequence[BoundTarget]) -> Handler:
        chain = tuple(targets)
        if len(chain) == 1 and not self.answer_checks:
            return chain[0].handler  # one target raises its own typed error

        async def fallback(request: ChatRequest, ctx: CallContext) -> Response:
            result, index = await self._first_answer(chain, 0, request, ctx)
            if self.continue_streams and isinstance(result, ChatStream):
                # A continuation is asked for after the layers outside (a Timeout) have lifted
                # their bounds: it gets the ones the attempts before it had.
                rest = continued(chain, index, request, ctx, result, ctx.bounds, self._announce)
                return await ChatStream.through(result, rest)
            return result

        return fallback

    async def _first_answer(
        self, chain: tuple[BoundTarget, ...], start: int, request: ChatRequest, ctx: CallContext
    ) -> tuple[Response, int]:
        """The first answer from ``chain[start:]`` and the index of the target that gave it."""
        too_small: int | None = None  # a context window already known to be too small
        this_pass = len(ctx.failures)
        for index in range(start, len(chain)):
            target = chain[index]
            reason = skip_reason(target, ctx, too_small)
            if reason is not None:
                ctx.record(RouteStep(target.name, "skipped", reason))
                continue
            started = ctx.clock.now()
            left, ctx.targets_left = ctx.targets_left, len(chain) - index - 1
            try:
                result = await target.handler(request, ctx)
            except RelayError as exc:
                ctx.targets_left = left
                note_failure(ctx, target, exc, started)
                if not self.moves_on(exc):
                    raise
                too_small = too_small_after(exc, target, too_small)
                self._announce(chain, index, ctx, exc, too_small)
                continue
            ctx.targets_left = left
            if self.answer_checks and isinstance(result, ChatCompletion):
                check = self.rejected_by(result)
                if check is not None:
                    error = BadResponseError(
                        f"gave an answer rejected by {check.name}", target=target.name
                    )
                    latency_s = ctx.clock.now() - started
                    ctx.failures.append(Attempt(target.name, error, latency_s))
                    ctx.record(RouteStep.of_error(target.name, error, latency_s))
                    self._announce(chain, index, ctx, error, too_small)
                    continue
            return result, index
        # Every target failed, or was skipped for an earlier failure.
        raise give_up(chain, ctx, this_pass)

    def _announce(
        self,
        chain: tuple[BoundTarget, ...],
        index: int,
        ctx: CallContext,
        error: RelayError,
        too_small: int | None,
    ) -> None:
        if FallingBack not in ctx.observed:
            return
        following = (t for t in chain[index + 1 :] if not skipped(t, ctx, too_small))
        upcoming = next(following, None)
        if upcoming is not None:
            ctx.emit(FallingBack(chain[index].name, upcoming.name, error))
