"""Continuing a broken stream on the next targets, so the caller reads one answer.

``Fallback(continue_streams=True)`` hands a committed stream to ``continued``, which passes
its chunks on and, when it breaks, asks the next targets in turn to continue the text the
caller holds (``_splice.continuation_request``: by prefill where the Target declares it, else
by the instruction turn; a 400 to the prefill is asked again the other way). Each
continuation's opening is held back until ``_splice.Splice`` knows how it joins: repeats are
cut out, a restart that diverges is passed over. Where no target can continue cleanly, the
break is raised with a note saying what was tried; the caller's stream turns it into
``StreamInterruptedError`` with exactly what the caller received.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import TypeAlias

from relaykit.contract.errors import (
    Attempt,
    BadResponseError,
    ContextWindowError,
    InvalidRequestError,
    RelayError,
    RouteStep,
    StreamInterruptedError,
)
from relaykit.contract.pipeline import CallContext, TimeBounds
from relaykit.contract.schema import ChatCompletionChunk, ChatRequest
from relaykit.contract.stream import ChatStream, commits
from relaykit.contract.target import BoundTarget
from relaykit.strategies._route import skipped
from relaykit.strategies._splice import Splice, continuation_request, separator

__all__ = ["Announcer", "continued"]

Announcer: TypeAlias = Callable[
    [tuple[BoundTarget, ...], int, CallContext, RelayError, "int | None"], None
]
"""How the strategy tells listeners it moves on (``FallingBack``): chain, index, ctx, error."""


async def continued(
    chain: tuple[BoundTarget, ...],
    index: int,
    request: ChatRequest,
    ctx: CallContext,
    stream: ChatStream,
    bounds: TimeBounds,
    announce: Announcer,
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
            announce(chain, index, ctx, broken, None)
            if tools:
                broken.add_note(
                    "It was not continued: it was producing tool calls, which a second "
                    "model cannot finish for the first."
                )
                raise broken  # the caller's ChatStream re-wraps it with the whole partial
            await current.aclose()
            found = await _continuation(
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
    chain: tuple[BoundTarget, ...],
    start: int,
    request: ChatRequest,
    ctx: CallContext,
    partial: str,
    bounds: TimeBounds,
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
        # Asked after the Timeouts around the Fallback returned: it gets the bounds the broken
        # stream's attempt had, and the context its own back after.
        lifted, ctx.bounds = ctx.bounds, bounds
        try:
            stream, prefilled = await _ask_to_continue(
                target, request, ctx, partial, refuses_prefill
            )
        except RelayError as exc:
            ctx.failures.append(Attempt(target.name, exc, ctx.clock.now() - started))
            why.append(f"{target.name!r} failed: {exc.message}")
            continue
        finally:
            ctx.bounds = lifted
        try:
            opening = await _opening(stream, splice, None if prefilled else partial)
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
    target: BoundTarget,
    request: ChatRequest,
    ctx: CallContext,
    partial: str,
    refuses_prefill: set[str],
) -> tuple[ChatStream, bool]:
    """The target's continuation stream, asked the way it declares, and whether by prefill; a
    prefill it refuses (a 400) is asked again once as an instruction turn, and not offered to
    it again."""
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
            return result, True
    result = await target.handler(continuation_request(request, partial, False), ctx)
    assert isinstance(result, ChatStream)
    return result, False


async def _opening(
    stream: ChatStream, splice: Splice, instructed: str | None
) -> list[ChatCompletionChunk] | None:
    """The continuation's first chunks with what repeats the partial cut out, read until the
    splice can decide; None when the continuation diverged. ``instructed`` is the partial when
    the continuation was asked by an instruction turn (its opening may lack a space)."""
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
        opening = "".join(text)
        gap = separator(instructed, opening) if instructed and join.kind == "continue" else ""
        return _trimmed(held, join.drop, gap)


def _trimmed(chunks: list[ChatCompletionChunk], drop: int, gap: str) -> list[ChatCompletionChunk]:
    """``chunks`` with the first ``drop`` characters of their text removed and ``gap`` put
    before the rest, without the role (the caller has it from the first stream) or chunks
    left empty by the cut."""
    kept: list[ChatCompletionChunk] = []
    for chunk in chunks:
        if not chunk.choices:
            kept.append(chunk)  # a usage chunk
            continue
        choice = chunk.choices[0]
        content = choice.delta.content or ""
        cut = min(drop, len(content))
        drop -= cut
        rest = content[cut:]
        if rest and gap:
            rest, gap = gap + rest, ""
        delta = choice.delta.model_copy(update={"role": None, "content": rest or None})
        changed = chunk.model_copy(
            update={"choices": [choice.model_copy(update={"delta": delta}), *chunk.choices[1:]]}
        )
        if commits(changed) or changed.usage is not None:
            kept.append(changed)
    return kept


def _with_id(chunk: ChatCompletionChunk, stream_id: str) -> ChatCompletionChunk:
    return chunk if chunk.id == stream_id else chunk.model_copy(update={"id": stream_id})


def _collect(chunk: ChatCompletionChunk, text: list[str]) -> bool:
    """Add the chunk's text to ``text``; whether the chunk carries a tool-call delta."""
    if not chunk.choices:
        return False
    delta = chunk.choices[0].delta
    if delta.content:
        text.append(delta.content)
    return bool(delta.tool_calls or delta.function_call)
