"""What a call refuses before anything is sent: a closed Relay, a sync call that could never be
answered, call options and request arguments of the wrong kind, typos inside messages."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from relaykit import (
    Cache,
    ChatRequest,
    FunctionBackend,
    OpenAICompatible,
    ProviderTimeout,
    Relay,
    RelayClosedError,
    RequestValidationError,
    Retry,
)
from relaykit.contract.schema import UserMessage
from relaykit.testing import FakeClock, FakeProvider, Reply

HI = [{"role": "user", "content": "hi"}]


# --- a closed Relay -------------------------------------------------------------------------------


def test_a_relay_used_after_its_with_block_refuses_without_a_request() -> None:
    with FakeProvider() as provider:
        with Relay(targets=[OpenAICompatible(provider.url, model="m")]) as relay:
            relay.complete(messages=HI)
        with pytest.raises(RelayClosedError, match="this Relay is closed"):
            relay.complete(messages=HI)
        with pytest.raises(RelayClosedError):
            relay.stream(messages=HI)

    assert provider.request_count == 1


async def test_an_async_relay_used_after_aclose_refuses_without_a_request() -> None:
    async with FakeProvider() as provider:
        async with Relay(targets=[OpenAICompatible(provider.url, model="m")]) as relay:
            await relay.acomplete(messages=HI)
        with pytest.raises(RelayClosedError, match="nothing was sent"):
            await relay.acomplete(messages=HI)
        with pytest.raises(RelayClosedError):
            relay.astream(messages=HI)

    assert provider.request_count == 1


# --- the sync API on the provider's own loop ------------------------------------------------------


@pytest.mark.parametrize("method", ["complete", "stream"])
async def test_the_sync_api_on_the_loop_serving_the_provider_fails_at_once(method: str) -> None:
    async with FakeProvider() as provider:
        host = provider.url.split("//")[1].split("/")[0]
        relay = Relay(targets=[OpenAICompatible(provider.url, model="m", timeout=5)])
        started = time.monotonic()
        with pytest.raises(RuntimeError) as caught:
            getattr(relay, method)(messages=HI)
        elapsed = time.monotonic() - started
        await relay.aclose()

    assert elapsed < 1
    assert f"'await relay.a{method}(...)'" in str(caught.value)
    assert host in str(caught.value)
    assert provider.request_count == 0


async def test_the_sync_api_in_async_code_works_when_the_provider_runs_elsewhere() -> None:
    with (
        FakeProvider() as provider,  # its own loop thread
        Relay(targets=[OpenAICompatible(provider.url, model="m")]) as relay,
    ):
        answer = relay.complete(messages=HI)

    assert answer.content == "Hello from FakeProvider."


# --- call options ---------------------------------------------------------------------------------


@pytest.mark.parametrize("cached", [False, True], ids=["no cache", "with Cache"])
@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("tenant", 123),
        ("cache_ttl_s", "60"),
        ("cache_ttl_s", -1),
        ("cache_max_age_s", True),
        ("timeout", "5"),
        ("timeout", 0),
        ("extra_headers", {"X-Id": 1}),
        ("extra_headers", ["X-Id"]),
        ("extra_body", ["top_k", 5]),
        ("validate", "yes"),
        ("cache", "sometimes"),
    ],
)
async def test_a_call_option_of_the_wrong_kind_is_a_typed_error_naming_it(
    option: str, value: Any, cached: bool
) -> None:
    async with FakeProvider() as provider:
        relay = Relay(
            targets=[OpenAICompatible(provider.url, model="m")],
            middleware=[Cache()] if cached else [],
        )
        with pytest.raises(RequestValidationError) as caught:
            await relay.acomplete(messages=HI, **{option: value})
        with pytest.raises(RequestValidationError) as streamed:
            relay.astream(messages=HI, **{option: value})
        await relay.aclose()

    assert caught.value.field == option and streamed.value.field == option
    assert option in str(caught.value)
    assert provider.request_count == 0


async def test_a_call_timeout_bounds_the_whole_call_and_is_not_sent_upstream() -> None:
    clock = FakeClock(auto_advance=False)

    async def slow(request: ChatRequest) -> str:
        await clock.sleep(60)
        return "too late"

    relay = Relay(targets=[FunctionBackend(slow, name="slow")], clock=clock)
    task = asyncio.ensure_future(relay.acomplete(messages=HI, timeout=2))
    for _ in range(50):
        await asyncio.sleep(0)
    clock.advance(2)
    for _ in range(50):
        await asyncio.sleep(0)

    assert task.done()
    with pytest.raises(ProviderTimeout) as caught:
        task.result()
    assert "within the call's 2 s deadline. Pass a larger timeout=" in str(caught.value)


async def test_a_call_timeout_lets_an_answer_in_time_through() -> None:
    async with FakeProvider() as provider:
        relay = Relay(targets=[OpenAICompatible(provider.url, model="m")])
        answer = await relay.acomplete(messages=HI, timeout=30)
        streamed = await relay.astream(messages=HI, timeout=30).completion()
        await relay.aclose()

    assert answer.content == streamed.content == "Hello from FakeProvider."
    assert all("timeout" not in (r.body or {}) for r in provider.requests)


@pytest.mark.parametrize(
    ("name", "where"),
    [
        ("max_retries", "Retry(attempts=...)"),
        ("num_retries", "Retry(attempts=...)"),
        ("request_timeout", "timeout="),
        ("api_key", "OpenAICompatible(base_url, api_key=..."),
        ("headers", "extra_headers={...}"),
        ("fallbacks", "list the targets in order"),
    ],
)
async def test_options_relaykit_owns_point_where_they_belong_never_to_extra_body(
    name: str, where: str
) -> None:
    relay = Relay(targets=[FunctionBackend(lambda request: "hi", name="f")])

    with pytest.raises(RequestValidationError) as caught:
        await relay.acomplete(messages=HI, **{name: 3})

    assert caught.value.field == name
    assert where in str(caught.value)
    assert "extra_body" not in str(caught.value) and "did you mean" not in str(caught.value)


async def test_a_misspelled_call_option_is_suggested() -> None:
    relay = Relay(targets=[FunctionBackend(lambda request: "hi", name="f")])

    with pytest.raises(RequestValidationError, match="did you mean 'tenant'"):
        await relay.acomplete(messages=HI, tenat="acme")


# --- request arguments ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("temperature", "0.5"),
        ("top_p", "1"),
        ("max_tokens", "100"),
        ("max_tokens", 100.0),
        ("n", True),
        ("seed", "7"),
        ("logprobs", "true"),
        ("parallel_tool_calls", 1),
    ],
)
async def test_numbers_and_flags_given_as_text_are_refused_naming_the_field(
    argument: str, value: Any
) -> None:
    async with FakeProvider() as provider:
        relay = Relay(targets=[OpenAICompatible(provider.url, model="m")])
        with pytest.raises(RequestValidationError) as caught:
            await relay.acomplete(messages=HI, **{argument: value})
        await relay.aclose()

    assert caught.value.field == argument
    assert provider.request_count == 0


async def test_an_int_is_a_valid_float_argument() -> None:
    async with FakeProvider() as provider:
        relay = Relay(targets=[OpenAICompatible(provider.url, model="m")])
        await relay.acomplete(messages=HI, temperature=1, top_p=1)
        await relay.aclose()

    assert provider.requests[0].body is not None
    assert provider.requests[0].body["temperature"] == 1


@pytest.mark.parametrize(
    ("message", "field", "suggestion"),
    [
        (
            {"role": "user", "content": "hi", "nme": "bob"},
            "messages[0].nme",
            "did you mean 'name'?",
        ),
        ({"role": "user", "contnet": "hi"}, "messages[0].contnet", "did you mean 'content'?"),
        (
            {"role": "tool", "content": "1", "tool_call": "c1"},
            "messages[0].tool_call",
            "'tool_calls'",
        ),
    ],
)
async def test_a_typo_inside_a_message_is_refused_naming_it(
    message: dict[str, Any], field: str, suggestion: str
) -> None:
    async with FakeProvider() as provider:
        relay = Relay(targets=[OpenAICompatible(provider.url, model="m")])
        with pytest.raises(RequestValidationError) as caught:
            await relay.acomplete(messages=[message])
        await relay.aclose()

    assert caught.value.field == field
    assert field in str(caught.value) and suggestion in str(caught.value)
    assert "UserMessage(role='user'" in str(caught.value)  # the escape hatch is named
    assert provider.request_count == 0


async def test_every_message_field_of_the_provider_documents_goes_through_untouched() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    messages: list[Any] = [
        {"role": "system", "content": "be brief", "name": "rules"},
        {"role": "user", "content": "hi", "name": "bob"},
        {"role": "assistant", "content": "calling", "tool_calls": [call], "name": "bot"},
        {"role": "tool", "content": "42", "tool_call_id": "c1"},
        {"role": "assistant", "content": "so", "reasoning_content": "because", "prefix": True},
        UserMessage(role="user", content="and", my_gateway_field={"x": 1}),
    ]
    async with FakeProvider() as provider:
        relay = Relay(targets=[OpenAICompatible(provider.url, model="m")])
        await relay.acomplete(messages=messages)
        await relay.aclose()

    assert provider.requests[0].body is not None
    sent = provider.requests[0].body["messages"]
    assert sent[:5] == messages[:5]
    assert sent[5] == {"role": "user", "content": "and", "my_gateway_field": {"x": 1}}


async def test_an_answers_message_can_be_passed_back_as_it_is() -> None:
    async with FakeProvider() as provider:
        provider.script(Reply.ok("first", message_extra={"reasoning_content": "r"}))
        relay = Relay(targets=[OpenAICompatible(provider.url, model="m")])
        answer = await relay.acomplete(messages=HI)
        await relay.acomplete(messages=[*HI, answer.choices[0].message, *HI])
        await relay.aclose()

    assert provider.requests[1].body is not None
    assert provider.requests[1].body["messages"][1] == {
        "role": "assistant",
        "content": "first",
        "reasoning_content": "r",
    }


def test_retry_attempts_given_as_text_in_code_is_refused() -> None:
    with pytest.raises(ValueError, match="attempts must be a whole number"):
        Retry(attempts="3")  # type: ignore[arg-type]


async def test_a_typo_in_a_message_of_a_tuple_is_refused_too() -> None:
    relay = Relay(targets=[FunctionBackend(lambda request: "hi", name="f")])

    with pytest.raises(RequestValidationError) as caught:
        await relay.acomplete(messages=({"role": "user", "content": "hi", "nme": "bob"},))

    assert caught.value.field == "messages[0].nme"


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"messages": HI, "tools": [{"name": "f"}]}, "tools[0].function"),
        ({"messages": [{"content": "hi"}]}, "messages[0].role"),
        ({"messages": [{"role": "function", "content": "x"}]}, "messages[0].name"),
    ],
)
async def test_a_missing_field_is_named_even_where_its_name_is_also_a_tag(
    arguments: dict[str, Any], field: str
) -> None:
    relay = Relay(targets=[FunctionBackend(lambda request: "hi", name="f")])

    with pytest.raises(RequestValidationError) as caught:
        await relay.acomplete(**arguments)

    assert caught.value.field == field
    assert f"{field}: field required" in str(caught.value)


async def test_openais_other_arguments_are_accepted_and_sent() -> None:
    extra = {
        "store": True,
        "metadata": {"team": "search"},
        "service_tier": "flex",
        "verbosity": "low",
        "prompt_cache_key": "k1",
        "safety_identifier": "u-1",
        "modalities": ["text"],
        "prediction": {"type": "content", "content": "x"},
    }
    async with FakeProvider() as provider:
        relay = Relay(targets=[OpenAICompatible(provider.url, model="m")])
        await relay.acomplete(messages=HI, **extra)
        await relay.aclose()

    body = provider.requests[0].body
    assert body is not None
    assert {k: body[k] for k in extra} == extra


async def test_validate_on_a_stream_says_which_methods_take_it() -> None:
    relay = Relay(targets=[FunctionBackend(lambda request: "hi", name="f")])

    with pytest.raises(RequestValidationError) as caught:
        relay.astream(messages=HI, validate=lambda answer: None)

    assert caught.value.field == "validate"
    assert "acomplete() and complete() take it" in str(caught.value)
    assert "did you mean" not in str(caught.value)


def test_a_calls_headers_never_show_in_the_context_repr() -> None:
    from relaykit import CallContext, SystemClock
    from relaykit.contract.pipeline import CallOptions

    ctx = CallContext(
        SystemClock(), options=CallOptions(extra_headers={"x-api-key": "rk-live-7f3a9c1e5b2d4f60"})
    )

    assert "rk-live-7f3a9c1e5b2d4f60" not in repr(ctx)
