"""How a call was served, said once: its ``RelayInfo`` and its ``Completed`` event.

The Relay, Logging (with ``content=True`` it writes the completion line itself) and
OpenTelemetry all report a finished call; they read it from here, so "cached" means the same
everywhere: the call made no upstream attempt.
"""

from __future__ import annotations

from relaykit.contract.events import Completed
from relaykit.contract.pipeline import CallContext
from relaykit.contract.pricing import answer_cost
from relaykit.contract.schema import ChatCompletion, ChatRequest, RelayInfo

__all__ = ["completed_event", "price_answer", "served"]


def served(ctx: CallContext, earlier: RelayInfo | None) -> RelayInfo:
    """How this call was served. ``earlier`` is what the answer already says (a cache hit's
    stored info): a cached answer (no attempt made) names the target that once gave it."""
    if ctx.attempt == 0:
        if earlier is not None and earlier.cached and earlier.attempts == 0:
            return earlier  # a cache hit's answer says so already
        return RelayInfo(earlier.target if earlier else ctx.target, 0, cached=True)
    return RelayInfo(ctx.target, ctx.attempt, ctx.route, continued_from=ctx.continued_from)


def price_answer(
    info: RelayInfo, ctx: CallContext, request: ChatRequest, answer: ChatCompletion
) -> None:
    """Record on ``info`` what ``answer`` cost at the answering target's price (``ctx.price``).

    A cached answer keeps its cost of 0.0; an answer from a target without a price, None.
    """
    if info.cached or ctx.price is None:
        return
    info.cost_usd, info.cost_estimated = answer_cost(ctx.price, request, answer)


def completed_event(
    ctx: CallContext, completion: ChatCompletion, info: RelayInfo, *, stream: bool
) -> Completed:
    """The ``Completed`` event of a call that ``info`` says was served with ``completion``."""
    return Completed(
        target=info.target,
        model=completion.model,
        attempts=ctx.attempt,
        latency_s=ctx.clock.now() - ctx.started,
        usage=completion.usage,
        cached=info.cached,
        stream=stream,
        tenant=ctx.options.tenant,
        relay=info,
    )
