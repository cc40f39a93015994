"""What an answer cost: a target's ``Price`` and the one function that turns usage into dollars.

Every place that needs a cost uses ``answer_cost``: the Relay reporting ``answer.relay.cost_usd``
and ``Budget`` settling what a call really spent. When the provider reported no usage (a stream
without ``stream_options.include_usage``), the tokens are estimated from the request and the
answer's text (``relaykit.contract.tokens``), never taken as zero: a stream costs money whether or
not it said so.

>>> Target(backend, name="primary", price=Price(input_per_mtok=0.15, output_per_mtok=0.60))
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple, Protocol, runtime_checkable

from relaykit._support.checks import positive_number
from relaykit.contract.schema import ChatCompletion, ChatRequest, Usage
from relaykit.contract.tokens import estimate_answer_tokens, estimate_prompt_tokens

__all__ = ["Cost", "HasPrice", "Price", "answer_cost", "ceiling"]

_PER_MTOK = 1e-6


@dataclass(frozen=True, slots=True)
class Price:
    """What a target's tokens cost, in US dollars per million tokens.

    ``cached_input_per_mtok`` prices prompt tokens the provider served from its prompt cache
    (``usage.prompt_tokens_details.cached_tokens``, or Anthropic's ``cache_read_input_tokens``);
    when it is None they cost as much as other input. Reasoning tokens are output tokens, as
    providers bill them.
    """

    input_per_mtok: float
    output_per_mtok: float
    cached_input_per_mtok: float | None = None

    def __post_init__(self) -> None:
        for name in ("input_per_mtok", "output_per_mtok", "cached_input_per_mtok"):
            value = getattr(self, name)
            if value is not None or name != "cached_input_per_mtok":
                checked = positive_number(
                    name, value, unit="US dollars per million tokens", allow_zero=True
                )
                object.__setattr__(self, name, checked)

    @property
    def cached_rate(self) -> float:
        """Dollars per million cached prompt tokens (the input rate when none was given)."""
        cached = self.cached_input_per_mtok
        return self.input_per_mtok if cached is None else cached

    def cost_usd(self, usage: Usage) -> float:
        """What ``usage`` cost at this price."""
        cached = min(_cached_tokens(usage), usage.prompt_tokens)
        return (
            (usage.prompt_tokens - cached) * self.input_per_mtok
            + cached * self.cached_rate
            + usage.completion_tokens * self.output_per_mtok
        ) * _PER_MTOK

    def tokens_usd(self, prompt_tokens: int, completion_tokens: int) -> float:
        """What this many tokens cost, none of them cached (the worst case a budget reserves)."""
        return (
            prompt_tokens * self.input_per_mtok + completion_tokens * self.output_per_mtok
        ) * _PER_MTOK


@runtime_checkable
class HasPrice(Protocol):
    """A backend that knows its model's price (``LiteLLM``, from LiteLLM's model cost map).

    A ``Target`` without a ``price=`` of its own uses it.
    """

    price: Price | None


class Cost(NamedTuple):
    """An answer's cost, and whether it was ``estimated`` because the provider sent no usage."""

    usd: float
    estimated: bool


def answer_cost(price: Price, request: ChatRequest, answer: ChatCompletion) -> Cost:
    """What ``answer`` to ``request`` cost at ``price``.

    From ``answer.usage`` when the provider reported it; otherwise estimated: the prompt at ~4
    bytes per token and the answer's own text (content, tool calls, refusal) the same way.
    """
    usage = answer.usage
    if usage is not None and (usage.prompt_tokens or usage.completion_tokens):
        return Cost(price.cost_usd(usage), estimated=False)
    prompt = estimate_prompt_tokens(request)
    return Cost(price.tokens_usd(prompt, estimate_answer_tokens(answer)), estimated=True)


def ceiling(prices: Iterable[Price | None]) -> Price | None:
    """A price no answer from any of these targets can exceed: each rate at its highest.

    What a layer outside the targets reserves by, not knowing which target will answer. None
    when one of them has no price (nothing bounds what it costs), or there are none.
    """
    known = list(prices)
    if not known or any(price is None for price in known):
        return None
    priced = [price for price in known if price is not None]
    return Price(
        input_per_mtok=max(p.input_per_mtok for p in priced),
        output_per_mtok=max(p.output_per_mtok for p in priced),
        cached_input_per_mtok=max(p.cached_rate for p in priced),
    )


def _cached_tokens(usage: Usage) -> int:
    details = usage.prompt_tokens_details
    if details is not None and details.cached_tokens:
        return details.cached_tokens
    return usage.cache_read_input_tokens or 0
