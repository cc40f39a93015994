"""The LiteLLM backend for real: LiteLLM calls a FakeProvider as an OpenAI-compatible endpoint.

Every error is compared with what the HTTP backend makes of the very same answer, and every test
counts the requests the provider saw: one per call proves LiteLLM retried nothing on its own.
LiteLLM is imported once per test session, by the first backend constructed.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from relaykit import (
    AuthenticationError,
    BadResponseError,
    CallContext,
    ChatCompletion,
    ChatRequest,
    ContentFilterError,
    ContextWindowError,
    InvalidRequestError,
    ModelNotFoundError,
    OpenAICompatible,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeout,
    QuotaExceededError,
    RateLimitError,
    Relay,
    RelayError,
    Retry,
    StreamInterruptedError,
    SystemClock,
)
from relaykit.backends import LiteLLM
from relaykit.contract.pipeline import CallOptions, TimeBounds
from relaykit.testing import FakeClock, FakeProvider, Reply

SECRET = "sk-litellm-secret-0123456789abcdef"
TOOL_CALLS: list[dict[str, Any]] = [
    {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
    },
    {
        "id": "call_2",
        "type": "function",
        "function": {"name": "get_time", "arguments": '{"timezone":"Europe/Paris"}'},
    },
]

Factory = Callable[..., LiteLLM]


@pytest.fixture
async def litellm_backend() -> AsyncIterator[Factory]:
    """``litellm_backend(provider, **options)``: LiteLLM pointed at ``provider`` as model
    ``openai/m`` with key SECRET."""

    def make(provider: FakeProvider, **options: Any) -> LiteLLM:
        options.setdefault("model", "openai/m")
        options.setdefault("api_key", SECRET)
        return LiteLLM(api_base=provider.url, **options)

    yield make


def request(stream: bool = False, **fields: Any) -> ChatRequest:
    return ChatRequest.model_validate(
        {"messages": [{"role": "user", "content": "Hi"}], "stream": stream, **fields}
    )


def context(**fields: Any) -> CallContext:
    return CallContext(clock=SystemClock(), **fields)


async def ask(backend: LiteLLM | OpenAICompatible, stream: bool, **fields: Any) -> ChatCompletion:
    if stream:
        answer = await backend.astream(request(True, **fields), context())
        return await answer.completion()
    return await backend.acomplete(request(**fields), context())


def without_id(completion: ChatCompletion) -> dict[str, Any]:
    data = completion.model_dump(exclude_none=True)
    data.pop("id")
    return data


def assert_no_secret(error: BaseException) -> None:
    for text in (str(error), repr(error), repr(error.args), str(error.__cause__ or "")):
        assert SECRET not in text


# --- answers ---------------------------------------------------------------------------------


async def test_plain_answer_comes_back_with_usage_and_one_upstream_request(
    provider: FakeProvider, litellm_backend: Factory
) -> None:
    provider.script(Reply.ok("Paris.", usage={"prompt_tokens": 7, "completion_tokens": 2}))

    answer = await litellm_backend(provider).acomplete(request(), context())

    assert answer.content == "Paris."
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (7, 2)
    assert provider.request_count == 1
    sent = provider.requests[0]
    assert sent.body is not None
    assert sent.body["model"] == "m"  # LiteLLM's provider prefix is not sent
    assert sent.body["messages"] == [{"role": "user", "content": "Hi"}]
    assert sent.header("Authorization") == f"Bearer {SECRET}"


async def test_the_answer_is_the_one_the_http_backend_gets_for_the_same_reply(
    provider: FakeProvider, litellm_backend: Factory
) -> None:
    reply = Reply.ok("Bonjour", usage={"prompt_tokens": 3, "completion_tokens": 1})
    provider.script(reply, reply)
    direct = OpenAICompatible(provider.url, api_key=SECRET, model="m")

    through_litellm = await litellm_backend(provider).acomplete(request(), context())
    over_http = await direct.acomplete(request(), context())
    await direct.aclose()

    assert without_id(through_litellm) == without_id(over_http)


async def test_request_fields_and_extra_headers_reach_the_provider(
    provider: FakeProvider, litellm_backend: Factory
) -> None:
    backend = litellm_backend(provider)

    await backend.acomplete(
        request(seed=7, logprobs=True, top_logprobs=2, session_id="s-9"),
        context(options=CallOptions(extra_headers={"X-Request-Id": "req-1"})),
    )

    sent = provider.requests[0]
    assert sent.body is not None
    assert {k: sent.body[k] for k in ("seed", "logprobs", "top_logprobs", "session_id")} == {
        "seed": 7,
        "logprobs": True,
        "top_logprobs": 2,
        "session_id": "s-9",
    }
    assert sent.header("X-Request-Id") == "req-1"


async def test_streamed_answer_assembles_to_the_plain_one_and_reports_usage(
    provider: FakeProvider, litellm_backend: Factory
) -> None:
    reply = Reply.ok("Hello streaming world", chunk_size=4)
    provider.script(reply, reply)
    backend = litellm_backend(provider)

    plain = await backend.acomplete(request(), context())
    stream = await backend.astream(request(True, stream_options={"include_usage": True}), context())
    chunks = [chunk async for chunk in stream]
    streamed = stream.partial()

    assert streamed.content == plain.content == "Hello streaming world"
    assert len(chunks) > 3  # it really streamed
    assert streamed.usage is not None and plain.usage is not None
    assert streamed.usage.total_tokens == plain.usage.total_tokens > 0
    assert stream.ended_cleanly
    assert provider.request_count == 2
    assert provider.requests[1].body is not None and provider.requests[1].body["stream"] is True


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
async def test_tool_calls_come_back_whole(
    provider: FakeProvider, litellm_backend: Factory, stream: bool
) -> None:
    provider.script(Reply.ok(None, tool_calls=TOOL_CALLS))
    tools = [
        {"type": "function", "function": {"name": name, "parameters": {"type": "object"}}}
        for name in ("get_weather", "get_time")
    ]

    answer = await ask(litellm_backend(provider), stream, tools=tools)

    calls = answer.choices[0].message.tool_calls
    assert calls is not None
    assert [c.model_dump(exclude_none=True) for c in calls] == TOOL_CALLS
    assert answer.choices[0].finish_reason == "tool_calls"
    assert provider.requests[0].body is not None
    assert [t["function"]["name"] for t in provider.requests[0].body["tools"]] == [
        "get_weather",
        "get_time",
    ]


async def test_a_relay_reports_the_litellm_target_that_answered(
    provider: FakeProvider, litellm_backend: Factory
) -> None:
    relay = Relay(targets=[litellm_backend(provider, name="claude-via-litellm")])

    answer = await relay.acomplete(messages=[{"role": "user", "content": "Hi"}])

    assert answer.relay is not None
    assert (answer.relay.target, answer.relay.attempts) == ("claude-via-litellm", 1)


# --- errors: the same types as the HTTP backend, and no retries of LiteLLM's own ---------------

ERROR_REPLIES = {
    "rate_limited": (Reply.rate_limited(retry_after=7), RateLimitError),
    "rate_limited_ms": (Reply.error(429, "Slow down", retry_after_ms=1500), RateLimitError),
    "quota": (Reply.quota(), QuotaExceededError),
    "context_window": (Reply.context_length(), ContextWindowError),
    "content_filter": (Reply.content_filter(), ContentFilterError),
    "auth_401": (Reply.auth_error(), AuthenticationError),
    "auth_403": (Reply.error(403, "Project lacks access to the model"), AuthenticationError),
    "not_found": (
        Reply.error(404, "The model `m` does not exist", code="model_not_found"),
        ModelNotFoundError,
    ),
    "invalid_400": (
        Reply.invalid_request("temperature is too high", "temperature"),
        InvalidRequestError,
    ),
    "invalid_422": (Reply.error(422, "Unprocessable"), InvalidRequestError),
    "payment_402": (Reply.error(402, "Insufficient credits"), InvalidRequestError),
    "timeout_408": (Reply.error(408, "Request timed out upstream"), ProviderTimeout),
    "conflict_409": (Reply.error(409, "Conflict"), ProviderError),
    "server_500": (Reply.server_error(), ProviderError),
    "overloaded_503_no_retry": (
        Reply.error(503, "Overloaded", should_retry=False, retry_after_ms=2500),
        ProviderError,
    ),
    "html_502": (Reply.html_error(502), ProviderError),
    "dropped": (Reply.ok().drop_after(0), ProviderConnectionError),
    "truncated_body": (Reply.truncated_json(), BadResponseError),
}


def facts(error: RelayError) -> tuple[Any, ...]:
    """What a policy acts on: the type, the status, whether to retry, how long to wait."""
    return (type(error), error.status, error.retryable, error.retry_after, error.code or None)


@pytest.mark.parametrize("case", list(ERROR_REPLIES), ids=list(ERROR_REPLIES))
async def test_an_error_answer_maps_to_what_the_http_backend_makes_of_it(
    provider: FakeProvider, litellm_backend: Factory, case: str
) -> None:
    reply, expected = ERROR_REPLIES[case]
    provider.script(reply, reply)
    direct = OpenAICompatible(provider.url, api_key=SECRET, model="m", name="openai/m")

    with pytest.raises(RelayError) as through_litellm:
        await litellm_backend(provider).acomplete(request(), context())
    assert provider.request_count == 1  # LiteLLM did not retry
    with pytest.raises(RelayError) as over_http:
        await direct.acomplete(request(), context())
    await direct.aclose()

    assert type(through_litellm.value) is expected
    assert facts(through_litellm.value) == facts(over_http.value)
    if over_http.value.status is not None:  # an HTTP answer: the same words too
        assert str(through_litellm.value) == str(over_http.value)
    assert through_litellm.value.target == "openai/m"
    assert_no_secret(through_litellm.value)


async def test_an_error_sent_with_status_200_is_the_error_its_code_names(
    provider: FakeProvider, litellm_backend: Factory
) -> None:
    # LiteLLM keeps the status it read from the code but not the body, so only the HTTP
    # backend's error also carries the code "503".
    provider.script(
        Reply(kind="fixed", status=200, body=b'{"error": {"message": "Overloaded", "code": 503}}')
    )

    with pytest.raises(ProviderError) as caught:
        await litellm_backend(provider).acomplete(request(), context())

    assert (caught.value.status, caught.value.retryable) == (503, True)
    assert provider.request_count == 1


@pytest.mark.parametrize(
    "case", ["rate_limited", "quota", "context_window", "auth_401", "server_500", "html_502"]
)
async def test_an_error_before_the_first_chunk_raises_at_the_commit_point(
    provider: FakeProvider, litellm_backend: Factory, case: str
) -> None:
    reply, expected = ERROR_REPLIES[case]
    provider.script(reply)

    with pytest.raises(expected):
        await litellm_backend(provider).astream(request(True), context())

    assert provider.request_count == 1


async def test_a_stream_cut_after_text_raises_stream_interrupted_with_the_partial_answer(
    provider: FakeProvider, litellm_backend: Factory
) -> None:
    provider.script(Reply.ok("Hello streaming world", chunk_size=4).drop_after(3))
    stream = await litellm_backend(provider).astream(request(True), context())

    with pytest.raises(StreamInterruptedError) as caught:
        async for _ in stream:
            pass

    assert caught.value.partial.content == "Hello st"
    assert isinstance(caught.value.__cause__, ProviderConnectionError)
    assert provider.request_count == 1


async def test_a_stream_cut_after_its_role_only_chunk_is_an_ordinary_failure(
    provider: FakeProvider, litellm_backend: Factory
) -> None:
    # The commit point is the first chunk with content; LiteLLM's role-only chunk is not it.
    provider.script(Reply.ok("Hello", chunk_size=2).drop_after(1), Reply.ok("Hello again"))
    relay = Relay(
        targets=[litellm_backend(provider)], middleware=[Retry(attempts=2)], clock=FakeClock()
    )

    answer = await (await relay.astream(messages=[{"role": "user", "content": "Hi"}])).completion()

    assert answer.content == "Hello again"
    assert provider.request_count == 2


async def test_a_stream_of_malformed_events_is_a_bad_response(
    provider: FakeProvider, litellm_backend: Factory
) -> None:
    provider.script(Reply.malformed_sse())

    with pytest.raises(BadResponseError):
        await litellm_backend(provider).astream(request(True), context())

    assert provider.request_count == 1


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
async def test_a_provider_that_never_answers_is_a_timeout_of_the_backend(
    provider: FakeProvider, litellm_backend: Factory, stream: bool
) -> None:
    # real-time: LiteLLM's HTTP client waits 0.2 s on the real clock.
    provider.script(Reply.hang())

    with pytest.raises(ProviderTimeout, match=r"did not answer within 0\.2 s") as caught:
        await ask(litellm_backend(provider, timeout=0.2), stream)

    assert caught.value.retryable
    assert provider.request_count == 1


async def test_an_unreachable_provider_is_a_connection_error() -> None:
    backend = LiteLLM(model="openai/m", api_base="http://127.0.0.1:9/v1", api_key=SECRET)

    with pytest.raises(ProviderConnectionError) as caught:
        await backend.acomplete(request(), context())

    assert caught.value.retryable
    assert_no_secret(caught.value)


async def test_a_call_past_its_deadline_is_not_sent(
    provider: FakeProvider, litellm_backend: Factory
) -> None:
    clock = FakeClock()
    ctx = CallContext(clock=clock, bounds=TimeBounds(deadline=clock.now() - 1))

    with pytest.raises(ProviderTimeout, match="deadline had already passed"):
        await litellm_backend(provider).acomplete(request(), ctx)

    assert provider.request_count == 0


async def test_relaykit_retry_is_the_only_retry(
    provider: FakeProvider, litellm_backend: Factory
) -> None:
    provider.script(Reply.server_error(), Reply.rate_limited(), Reply.ok("third time"))
    relay = Relay(
        targets=[litellm_backend(provider)],
        middleware=[Retry(attempts=3)],
        clock=FakeClock(),
    )

    answer = await relay.acomplete(messages=[{"role": "user", "content": "Hi"}])

    assert answer.content == "third time"
    assert provider.request_count == 3
    assert answer.relay is not None and answer.relay.attempts == 3


async def test_litellm_never_answers_from_its_own_cache(
    provider: FakeProvider, litellm_backend: Factory
) -> None:
    import litellm

    backend = litellm_backend(provider)
    litellm.cache = litellm.Cache(type="local")
    try:
        await backend.acomplete(request(), context())
        await backend.acomplete(request(), context())
    finally:
        litellm.cache = None

    assert provider.request_count == 2


async def test_a_parameter_litellm_says_the_provider_lacks_is_refused_before_sending(
    provider: FakeProvider, litellm_backend: Factory
) -> None:
    backend = litellm_backend(provider, model="openai/gpt-4o-mini")

    with pytest.raises(InvalidRequestError, match="reasoning_effort") as caught:
        await backend.acomplete(request(reasoning_effort="low"), context())

    assert caught.value.retryable is False
    assert provider.request_count == 0


async def test_litellm_model_fallbacks_set_process_wide_refuse_the_call(
    provider: FakeProvider, litellm_backend: Factory
) -> None:
    import litellm

    backend = litellm_backend(provider)
    litellm.model_fallbacks = ["openai/other"]
    try:
        with pytest.raises(InvalidRequestError, match=r"litellm\.model_fallbacks"):
            await backend.acomplete(request(), context())
    finally:
        litellm.model_fallbacks = None

    assert provider.request_count == 0


# --- secrets ---------------------------------------------------------------------------------


async def test_an_echoed_api_key_is_masked_in_the_error(
    provider: FakeProvider, litellm_backend: Factory
) -> None:
    provider.script(Reply.error(401, f"Incorrect API key provided: {SECRET}."))

    with pytest.raises(AuthenticationError) as caught:
        await litellm_backend(provider).acomplete(request(), context())

    assert "Incorrect API key provided: **********" in str(caught.value)
    assert_no_secret(caught.value)


def test_repr_shows_no_credential(provider: FakeProvider) -> None:
    backend = LiteLLM(
        model="openai/m",
        api_key=SECRET,
        api_base="http://127.0.0.1:1/v1",
        aws_secret_access_key=SECRET,
    )

    assert SECRET not in repr(backend)
    assert "api_base='http://127.0.0.1:1/v1'" in repr(backend)


# --- construction ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "layer"),
    [
        ("num_retries", "Retry"),
        ("max_retries", "Retry"),
        ("fallbacks", "Fallback"),
        ("caching", "Cache"),
        ("context_window_fallback_dict", "context_window"),
    ],
)
def test_litellm_options_relaykit_owns_are_refused_with_the_layer_to_use(
    option: str, layer: str
) -> None:
    with pytest.raises(ValueError, match=rf"^{option} .*{layer}"):
        LiteLLM(model="openai/m", **{option: 3})


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"model": ""}, "model must be LiteLLM's model name"),
        ({"model": "no-such-provider/m"}, "names no provider LiteLLM knows"),
        ({"model": "openai/m", "timeout": 0}, "timeout must be a positive number"),
    ],
)
def test_bad_arguments_fail_at_construction(arguments: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LiteLLM(**arguments)


# --- config ----------------------------------------------------------------------------------


async def test_a_config_file_target_with_backend_litellm_answers(provider: FakeProvider) -> None:
    relay = Relay.from_config(
        {
            "targets": [
                {
                    "name": "via-litellm",
                    "backend": "litellm",
                    "model": "openai/m",
                    "base_url": provider.url,
                    "api_key": SECRET,
                    "options": {"drop_params": True},
                }
            ]
        }
    )
    provider.script(Reply.ok("configured"))

    answer = await relay.acomplete(messages=[{"role": "user", "content": "Hi"}])

    assert answer.content == "configured"
    assert answer.relay is not None and answer.relay.target == "via-litellm"
    assert provider.request_count == 1
    assert json.loads(provider.requests[0].raw)["model"] == "m"


@pytest.mark.parametrize(
    ("target", "path", "message"),
    [
        (
            {"backend": "litellm", "preset": "openai", "model": "openai/m"},
            "targets[0].preset",
            "not a setting of backend: litellm",
        ),
        ({"backend": "litellm"}, "targets[0].model", "required for backend: litellm"),
        (
            {"backend": "litellm", "model": "openai/m", "options": {"num_retries": 2}},
            "targets[0].options.num_retries",
            "Retry",
        ),
        ({"backend": "litellm", "model": "nowhere/m"}, "targets[0].model", "names no provider"),
        (
            {"base_url": "http://127.0.0.1:1/v1", "options": {"drop_params": True}},
            "targets[0].options",
            "only for backend: litellm",
        ),
    ],
)
def test_config_mistakes_for_litellm_targets_name_the_setting(
    target: dict[str, Any], path: str, message: str
) -> None:
    from relaykit import ConfigError

    with pytest.raises(ConfigError, match=message) as caught:
        Relay.from_config({"targets": [target]})

    assert caught.value.path == path


# --- price -----------------------------------------------------------------------------------


async def test_the_cost_map_prices_a_model_litellm_knows(
    provider: FakeProvider, litellm_backend: Factory
) -> None:
    import litellm

    usage = {"prompt_tokens": 1000, "completion_tokens": 200}
    provider.script(Reply.ok("hi", usage=usage), Reply.ok("hi", usage=usage))
    backend = litellm_backend(provider, model="openai/gpt-4o-mini")
    relay = Relay(targets=[backend])

    answer = await relay.acomplete(messages=[{"role": "user", "content": "Hi"}])
    own = await litellm.acompletion(
        model="openai/gpt-4o-mini",
        messages=[{"role": "user", "content": "Hi"}],
        api_base=provider.url,
        api_key=SECRET,
    )

    assert backend.price is not None and relay.targets[0].price == backend.price
    assert answer.relay is not None and answer.relay.cost_usd is not None
    assert answer.relay.cost_usd == pytest.approx(own._hidden_params["response_cost"])
    assert answer.relay.cost_usd == pytest.approx(1000 * 0.15e-6 + 200 * 0.6e-6)


def test_a_model_the_cost_map_does_not_list_has_no_price(provider: FakeProvider) -> None:
    assert LiteLLM(model="openai/m", api_base=provider.url).price is None
