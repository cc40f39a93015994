"""answer.relay.cost_usd: what an answer cost at the answering target's price, streams included."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from relaykit import Cache, Group, OpenAICompatible, Price, Relay, Target
from relaykit.contract.pricing import ceiling
from relaykit.testing import FakeClock, FakeProvider, Reply

BackendFactory = Callable[..., OpenAICompatible]
HI = [{"role": "user", "content": "hi"}]
GPT_4O = Price(input_per_mtok=2.5, output_per_mtok=10.0, cached_input_per_mtok=1.25)
USAGE = {"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500}


def relay_over(*targets: Target, **options: Any) -> Relay:
    return Relay(targets=list(targets), clock=FakeClock(), **options)


async def test_an_answer_reports_its_cost_from_the_usage_at_the_target_price(
    provider: FakeProvider, backend: BackendFactory
) -> None:
    provider.script(Reply.ok("hi", usage=USAGE))
    relay = relay_over(Target(backend(provider), name="gpt-4o", price=GPT_4O))

    answer = await relay.acomplete(messages=HI)

    assert answer.relay is not None
    assert answer.relay.cost_usd == pytest.approx(1000 * 2.5e-6 + 500 * 10e-6)
    assert answer.relay.cost_estimated is False
    assert "cost_usd=0.0075" in repr(answer.relay)


async def test_cached_prompt_tokens_cost_the_cached_rate(
    provider: FakeProvider, backend: BackendFactory
) -> None:
    usage = {**USAGE, "prompt_tokens_details": {"cached_tokens": 800}}
    provider.script(Reply.ok("hi", usage=usage))
    relay = relay_over(Target(backend(provider), price=GPT_4O))

    answer = await relay.acomplete(messages=HI)

    assert answer.relay is not None
    assert answer.relay.cost_usd == pytest.approx(200 * 2.5e-6 + 800 * 1.25e-6 + 500 * 10e-6)


async def test_a_stream_with_a_usage_chunk_costs_what_the_plain_answer_costs(
    provider: FakeProvider, backend: BackendFactory
) -> None:
    provider.script(Reply.ok("hello there", usage=USAGE), Reply.ok("hello there", usage=USAGE))
    relay = relay_over(Target(backend(provider), price=GPT_4O))

    plain = await relay.acomplete(messages=HI)
    stream = relay.astream(messages=HI, stream_options={"include_usage": True})
    streamed = await stream.completion()

    assert plain.relay is not None and streamed.relay is not None
    assert streamed.relay is stream.relay
    assert streamed.relay.cost_usd == pytest.approx(plain.relay.cost_usd)
    assert streamed.relay.cost_estimated is False


async def test_a_stream_without_usage_is_priced_from_its_text_never_zero(
    provider: FakeProvider, backend: BackendFactory
) -> None:
    provider.script(Reply.ok("x" * 400))  # 400 bytes: ~100 completion tokens
    relay = relay_over(Target(backend(provider), price=GPT_4O))

    stream = relay.astream(messages=HI)
    async for _ in stream:
        assert stream.relay is not None and stream.relay.cost_usd is None  # not ended yet
    info = stream.relay

    assert info is not None and info.cost_estimated is True
    assert info.cost_usd is not None
    assert info.cost_usd >= 100 * 10e-6  # the answer's ~100 tokens at the output rate
    assert "(estimated)" in repr(info)


async def test_only_the_target_that_answered_is_billed(
    provider: FakeProvider, backend: BackendFactory
) -> None:
    async with FakeProvider() as second:
        provider.script(Reply.server_error())
        second.script(Reply.ok("hi", usage=USAGE))
        cheap = Price(input_per_mtok=0.15, output_per_mtok=0.6)
        relay = relay_over(
            Target(backend(provider), name="expensive", price=GPT_4O),
            Target(backend(second), name="cheap", price=cheap),
        )

        answer = await relay.acomplete(messages=HI)

    assert answer.relay is not None and answer.relay.target == "cheap"
    assert answer.relay.cost_usd == pytest.approx(1000 * 0.15e-6 + 500 * 0.6e-6)


async def test_a_cached_answer_costs_nothing(
    provider: FakeProvider, backend: BackendFactory
) -> None:
    provider.script(Reply.ok("hi", usage=USAGE))
    relay = relay_over(Target(backend(provider), price=GPT_4O), middleware=[Cache()])

    first = await relay.acomplete(messages=HI)
    again = await relay.acomplete(messages=HI)

    assert first.relay is not None and again.relay is not None
    assert first.relay.cost_usd == pytest.approx(0.0075)
    assert (again.relay.cached, again.relay.cost_usd) == (True, 0.0)
    assert provider.request_count == 1


async def test_an_answer_from_a_target_without_a_price_has_no_cost(
    provider: FakeProvider, backend: BackendFactory
) -> None:
    relay = relay_over(Target(backend(provider)))

    answer = await relay.acomplete(messages=HI)

    assert answer.relay is not None and answer.relay.cost_usd is None


async def test_a_price_from_a_config_file_prices_the_answers(provider: FakeProvider) -> None:
    provider.script(Reply.ok("hi", usage=USAGE))
    relay = Relay.from_config(
        {
            "targets": [
                {
                    "name": "priced",
                    "base_url": provider.url,
                    "model": "m",
                    "price": {"input_per_mtok": 2.5, "output_per_mtok": 10},
                }
            ]
        }
    )

    answer = await relay.acomplete(messages=HI)
    await relay.aclose()

    assert relay.targets[0].price == Price(input_per_mtok=2.5, output_per_mtok=10.0)
    assert answer.relay is not None and answer.relay.cost_usd == pytest.approx(0.0075)


@pytest.mark.parametrize(
    ("price", "path"),
    [
        ({"input_per_mtok": -1, "output_per_mtok": 1}, "targets[0].price.input_per_mtok"),
        ({"input_per_mtok": 1}, "targets[0].price.output_per_mtok"),
        ({"input_per_mtok": 1, "output_per_mtok": 1, "cached": 1}, "targets[0].price.cached"),
    ],
)
def test_a_bad_price_in_a_config_file_names_the_setting(price: dict[str, Any], path: str) -> None:
    from relaykit import ConfigError

    with pytest.raises(ConfigError) as caught:
        Relay.from_config(
            {"targets": [{"base_url": "http://127.0.0.1:1/v1", "model": "m", "price": price}]}
        )

    assert caught.value.path == path


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"input_per_mtok": -0.5, "output_per_mtok": 1}, "input_per_mtok must be >= 0"),
        ({"input_per_mtok": 1, "output_per_mtok": float("nan")}, "output_per_mtok must be"),
        (
            {"input_per_mtok": 1, "output_per_mtok": 1, "cached_input_per_mtok": "cheap"},
            "cached_input_per_mtok must be",
        ),
    ],
)
def test_a_bad_price_fails_at_construction_naming_the_field(
    arguments: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Price(**arguments)


def test_a_target_price_must_be_a_price(backend: BackendFactory, provider: FakeProvider) -> None:
    with pytest.raises(ValueError, match=r"price must be a relaykit\.Price"):
        Target(backend(provider), price={"input_per_mtok": 1})  # type: ignore[arg-type]


def test_a_group_costs_at_most_its_most_expensive_member(
    backend: BackendFactory, provider: FakeProvider
) -> None:
    from relaykit import Fallback

    cheap = Price(input_per_mtok=0.15, output_per_mtok=0.6)
    group = Group(
        "both",
        [
            Target(backend(provider), name="a", price=GPT_4O),
            Target(backend(provider), name="b", price=cheap),
        ],
        Fallback(),
    )

    assert group.price == Price(
        input_per_mtok=2.5, output_per_mtok=10.0, cached_input_per_mtok=1.25
    )
    assert ceiling([GPT_4O, None]) is None
