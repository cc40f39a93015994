"""Token estimates: cheap, monotonic in the request's size, and counting everything sent."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relaykit.contract.schema import ChatRequest
from relaykit.contract.tokens import (
    DEFAULT_COMPLETION_TOKENS,
    estimate_completion_tokens,
    estimate_prompt_tokens,
    estimate_tokens,
)

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city, in degrees Celsius.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "City name"}},
            "required": ["city"],
        },
    },
}


def request(*contents: Any, **options: Any) -> ChatRequest:
    return ChatRequest.model_validate(
        {"messages": [{"role": "user", "content": c} for c in contents], **options}
    )


def test_english_text_is_about_four_characters_per_token() -> None:
    text = "The quick brown fox jumps over the lazy dog. " * 100  # 4,500 characters

    estimate = estimate_prompt_tokens(request(text))

    assert 1000 <= estimate <= 1300


@given(st.text(max_size=300), st.text(min_size=1, max_size=300))
def test_a_longer_message_never_estimates_fewer_tokens(text: str, more: str) -> None:
    assert estimate_prompt_tokens(request(text + more)) >= estimate_prompt_tokens(request(text))


def test_each_message_adds_its_overhead() -> None:
    assert estimate_prompt_tokens(request("hi", "hi")) > estimate_prompt_tokens(request("hi"))


def test_tool_definitions_count() -> None:
    plain = estimate_prompt_tokens(request("hi"))

    with_tool = estimate_prompt_tokens(request("hi", tools=[WEATHER_TOOL]))

    assert with_tool - plain >= 40  # ~220 bytes of JSON


def test_a_json_schema_response_format_counts() -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}, "score": {}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "reply", "schema": schema}}

    assert estimate_prompt_tokens(request("hi", response_format=fmt)) > estimate_prompt_tokens(
        request("hi")
    )


def test_text_parts_images_and_tool_calls_count() -> None:
    parts = [
        {"type": "text", "text": "describe " * 40},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
    ]
    history = ChatRequest.model_validate(
        {
            "messages": [
                {"role": "user", "content": "weather?"},
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": "21 degrees"},
            ]
        }
    )

    assert estimate_prompt_tokens(request(parts)) >= 80 + 765
    assert estimate_prompt_tokens(history) > estimate_prompt_tokens(request("weather?")) + 10


def test_scripts_that_tokenize_densely_are_not_underestimated() -> None:
    chinese = "今天天气很好" * 50  # 300 characters, roughly 300 tokens in practice

    assert estimate_prompt_tokens(request(chinese)) >= 200


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, DEFAULT_COMPLETION_TOKENS),
        ({"max_tokens": 500}, 500),
        ({"max_completion_tokens": 300, "max_tokens": 500}, 300),
        ({"max_tokens": 100, "n": 3}, 300),
    ],
)
def test_completion_budget_comes_from_the_request(options: dict[str, Any], expected: int) -> None:
    assert estimate_completion_tokens(request("hi", **options)) == expected


def test_the_total_is_prompt_plus_completion() -> None:
    chat = request("hello there", max_tokens=50)

    assert estimate_tokens(chat) == estimate_prompt_tokens(chat) + 50
