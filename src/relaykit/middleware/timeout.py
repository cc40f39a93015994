"""Timeout: a deadline for the whole call, and bounds on one attempt and on a stream's silences.

Every bound is measured on ``ctx.clock``, so ``FakeClock`` tests them without waiting. The four
bounds work at different places:

- ``total_s`` sets the deadline of ``ctx.bounds``, which every inner layer already respects
  (backoff sleeps, HTTP timeouts, rate-limit waits), and cancels whatever is still running when
  it passes.
- ``attempt_s``, ``first_token_s`` and ``idle_s`` are left in ``ctx.bounds`` for the target's
  upstream request, which bounds itself by them; so each attempt gets its own budget, however
  many a Retry or a Fallback inside this Timeout makes, and a stall breaks the attempt's own
  stream: ``Fallback(continue_streams=True)`` continues it on the next target whether this
  Timeout wraps the whole call or sits in one target's middleware.
- ``total_s``, past a stream's commit point, watches the stream the caller reads.

A Timeout only ever tightens: an inner one never extends an outer deadline or bound. Each bound
holds for the layers inside it and is lifted when the call leaves it, so a Timeout in one
target's middleware bounds that target only.

Cost: one timer scope per call for ``total_s``, one per attempt for ``attempt_s`` and
``first_token_s``, one per chunk for ``idle_s`` (a few microseconds each); no Timeout, no cost.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import ClassVar

from relaykit._support.checks import positive_seconds
from relaykit.contract.errors import ProviderTimeout
from relaykit.contract.pipeline import CallContext, Handler, Response
from relaykit.contract.schema import ChatCompletionChunk, ChatRequest
from relaykit.contract.stream import ChatStream

__all__ = ["Timeout"]


class Timeout:
    """Bounds how long a call, one attempt, a stream's first content and its silences may take.

    ``total_s``: the whole call (retries, fallbacks, backoff and, for a stream, reading it to
    the end) finishes within this many seconds, or fails with ``ProviderTimeout``.
    ``attempt_s``: one upstream request answers within this (a stream: sends its first content),
    or that attempt fails with a retryable ``ProviderTimeout`` and the fallback moves on.
    ``first_token_s``: a stream's commit point (its first chunk with content, a tool call or a
    finish_reason; a role-only chunk does not count) arrives within this, per attempt, or that
    attempt fails with a retryable ``ProviderTimeout`` and the fallback moves on.
    ``idle_s``: once a stream has started, no more than this passes between two chunks of an
    attempt, or that attempt's stream breaks: ``Fallback(continue_streams=True)`` continues it
    on the next target, otherwise the caller gets ``StreamInterruptedError`` with the partial.

    >>> Relay(targets=[primary, secondary], middleware=[Timeout(total_s=30, attempt_s=10)])
    >>> Target(backend, middleware=[CircuitBreaker(), Timeout(first_token_s=5, idle_s=20)])

    A stall counts as the stalled target's failure for its ``CircuitBreaker`` wherever the
    Timeout is, since it breaks that target's own stream.
    """

    __slots__ = ("attempt_s", "first_token_s", "idle_s", "total_s")
    # What to raise when total_s ran out; a call's own timeout= says its own
    # (relaykit.facade.relay).
    raise_hint: ClassVar[str] = "Raise Timeout(total_s=...)"

    def __init__(
        self,
        *,
        total_s: float | None = None,
        attempt_s: float | None = None,
        first_token_s: float | None = None,
        idle_s: float | None = None,
    ) -> None:
        self.total_s = _seconds("total_s", total_s)
        self.attempt_s = _seconds("attempt_s", attempt_s)
        self.first_token_s = _seconds("first_token_s", first_token_s)
        self.idle_s = _seconds("idle_s", idle_s)
        if total_s is None and attempt_s is None and first_token_s is None and idle_s is None:
            raise ValueError(
                "Timeout needs at least one of total_s, attempt_s, first_token_s or idle_s"
            )

    def __repr__(self) -> str:
        fields = ("total_s", "attempt_s", "first_token_s", "idle_s")
        given = ", ".join(f"{f}={getattr(self, f)!r}" for f in fields if getattr(self, f))
        return f"Timeout({given})"

    async def __call__(
        self, request: ChatRequest, ctx: CallContext, call_next: Handler
    ) -> Response:
        outer = ctx.bounds
        outer_target = ctx.target
        stream = request.stream
        deadline: float | None = None
        own = True  # whether this Timeout's total_s, not an outer deadline, is the binding one
        if self.total_s is not None:
            now = ctx.clock.now()
            deadline = now + self.total_s
            if outer.deadline is not None and outer.deadline < deadline:
                deadline, own = outer.deadline, False
        ctx.bounds = outer.within(
            deadline=deadline,
            attempt_s=self.attempt_s,
            first_token_s=self.first_token_s if stream else None,
            idle_s=self.idle_s if stream else None,
        )
        try:
            if deadline is None:
                result = await call_next(request, ctx)
            else:
                try:
                    async with ctx.clock.timeout(deadline - now):
                        result = await call_next(request, ctx)
                except TimeoutError:
                    error = ProviderTimeout(
                        f"{'did not finish' if ctx.target else 'no target answered'} "
                        f"{self._deadline(own, deadline - now)}. {self.raise_hint} or "
                        "make the targets answer sooner",
                        target=ctx.target,
                    )
                    # The error names the slow target; the layers outside see theirs again.
                    ctx.target = outer_target
                    raise error from None
        finally:
            # Lifted on the way out: the next target, or the next try of an outer Retry, starts
            # from the bounds outside this Timeout.
            ctx.bounds = outer
        if isinstance(result, ChatStream) and deadline is not None:
            return await self._watch(result, ctx, deadline, own)
        return result

    def _deadline(self, own: bool, allowed_s: float | None = None) -> str:
        if own:
            return f"within the call's {self.total_s:g} s deadline"
        if allowed_s is None:
            return "before the call's deadline"
        return f"before the call's deadline ({max(allowed_s, 0.0):.3g} s were left)"

    async def _watch(
        self, stream: ChatStream, ctx: CallContext, deadline: float, own: bool
    ) -> ChatStream:
        """The same stream, failing with a typed error when it outlives the deadline."""
        return await ChatStream.through(stream, self._chunks(stream, ctx, deadline, own))

    async def _chunks(
        self, stream: ChatStream, ctx: CallContext, deadline: float, own: bool
    ) -> AsyncIterator[ChatCompletionChunk]:
        try:
            yield await anext(stream)
            async with ctx.clock.timeout(deadline - ctx.clock.now()):
                async for chunk in stream:
                    yield chunk
        except TimeoutError:
            what = f"did not finish its stream {self._deadline(own)}"
            raise ProviderTimeout(what, target=stream.target) from None
        finally:
            await stream.aclose()  # releases the connection when stalled or closed early


def _seconds(name: str, value: float | None) -> float | None:
    return None if value is None else positive_seconds(name, value)
