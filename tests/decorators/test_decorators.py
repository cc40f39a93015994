"""@relay.prompt and @resilient: typed prompt functions, and resilience around SDK calls."""

from __future__ import annotations

import asyncio
import json
import types
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import openai
import pytest
from pydantic import BaseModel

from relaykit import (
    AllTargetsFailedError,
    BadResponseError,
    FunctionBackend,
    OpenAICompatible,
    ProviderTimeout,
    QuotaExceededError,
    RateLimitError,
    Relay,
    RelayError,
    RequestValidationError,
    Target,
)
from relaykit.backends.classify import classify_exception
from relaykit.decorators import resilient
from relaykit.middleware.cache import Cache
from relaykit.middleware.retry import Retry
from relaykit.testing import FakeClock, FakeProvider, Reply


class Sentiment(BaseModel):
    label: str
    confidence: float


def relay_for(*providers: FakeProvider, **options: Any) -> Relay:
    targets = [
        Target(OpenAICompatible(p.url, api_key="sk-test", model=f"m{i}"), name=f"t{i}")
        for i, p in enumerate(providers)
    ]
    return Relay(targets=targets, **options)


async def test_docstring_is_the_prompt_and_arguments_fill_it() -> None:
    async with FakeProvider() as provider:
        relay = relay_for(provider)

        @relay.prompt(temperature=0)
        async def summarize(text: str, words: int = 5) -> str:
            """Summarize in {words} words: {text}"""

        provider.script(Reply.ok("A short summary."))
        assert await summarize("a long story") == "A short summary."
        body = provider.requests[0].body
        assert body is not None
        prompt = "Summarize in 5 words: a long story"
        assert body["messages"] == [{"role": "user", "content": prompt}]
        assert body["temperature"] == 0
        await relay.aclose()


async def test_a_returned_string_is_the_prompt_and_system_is_sent_first() -> None:
    async with FakeProvider() as provider:
        relay = relay_for(provider)

        @relay.prompt(system="You are terse.")
        async def ask(city: str) -> str:
            return f"What is the capital of {city}?"

        await ask("France")
        body = provider.requests[0].body
        assert body is not None
        assert [m["role"] for m in body["messages"]] == ["system", "user"]
        assert body["messages"][1]["content"] == "What is the capital of France?"
        await relay.aclose()


async def test_pydantic_return_type_requests_json_schema_and_validates() -> None:
    async with FakeProvider() as provider:
        relay = relay_for(provider)

        @relay.prompt()
        async def classify(text: str) -> Sentiment:
            """Classify: {text}"""

        provider.script(Reply.ok('{"label": "positive", "confidence": 0.9}'))
        result = await classify("great!")
        assert result == Sentiment(label="positive", confidence=0.9)
        body = provider.requests[0].body
        assert body is not None
        assert body["response_format"]["type"] == "json_schema"
        assert body["response_format"]["json_schema"]["name"] == "Sentiment"
        assert "confidence" in body["response_format"]["json_schema"]["schema"]["properties"]
        await relay.aclose()


async def test_invalid_structured_answer_falls_back_to_the_next_target() -> None:
    async with FakeProvider() as first, FakeProvider() as second:
        relay = relay_for(first, second)

        @relay.prompt()
        async def classify(text: str) -> Sentiment:
            """Classify: {text}"""

        first.script(Reply.ok("positive, I think"))
        second.script(Reply.ok('{"label": "positive", "confidence": 0.8}'))
        assert (await classify("great!")).confidence == 0.8
        assert (first.request_count, second.request_count) == (1, 1)
        await relay.aclose()


async def test_invalid_structured_answer_is_retried_on_a_single_target() -> None:
    async with FakeProvider() as provider:
        relay = relay_for(provider, middleware=[Retry(attempts=2)], clock=FakeClock())

        @relay.prompt()
        async def classify(text: str) -> Sentiment:
            """Classify: {text}"""

        provider.script(Reply.ok("{}"), Reply.ok('{"label": "neutral", "confidence": 0.5}'))
        assert (await classify("meh")).label == "neutral"
        assert provider.request_count == 2
        await relay.aclose()


async def test_structured_answer_that_never_validates_raises_bad_response() -> None:
    async with FakeProvider() as provider:
        relay = relay_for(provider)

        @relay.prompt()
        async def classify(text: str) -> Sentiment:
            """Classify: {text}"""

        provider.script(Reply.ok('{"label": "x"}'))
        with pytest.raises(BadResponseError, match="not a valid Sentiment"):
            await classify("meh")
        await relay.aclose()


def test_prompt_works_on_sync_functions() -> None:
    with FakeProvider() as provider, relay_for(provider) as relay:

        @relay.prompt()
        def greet(name: str) -> str:
            """Say hello to {name}."""

        provider.script(Reply.ok("Hello, Ada!"))
        assert greet("Ada") == "Hello, Ada!"


def test_prompt_without_docstring_or_returned_string_says_how_to_fix_it() -> None:
    relay = Relay(targets=[OpenAICompatible("http://127.0.0.1:9/v1", model="m")])

    @relay.prompt()
    def nothing(name: str) -> str: ...

    with pytest.raises(TypeError, match="no docstring"):
        nothing("x")
    relay.close()


async def test_prompt_without_a_return_annotation_gives_the_answers_text() -> None:
    async with FakeProvider() as provider:
        relay = relay_for(provider)

        @relay.prompt()
        async def greet(name: str):  # type: ignore[no-untyped-def]
            """Say hello to {name}."""

        provider.script(Reply.ok("Hello, Ada!"))
        assert await greet("Ada") == "Hello, Ada!"
        body = provider.requests[0].body
        assert body is not None and "response_format" not in body
        await relay.aclose()


@pytest.mark.parametrize(
    "annotation", ["int", "dict[str, str]", "list[Sentiment]", "Sentiment | None", "None"]
)
def test_prompt_rejects_a_return_annotation_it_cannot_produce_at_decoration(
    annotation: str,
) -> None:
    relay = Relay(targets=[OpenAICompatible("http://127.0.0.1:9/v1", model="m")])

    def classify(text: str) -> str:
        """Classify: {text}"""

    classify.__annotations__["return"] = annotation  # a string, as under __future__ annotations
    with pytest.raises(TypeError) as caught:
        relay.prompt()(classify)
    message = str(caught.value)
    assert f"classify is annotated -> {annotation}," in message
    assert "-> str (or nothing)" in message and "-> a pydantic model" in message
    relay.close()


# A module that decorates a prompt function before the model it returns is defined.
_FORECASTS_MODULE = '''
from __future__ import annotations
from pydantic import BaseModel

@relay.prompt()
async def forecast(city: str) -> Forecast:
    """Forecast for {city}"""

class Forecast(BaseModel):
    summary: str
'''


async def test_prompt_returning_a_model_defined_further_down_the_module_works() -> None:
    async with FakeProvider() as provider:
        relay = relay_for(provider)
        module = types.ModuleType("forecasts")
        module.relay = relay  # type: ignore[attr-defined]
        exec(_FORECASTS_MODULE, module.__dict__)

        provider.script(Reply.ok('{"summary": "sunny"}'))
        assert await module.forecast("Oslo") == module.Forecast(summary="sunny")
        body = provider.requests[0].body
        assert body is not None
        assert body["response_format"]["json_schema"]["name"] == "Forecast"
        await relay.aclose()


async def test_prompt_return_model_that_is_never_defined_fails_before_the_function_runs() -> None:
    async with FakeProvider() as provider:
        relay = relay_for(provider)
        ran: list[str] = []

        class Place(BaseModel):  # local: the string annotation "Place" cannot see it
            name: str

        @relay.prompt()
        async def locate(text: str) -> Place:
            ran.append(text)
            return f"Where is {text}?"

        with pytest.raises(TypeError, match=r"locate's annotations cannot be resolved .*'Place'"):
            await locate("Oslo")
        assert ran == [] and provider.request_count == 0
        await relay.aclose()


def test_prompt_option_typo_fails_at_decoration_with_a_suggestion() -> None:
    relay = Relay(targets=[OpenAICompatible("http://127.0.0.1:9/v1", model="m")])

    with pytest.raises(RequestValidationError, match="did you mean 'temperature'") as caught:

        @relay.prompt(temprature=0)
        def summarize(text: str) -> str:
            """Summarize: {text}"""

    assert caught.value.field == "temprature"
    relay.close()


async def test_prompt_accepts_call_options_beside_request_arguments() -> None:
    async with FakeProvider() as provider:
        relay = relay_for(provider)

        @relay.prompt(max_tokens=5, tenant="acme", extra_body={"top_k": 3})
        async def greet(name: str) -> str:
            """Say hello to {name}."""

        await greet("Ada")
        body = provider.requests[0].body
        assert body is not None and (body["max_tokens"], body["top_k"]) == (5, 3)
        await relay.aclose()


def test_prompt_refuses_messages_as_an_option() -> None:
    relay = Relay(targets=[OpenAICompatible("http://127.0.0.1:9/v1", model="m")])

    with pytest.raises(TypeError, match="sets messages= itself"):
        relay.prompt(messages=[{"role": "user", "content": "hi"}])
    relay.close()


async def test_prompt_docstring_writes_literal_braces_doubled() -> None:
    async with FakeProvider() as provider:
        relay = relay_for(provider)

        @relay.prompt()
        async def classify(text: str) -> Sentiment:
            """Classify {text}. Answer like {{"label": "...", "confidence": 0.5}}"""

        provider.script(Reply.ok('{"label": "positive", "confidence": 0.9}'))
        await classify("great!")
        body = provider.requests[0].body
        assert body is not None
        sent = body["messages"][0]["content"]
        assert sent == 'Classify great!. Answer like {"label": "...", "confidence": 0.5}'
        await relay.aclose()


@pytest.mark.parametrize(
    ("docstring", "problem"),
    [
        ('Classify {text}. Answer like {"label": "..."}', 'uses {"label"}, which is not an arg'),
        ("Classify {0}", "has the positional field {0}"),
        ("Classify {}", "has the positional field {}"),
        ("Classify {text", "is not a valid template"),
    ],
)
async def test_prompt_docstring_mistake_is_a_type_error_saying_how_to_write_braces(
    docstring: str, problem: str
) -> None:
    async with FakeProvider() as provider:
        relay = relay_for(provider)

        async def classify(text: str) -> str:
            pass

        classify.__doc__ = docstring
        prompt_fn = relay.prompt()(classify)
        with pytest.raises(TypeError) as caught:
            await prompt_fn("great!")
        assert f"classify's docstring {problem}" in str(caught.value)
        assert "str.format template" in str(caught.value)
        assert "literal braces are written {{ and }}" in str(caught.value)
        assert provider.request_count == 0
        await relay.aclose()


# --- @resilient around a function that calls a model with the openai SDK -----------------------


async def test_resilient_retries_an_openai_sdk_call_and_returns_its_own_value() -> None:
    async with FakeProvider() as provider:
        client = openai.AsyncOpenAI(base_url=provider.url, api_key="sk-test", max_retries=0)
        provider.script(Reply.overloaded(), Reply.ok("recovered"))

        @resilient(retry=Retry(attempts=3, jitter=False, base_delay_s=0.01))
        async def ask(question: str, model: str = "gpt-4o") -> str:
            answer = await client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": question}]
            )
            return answer.choices[0].message.content or ""

        assert await ask("hi") == "recovered"
        assert provider.request_count == 2
        await client.close()


async def test_resilient_falls_back_to_the_next_model_on_quota() -> None:
    async with FakeProvider() as provider:
        client = openai.AsyncOpenAI(base_url=provider.url, api_key="sk-test", max_retries=0)
        provider.script(Reply.quota(), Reply.ok("from the cheaper model"))

        @resilient(retry=3, fallback_models=["gpt-4o-mini"])
        async def ask(question: str, model: str = "gpt-4o") -> str:
            answer = await client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": question}]
            )
            return answer.choices[0].message.content or ""

        assert await ask("hi") == "from the cheaper model"
        sent = [r.body["model"] for r in provider.requests if r.body]
        assert sent == ["gpt-4o", "gpt-4o-mini"]  # quota: no retry on the same model
        await client.close()


async def test_resilient_caches_by_arguments() -> None:
    calls: list[str] = []

    @resilient(cache=Cache(ttl_s=60))
    async def lookup(word: str) -> dict[str, str]:
        calls.append(word)
        return {"word": word, "meaning": f"meaning of {word}"}

    first = await lookup("relay")
    again = await lookup("relay")
    other = await lookup("kit")
    assert first == again == {"word": "relay", "meaning": "meaning of relay"}
    assert other["word"] == "kit"
    assert calls == ["relay", "kit"]


async def test_resilient_all_models_failing_raises_with_every_attempt() -> None:
    async def fail(model: str = "a") -> str:
        raise httpx.ConnectError("refused")

    wrapped = resilient(fallback_models=["b"])(fail)
    with pytest.raises(AllTargetsFailedError) as caught:
        await wrapped()
    assert [a.target for a in caught.value.attempts] == ["fail", "fail[b]"]


def test_resilient_works_on_sync_functions() -> None:
    attempts: list[str] = []

    @resilient(fallback_models=["backup"])
    def ask(model: str = "main") -> str:
        attempts.append(model)
        if model == "main":
            raise TimeoutError("slow")
        return f"answered by {model}"

    assert ask() == "answered by backup"
    assert attempts == ["main", "backup"]


def test_resilient_fallback_needs_a_model_parameter() -> None:
    with pytest.raises(TypeError, match="no 'model' parameter"):

        @resilient(fallback_models=["b"])
        async def ask(question: str) -> str:
            return question


def _openai_error(status: int, body: dict[str, Any], headers: dict[str, str]) -> Exception:
    request = httpx.Request("POST", "http://127.0.0.1/v1/chat/completions")
    response = httpx.Response(status, headers=headers, content=json.dumps(body), request=request)
    cls = {429: openai.RateLimitError, 500: openai.InternalServerError}[status]
    return cls("error", response=response, body=body["error"])


def test_classify_openai_sdk_exceptions() -> None:
    quota = _openai_error(429, {"error": {"code": "insufficient_quota", "message": "no"}}, {})
    limited = _openai_error(429, {"error": {"message": "slow down"}}, {"retry-after": "3"})
    assert isinstance(classify_exception(quota), QuotaExceededError)
    error = classify_exception(limited)
    assert isinstance(error, RateLimitError) and error.retry_after == 3.0
    timeout = openai.APITimeoutError(request=httpx.Request("POST", "http://127.0.0.1/"))
    assert isinstance(classify_exception(timeout), ProviderTimeout)


async def test_resilient_passes_the_fallback_model_through_model_arg_even_positionally() -> None:
    seen: list[str] = []

    @resilient(fallback_models=["small"], model_arg="engine")
    async def ask(question: str, engine: str = "large") -> str:
        seen.append(engine)
        if engine == "large":
            raise httpx.ConnectError("refused")
        return f"{question} via {engine}"

    assert await ask("hi", "large") == "hi via small"
    assert seen == ["large", "small"]


async def test_resilient_lets_the_functions_own_bugs_through_untouched() -> None:
    calls: list[str] = []

    @resilient(retry=3, fallback_models=["b"])
    async def ask(model: str = "a") -> str:
        calls.append(model)
        return {"no": "such key"}["answer"]

    with pytest.raises(KeyError, match="answer"):
        await ask()
    assert calls == ["a"]  # no retry, no fallback for a bug


def test_classify_httpx_status_errors() -> None:
    request = httpx.Request("POST", "http://127.0.0.1/")
    response = httpx.Response(503, request=request, text="upstream down")
    error = classify_exception(httpx.HTTPStatusError("bad", request=request, response=response))
    assert error.status == 503 and error.retryable


async def test_resilient_error_never_shows_the_api_key_the_provider_echoed() -> None:
    # Too short for the key-shaped safety net: it is found on the SDK's request and redacted.
    key = "sk-live-SECRET123"
    async with FakeProvider() as provider:
        client = openai.AsyncOpenAI(base_url=provider.url, api_key=key, max_retries=0)
        provider.default = Reply.error(401, f"Incorrect API key provided: {key}")

        @resilient(fallback_models=["gpt-4o-mini"])
        async def ask(question: str, model: str = "gpt-4o") -> str:
            answer = await client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": question}]
            )
            return answer.choices[0].message.content or ""

        with pytest.raises(AllTargetsFailedError) as caught:
            await ask("hi")
        await client.close()

    built: list[BaseException] = []  # every error relaykit wrote, down to the SDK's own
    for error in [caught.value, *(attempt.error for attempt in caught.value.attempts)]:
        cause: BaseException | None = error
        while isinstance(cause, RelayError):
            built.append(cause)
            cause = cause.__cause__
    assert len(built) == 3
    assert not [text for e in built for text in (str(e), repr(e)) if key in text]
    assert "Incorrect API key provided: **********" in str(caught.value)
    assert [r.header("Authorization") for r in provider.requests] == [f"Bearer {key}"] * 2


def _ask_defined_in(module: str, calls: list[str]) -> Callable[[str], Awaitable[str]]:
    """A function named ``ask`` as if defined in ``module``: the qualname is the same for all."""

    async def ask(question: str) -> str:
        calls.append(module)
        return f"{module} answers {question}"

    ask.__module__ = module
    return ask


async def test_resilient_functions_named_alike_in_two_modules_do_not_share_a_cache() -> None:
    calls: list[str] = []
    cache = Cache(ttl_s=60)
    billing = resilient(cache=cache)(_ask_defined_in("billing", calls))
    support = resilient(cache=cache)(_ask_defined_in("support", calls))

    assert await billing("hello") == "billing answers hello"
    assert await support("hello") == "support answers hello"
    assert await support("hello") == "support answers hello"
    assert calls == ["billing", "support"]  # the repeat is a hit, of support's own entry


async def test_resilient_reraises_the_functions_exception_with_its_own_cause() -> None:
    @resilient()
    async def broken() -> str:
        try:
            {}["missing"]
        except KeyError as exc:
            raise ValueError("bad state") from exc
        return "never"

    with pytest.raises(ValueError, match="bad state") as caught:
        await broken()
    assert isinstance(caught.value.__cause__, KeyError)


async def test_resilient_cache_followers_get_the_functions_exception_too() -> None:
    started = asyncio.Event()

    @resilient(cache=Cache())
    async def broken(question: str) -> str:
        started.set()
        await asyncio.sleep(0)
        raise ValueError(f"cannot answer {question}")

    results = await asyncio.gather(broken("q"), broken("q"), broken("q"), return_exceptions=True)
    assert [type(r) for r in results] == [ValueError, ValueError, ValueError]
    assert len({id(r) for r in results}) == 3  # nobody shares one exception object


async def test_a_cache_follower_gets_the_functions_own_exception_with_its_cause() -> None:
    class QuotaBug(Exception):
        def __init__(self, user: str, limit: int) -> None:
            super().__init__(f"{user} over {limit}")

    @resilient(cache=Cache())
    async def broken(question: str) -> str:
        await asyncio.sleep(0)
        try:
            raise KeyError("limit")
        except KeyError as exc:
            raise QuotaBug("ada", 3) from exc

    results = await asyncio.gather(broken("q"), broken("q"), return_exceptions=True)
    assert [type(r) for r in results] == [QuotaBug, QuotaBug]
    assert all(isinstance(r.__cause__, KeyError) for r in results)


async def test_resilient_moves_a_503_on_to_the_next_model_first_and_retries_only_the_chain() -> (
    None
):
    """What docs/middleware.md says of @resilient: fallback first, then Retry over the chain."""
    calls: list[str] = []
    clock = FakeClock()

    def overloaded() -> httpx.HTTPStatusError:
        request = httpx.Request("POST", "http://127.0.0.1/v1/chat/completions")
        response = httpx.Response(503, request=request, text="overloaded")
        return httpx.HTTPStatusError("503", request=request, response=response)

    @resilient(retry=Retry(attempts=3), fallback_models=["gpt-4o-mini"])
    async def ask(question: str, model: str = "gpt-4o") -> str:
        calls.append(model)
        if len(calls) <= 2:  # both models fail once
            raise overloaded()
        return f"{model} answered"

    ask.relay.clock = clock  # type: ignore[attr-defined]
    answer = await ask("hi")

    assert calls == ["gpt-4o", "gpt-4o-mini", "gpt-4o"]
    assert answer == "gpt-4o answered"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"retry": "3"}, "retry must be a Retry or a number of attempts, got '3'"),
        ({"timeout": "30"}, "timeout must be a Timeout or a number of seconds, got '30'"),
        ({"fallback_models": "gpt-4o-mini"}, "fallback_models must be a list of model names"),
        ({"cache": 5}, "cache must be a Cache"),
    ],
)
def test_resilient_refuses_options_of_the_wrong_kind_when_decorating(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError) as caught:

        @resilient(**options)
        async def ask(question: str, model: str = "a") -> str:
            return question

    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("option", "value"), [("tenant", 5), ("timeout", "x"), ("cache_ttl_s", "60")]
)
def test_prompt_refuses_call_options_of_the_wrong_kind_when_decorating(
    option: str, value: Any
) -> None:
    relay = Relay(targets=[FunctionBackend(lambda request: "hi", name="f")])

    with pytest.raises(RequestValidationError) as caught:

        @relay.prompt(**{option: value})
        async def greet(name: str) -> str:
            """Say hi to {name}"""

    assert caught.value.field == option
