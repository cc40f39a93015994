"""Regressions found in review: each test is a behaviour a user hit, kept from coming back."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from relaykit import (
    Cache,
    Fallback,
    FunctionBackend,
    LocalRateLimitError,
    ProviderError,
    RateLimit,
    Relay,
    Retry,
    StreamInterruptedError,
    Target,
    Timeout,
)
from relaykit.classify import classify_exception
from relaykit.decorators import resilient
from relaykit.testing import FakeClock
from relaykit.types import ChatRequest

HI = [{"role": "user", "content": "hi"}]


async def test_an_outer_rate_limit_keeps_its_bucket_after_a_timeout_under_retry() -> None:
    clock = FakeClock(auto_advance=True)
    calls = 0

    async def slow_then_fast(request: ChatRequest) -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            await clock.sleep(10)  # outlives the 5 s deadline; the bucket needs 60 s
        return "answered"

    relay = Relay(
        targets=[Target(FunctionBackend(slow_then_fast, name="fn"), name="A")],
        middleware=[Retry(attempts=3, budget=None), Timeout(total_s=5), RateLimit(rpm=1)],
        clock=clock,
    )
    with pytest.raises(LocalRateLimitError):
        await relay.acomplete(messages=HI)
    assert calls == 1  # the retry met the same relay-wide bucket, not target A's


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


def test_a_missing_file_in_the_callers_code_is_not_a_connection_error() -> None:
    assert classify_exception(FileNotFoundError("settings.json")) is None
    assert classify_exception(ConnectionRefusedError("refused")) is not None


def test_env_values_stay_text_in_headers_and_bodies_but_type_middleware_options(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ORG_ID", "1234567")
    monkeypatch.setenv("USER_TAG", "007")
    monkeypatch.setenv("RPM", "600")
    relay = Relay.from_config(
        {
            "targets": [
                {
                    "name": "a",
                    "base_url": "http://127.0.0.1:1/v1",
                    "headers": {"OpenAI-Organization": "${ORG_ID}"},
                    "extra_body": {"user_tag": "${USER_TAG}"},
                    "middleware": [{"rate_limit": {"rpm": "${RPM}"}}],
                }
            ]
        }
    )
    backend: Any = relay.targets[0].backend
    assert backend._json_headers["OpenAI-Organization"] == "1234567"
    assert backend.extra_body == {"user_tag": "007"}


async def test_a_continuation_that_breaks_too_names_the_target_that_broke() -> None:
    async def first(request: ChatRequest) -> Any:
        yield "one "
        raise ProviderError("dropped the connection")

    async def second(request: ChatRequest) -> Any:
        yield "two "
        raise ProviderError("dropped the connection as well")

    relay = Relay(
        targets=[
            Target(FunctionBackend(first), name="A"),
            Target(FunctionBackend(second), name="B"),
        ],
        strategy=Fallback(continue_streams=True),
    )
    stream = await relay.astream(messages=HI)
    with pytest.raises(StreamInterruptedError) as caught:
        await stream.completion()
    assert caught.value.target == "B"
    assert caught.value.partial.content == "one two "


def test_network_failures_from_http_libraries_stay_retryable_transport_errors() -> None:
    import socket

    import aiohttp

    from relaykit import ProviderConnectionError

    for exc in (
        aiohttp.ClientOSError(104, "Connection reset by peer"),
        socket.gaierror(-2, "Name or service not known"),
        OSError(101, "Network is unreachable"),
    ):
        error = classify_exception(exc)
        assert isinstance(error, ProviderConnectionError) and error.retryable, exc
    assert classify_exception(PermissionError("settings.json")) is None


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


def test_text_options_stay_text_in_config_files() -> None:
    relay = Relay.from_config(
        {
            "targets": [{"name": "a", "base_url": "http://127.0.0.1:1/v1"}],
            "middleware": [{"cache": {"namespace": "2024"}}],
        }
    )
    assert relay.middleware[0].namespace == "2024"  # type: ignore[attr-defined]


def test_several_unindexed_tool_calls_in_one_delta_stay_apart() -> None:
    from relaykit.assembler import StreamAssembler
    from relaykit.types import ChatCompletionChunk

    chunk = ChatCompletionChunk.model_validate(
        {
            "id": "c",
            "choices": [
                {
                    "index": 0,
                    "delta": {
                        "tool_calls": [
                            {"id": "", "function": {"name": "f", "arguments": "{}"}},
                            {"id": "", "function": {"name": "g", "arguments": "[]"}},
                        ]
                    },
                    "finish_reason": "tool_calls",
                }
            ],
        }
    )
    assembler = StreamAssembler()
    assembler.add(chunk)
    calls = assembler.completion().choices[0].message.tool_calls
    assert calls is not None and [c.function.name for c in calls] == ["f", "g"]


def test_an_extra_field_named_like_the_body_memo_cannot_replace_the_body() -> None:
    from relaykit._validation import validate_request

    request = validate_request({"messages": HI}, {"_wire": {"oops": 1}}, stream=False)
    assert request.body()["messages"] == HI
