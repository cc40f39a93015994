"""Fallback: try the targets in order, moving on at once when one fails.

Which failures move on is a policy by error type: invalid requests fail fast; everything else
moves on, including auth and quota errors (which also mark that target as skipped for the rest of
the call, so an outer Retry does not ask it again), context-window errors (to the next target
with a larger ``context_window`` when windows are configured), a missing model (404
``model_not_found``: another target may have it), open circuits and local rate limits (the
rule is ``relaykit._rules.default_fallback_on``). There is no backoff between targets: when
another target can answer, waiting helps nobody.

Answers can move on too: ``fallback_on=[answer_check(empty_answer)]`` treats an empty answer
like a failure. Answer checks apply to non-streamed calls (a stream is committed at its first
chunk, before the answer is known).

``continue_streams=True``: when a stream breaks after its first chunk, the next target is asked
to continue the partial answer and the caller sees one uninterrupted stream. Its limits: the
continuation is a new generation (the next model sees the partial text and is asked to go on
without repeating, which most models do well but not perfectly); streams that were producing
tool calls are not continued; the usage of the stream is the continuing target's. A
continuation attempt keeps the time bounds the attempts before it had, and a continued answer
is not cached.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

from relaykit._rules import ErrorRule, check_rules
from relaykit.errors import (
    Attempt,
    BadResponseError,
    ContextWindowError,
    InvalidRequestError,
    RelayError,
    RouteStep,
    StreamInterruptedError,
)
from relaykit.events import FallingBack
from relaykit.middleware._continuation import Splice, continuation_request
from relaykit.pipeline import CallContext, Handler, Response
from relaykit.strategies._route import (
    give_up,
    moves_on,
    note_failure,
    skip_reason,
    skipped,
    too_small_after,
)
from relaykit.stream import ChatStream, commits
from relaykit.target import BoundTarget
from relaykit.types import ChatCompletion, ChatCompletionChunk, ChatRequest

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
                rest = self._continued(chain, index, request, ctx, result, _Bounds.of(ctx))
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

    async def _continued(
        self,
        chain: tuple[BoundTarget, ...],
        index: int,
        request: ChatRequest,
        ctx: CallContext,
        stream: ChatStream,
        bounds: _Bounds,
    ) -> AsyncIterator[ChatCompletionChunk]:
        """``stream``, continued on the next targets whenever it breaks, as one stream."""
        stream_id = ""  # every chunk the caller gets carries the first one's id
        said: list[str] = []  # the text the caller has been given
        tools = False  # whether the caller has been given a tool-call delta
        refuses_prefill: set[str] = set()
        current: ChatStream = stream
        try:
            while True:
                try:
                    async for chunk in current:
                        stream_id = stream_id or chunk.id
                        tools = _collect(chunk, said) or tools
                        yield _with_id(chunk, stream_id)
                    return
                except StreamInterruptedError as exc:
                    broken = exc
                broke = broken.target or chain[index].name
                ctx.failures.append(Attempt(broke, broken, 0.0))
                ctx.record(RouteStep.of_error(broke, broken, None))
                self._announce(chain, index, ctx, broken, None)
                if tools:
                    broken.add_note(
                        "It was not continued: it was producing tool calls, which a second "
                        "model cannot finish for the first"
                    )
                    raise broken  # the caller's ChatStream re-wraps it with the whole partial
                await current.aclose()
                found = await self._continuation(
                    chain, index + 1, request, ctx, "".join(said), bounds, refuses_prefill
                )
                if isinstance(found, str):
                    broken.add_note(found)
                    raise broken
                current, index, opening = found
                ctx.continued_from = (*ctx.continued_from, broke)
                for chunk in opening:
                    tools = _collect(chunk, said) or tools
                    yield _with_id(chunk, stream_id)
        finally:
            # Closing early (or failing) must release the upstream stream now, not at GC.
            await current.aclose()

    async def _continuation(
        self,
        chain: tuple[BoundTarget, ...],
        start: int,
        request: ChatRequest,
        ctx: CallContext,
        partial: str,
        bounds: _Bounds,
        refuses_prefill: set[str],
    ) -> tuple[ChatStream, int, list[ChatCompletionChunk]] | str:
        """A target's continuation of ``partial`` with its opening joined on, or why none.

        Each target of ``chain[start:]`` is asked in turn; one whose continuation fails, breaks
        before its opening is joined, or diverges from the partial is passed over.
        """
        splice = Splice(partial)
        why: list[str] = []
        for index in range(start, len(chain)):
            target = chain[index]
            if skipped(target, ctx, None):
                continue
            started = ctx.clock.now()
            lifted = _Bounds.of(ctx)
            bounds.apply(ctx)
            try:
                stream = await self._ask_to_continue(target, request, ctx, partial, refuses_prefill)
            except RelayError as exc:
                ctx.failures.append(Attempt(target.name, exc, ctx.clock.now() - started))
                why.append(f"{target.name!r} failed: {exc.message}")
                continue
            finally:
                lifted.apply(ctx)
            try:
                opening = await _opening(stream, splice)
            except StreamInterruptedError as exc:
                ctx.failures.append(Attempt(target.name, exc, ctx.clock.now() - started))
                why.append(f"{target.name!r} broke its continuation too")
                await stream.aclose()
                continue
            if opening is None:
                await stream.aclose()
                error = BadResponseError(
                    "restarted the answer instead of continuing it and then departed from "
                    "what the caller already has; the two cannot be joined",
                    target=target.name,
                )
                latency_s = ctx.clock.now() - started
                ctx.failures.append(Attempt(target.name, error, latency_s))
                ctx.record(RouteStep.of_error(target.name, error, latency_s))
                why.append(f"{target.name!r} restarted the answer and departed from it")
                continue
            return stream, index, opening
        if not why:
            return "No target was left to continue it."
        return f"No target could continue it: {'; '.join(why)}."

    async def _ask_to_continue(
        self,
        target: BoundTarget,
        request: ChatRequest,
        ctx: CallContext,
        partial: str,
        refuses_prefill: set[str],
    ) -> ChatStream:
        """The target's continuation stream, asked the way it declares; a prefill it refuses
        (a 400) is asked again once as an instruction turn, and not offered to it again."""
        prefill = target.target.prefill
        if prefill and target.name not in refuses_prefill:
            try:
                result = await target.handler(continuation_request(request, partial, prefill), ctx)
            except InvalidRequestError as exc:
                if isinstance(exc, ContextWindowError):
                    raise
                refuses_prefill.add(target.name)
            else:
                assert isinstance(result, ChatStream)
                return result
        result = await target.handler(continuation_request(request, partial, False), ctx)
        assert isinstance(result, ChatStream)
        return result


async def _opening(stream: ChatStream, splice: Splice) -> list[ChatCompletionChunk] | None:
    """The continuation's first chunks with what repeats the partial cut out, read until the
    splice can decide; None when the continuation diverged."""
    held: list[ChatCompletionChunk] = []
    text: list[str] = []
    while True:
        chunk = await anext(stream, None)
        if chunk is not None:
            held.append(chunk)
            _collect(chunk, text)
        ended = chunk is None or any(choice.finish_reason for choice in chunk.choices)
        join = splice.decide("".join(text), ended=ended)
        if join is None:
            continue
        if join.kind == "diverged":
            return None
        return _trimmed(held, join.drop)


def _trimmed(chunks: list[ChatCompletionChunk], drop: int) -> list[ChatCompletionChunk]:
    """``chunks`` with the first ``drop`` characters of their text removed, and without the
    role (the caller has it from the first stream) or chunks left empty by the cut."""
    kept: list[ChatCompletionChunk] = []
    for chunk in chunks:
        if not chunk.choices:
            kept.append(chunk)  # a usage chunk
            continue
        choice = chunk.choices[0]
        content = choice.delta.content or ""
        cut = min(drop, len(content))
        drop -= cut
        delta = choice.delta.model_copy(update={"role": None, "content": content[cut:] or None})
        changed = chunk.model_copy(
            update={"choices": [choice.model_copy(update={"delta": delta}), *chunk.choices[1:]]}
        )
        if commits(changed) or changed.usage is not None:
            kept.append(changed)
    return kept


def _with_id(chunk: ChatCompletionChunk, stream_id: str) -> ChatCompletionChunk:
    return chunk if chunk.id == stream_id else chunk.model_copy(update={"id": stream_id})


@dataclass(frozen=True, slots=True)
class _Bounds:
    """The time bounds a Timeout puts on the context for the attempts inside it."""

    deadline: float | None
    attempt_timeout_s: float | None
    first_token_timeout_s: float | None
    idle_timeout_s: float | None

    @classmethod
    def of(cls, ctx: CallContext) -> _Bounds:
        return cls(
            ctx.deadline, ctx.attempt_timeout_s, ctx.first_token_timeout_s, ctx.idle_timeout_s
        )

    def apply(self, ctx: CallContext) -> None:
        ctx.deadline = self.deadline
        ctx.attempt_timeout_s = self.attempt_timeout_s
        ctx.first_token_timeout_s = self.first_token_timeout_s
        ctx.idle_timeout_s = self.idle_timeout_s


def _collect(chunk: ChatCompletionChunk, text: list[str]) -> bool:
    """Add the chunk's text to ``text``; whether the chunk carries a tool-call delta."""
    if not chunk.choices:
        return False
    delta = chunk.choices[0].delta
    if delta.content:
        text.append(delta.content)
    return bool(delta.tool_calls or delta.function_call)
