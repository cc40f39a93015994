"""The wire schema: every parameter and field the seed documents list survives relaykit intact."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from relaykit.contract.schema import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    ChatRequest,
    DeveloperMessage,
    FunctionMessage,
    ImageURLPart,
    SystemMessage,
    TextPart,
    ToolMessage,
    UserMessage,
)
from relaykit.facade.request import validate_request

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a location",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "The city name"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["location"],
        },
        "strict": True,
    },
}

# Every request parameter the three seed documents name, with every role and content part.
FULL_REQUEST: dict[str, Any] = {
    "model": "gpt-4o",
    "messages": [
        {"role": "system", "content": "You are a helpful assistant.", "name": "sys"},
        {"role": "developer", "content": [{"type": "text", "text": "Answer in JSON."}]},
        {
            "role": "user",
            "name": "alice",
            "content": [
                {"type": "text", "text": "What's in this image?"},
                {
                    "type": "image_url",
                    "image_url": {"url": "https://example.com/image.jpg", "detail": "high"},
                },
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"location":"Tokyo"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 21}'},
        {"role": "function", "name": "get_weather", "content": '{"temp": 21}'},
        {"role": "user", "content": "Thanks"},
    ],
    "temperature": 0.7,
    "top_p": 0.9,
    "n": 2,
    "stream": True,
    "stream_options": {"include_usage": True},
    "stop": ["END", "STOP"],
    "max_tokens": 100,
    "max_completion_tokens": 200,
    "presence_penalty": -1.5,
    "frequency_penalty": 1.5,
    "logit_bias": {"50256": -100},
    "logprobs": True,
    "top_logprobs": 5,
    "seed": 42,
    "user": "end-user-7",
    "tools": [WEATHER_TOOL],
    "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    "parallel_tool_calls": False,
    "response_format": {
        "type": "json_schema",
        "json_schema": {
            "name": "weather",
            "description": "A weather report",
            "schema": {"type": "object", "properties": {"temp": {"type": "number"}}},
            "strict": True,
        },
    },
    "reasoning_effort": "high",
    "session_id": "sess-123",
}

# seeds/001 (Morpheus), its response example verbatim: every usage detail and logprobs.
MORPHEUS_RESPONSE: dict[str, Any] = {
    "id": "<string>",
    "object": "chat.completion",
    "created": 123,
    "model": "<string>",
    "choices": [
        {
            "index": 123,
            "message": {
                "role": "system",
                "content": "<string>",
                "name": "<string>",
                "tool_calls": [
                    {
                        "id": "<string>",
                        "type": "function",
                        "function": {"name": "<string>", "arguments": "<string>"},
                    }
                ],
                "tool_call_id": "<string>",
            },
            "finish_reason": "stop",
            "logprobs": {
                "content": [
                    {
                        "token": "<string>",
                        "logprob": 123,
                        "bytes": [123],
                        "top_logprobs": [{"token": "<string>", "logprob": 123, "bytes": [123]}],
                    }
                ]
            },
        }
    ],
    "usage": {
        "prompt_tokens": 123,
        "completion_tokens": 123,
        "total_tokens": 123,
        "prompt_tokens_details": {"cached_tokens": 123},
        "completion_tokens_details": {
            "reasoning_tokens": 123,
            "accepted_prediction_tokens": 123,
            "rejected_prediction_tokens": 123,
        },
        "cache_creation_input_tokens": 123,
        "cache_read_input_tokens": 123,
    },
    "system_fingerprint": "<string>",
}

# seeds/002 (VoidAI), its response example verbatim.
VOIDAI_RESPONSE: dict[str, Any] = {
    "id": "chatcmpl-abc123",
    "object": "chat.completion",
    "created": 1701691200,
    "model": "gpt-4",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "The capital of France is Paris."},
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 25, "completion_tokens": 8, "total_tokens": 33},
}


def without_nulls(value: Any) -> Any:
    """The JSON as ``model_dump(exclude_none=True)`` should give it back: null fields removed."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


def with_unknown_fields_everywhere(response: dict[str, Any]) -> dict[str, Any]:
    """The response with a provider-specific field (and a null one) at every object level."""
    data = copy.deepcopy(response)
    data["provider_meta"] = {"region": "eu", "latency_ms": 12}
    data["service_tier"] = None
    choice = data["choices"][0]
    choice["native_finish_reason"] = "end_turn"
    choice["logprobs"]["refusal"] = None
    message = choice["message"]
    message["reasoning_content"] = "Thinking about it."
    message["refusal"] = None
    message["annotations"] = [{"type": "url_citation", "url": "https://example.com"}]
    message["tool_calls"][0]["index_hint"] = 0
    message["tool_calls"][0]["function"]["thought"] = "weather first"
    entry = choice["logprobs"]["content"][0]
    entry["provider_rank"] = 1
    entry["top_logprobs"][0]["provider_rank"] = 2
    usage = data["usage"]
    usage["cost_usd"] = 0.0012
    usage["prompt_tokens_details"]["audio_tokens"] = None
    usage["prompt_tokens_details"]["image_tokens"] = 4
    usage["completion_tokens_details"]["audio_tokens"] = 0
    usage["completion_tokens_details"]["citation_tokens"] = 3
    return data


def test_request_with_every_seed_parameter_validates_and_body_round_trips() -> None:
    request = ChatRequest.model_validate(FULL_REQUEST)

    # The assistant's explicit ``"content": null`` is the one thing left out: set fields only.
    assert request.body() == without_nulls(FULL_REQUEST)
    assert json.loads(json.dumps(request.body())) == without_nulls(FULL_REQUEST)


def test_request_messages_parse_to_their_role_types() -> None:
    request = ChatRequest.model_validate(FULL_REQUEST)

    kinds = [type(message) for message in request.messages]
    assert kinds == [
        SystemMessage,
        DeveloperMessage,
        UserMessage,
        AssistantMessage,
        ToolMessage,
        FunctionMessage,
        UserMessage,
    ]
    user = request.messages[2]
    assert isinstance(user, UserMessage) and isinstance(user.content, list)
    text, image = user.content
    assert isinstance(text, TextPart) and text.text == "What's in this image?"
    assert isinstance(image, ImageURLPart) and image.image_url.detail == "high"
    assert request.response_format is not None and request.response_format.json_schema
    assert request.response_format.json_schema.schema_ == {
        "type": "object",
        "properties": {"temp": {"type": "number"}},
    }


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("tool_choice", "auto"),
        ("tool_choice", "none"),
        ("tool_choice", "required"),
        ("response_format", {"type": "json_object"}),
        ("response_format", {"type": "text"}),
        ("stop", "END"),
        ("reasoning_effort", "low"),
        ("reasoning_effort", "minimal"),
    ],
)
def test_request_alternative_parameter_shapes_round_trip(field: str, value: Any) -> None:
    data = {"messages": [{"role": "user", "content": "Hi"}], field: value}

    assert ChatRequest.model_validate(data).body() == data


def test_request_provider_extras_are_sent_verbatim() -> None:
    data = {
        "messages": [{"role": "user", "content": "Hi", "cache_control": {"type": "ephemeral"}}],
        "top_k": 40,
        "provider": {"order": ["a", "b"]},
    }

    assert ChatRequest.model_validate(data).body() == data


@pytest.mark.parametrize(
    "bad",
    [
        {"temperature": 5},
        {"top_logprobs": 21},
        {"reasoning_effort": "extreme"},
        {"messages": []},
        {"messages": [{"role": "robot", "content": "Hi"}]},
        {"messages": [{"role": "tool", "content": "x"}]},  # tool message without tool_call_id
        {"tool_choice": "sometimes"},
        {"response_format": {"type": "yaml"}},
        {"messages": [{"role": "user", "content": [{"type": "video", "video": {}}]}]},
    ],
)
def test_request_outside_the_schema_is_rejected(bad: dict[str, Any]) -> None:
    data = {"messages": [{"role": "user", "content": "Hi"}], **bad}

    with pytest.raises(ValidationError):
        ChatRequest.model_validate(data)


def test_request_is_frozen_once_validated() -> None:
    request = ChatRequest.model_validate({"messages": [{"role": "user", "content": "Hi"}]})

    with pytest.raises(ValidationError):
        request.temperature = 1.0


@pytest.mark.parametrize("response", [MORPHEUS_RESPONSE, VOIDAI_RESPONSE], ids=["001", "002"])
def test_seed_response_examples_dump_back_to_the_same_json(response: dict[str, Any]) -> None:
    completion = ChatCompletion.model_validate_json(json.dumps(response))

    assert completion.model_dump(exclude_none=True) == response


def test_response_with_every_field_and_unknown_ones_dumps_back_minus_nulls() -> None:
    data = with_unknown_fields_everywhere(MORPHEUS_RESPONSE)

    completion = ChatCompletion.model_validate_json(json.dumps(data))

    assert completion.model_dump(exclude_none=True) == without_nulls(data)
    usage = completion.usage
    assert usage is not None
    assert usage.prompt_tokens_details and usage.prompt_tokens_details.cached_tokens == 123
    assert usage.completion_tokens_details
    assert usage.completion_tokens_details.reasoning_tokens == 123
    assert usage.completion_tokens_details.accepted_prediction_tokens == 123
    assert usage.completion_tokens_details.rejected_prediction_tokens == 123
    assert usage.cache_creation_input_tokens == 123
    assert usage.cache_read_input_tokens == 123
    assert completion.system_fingerprint == "<string>"
    logprobs = completion.choices[0].logprobs
    assert logprobs and logprobs.content and logprobs.content[0].top_logprobs
    assert logprobs.content[0].top_logprobs[0].bytes == [123]
    assert completion.content == "<string>"


def test_chunk_with_unknown_fields_dumps_back_minus_nulls() -> None:
    data = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o",
        "system_fingerprint": "fp_1",
        "usage": None,
        "obfuscation": "xyz",
        "choices": [
            {
                "index": 0,
                "delta": {
                    "role": "assistant",
                    "content": "Hi",
                    "reasoning_content": "hm",
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "f", "arguments": ""},
                        }
                    ],
                },
                "logprobs": None,
                "finish_reason": None,
            }
        ],
    }

    chunk = ChatCompletionChunk.model_validate_json(json.dumps(data))

    assert chunk.model_dump(exclude_none=True) == without_nulls(data)


_keys = st.from_regex(r"x_[a-z]{1,8}", fullmatch=True)
_json_values = st.recursive(
    st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_keys, inner, max_size=3),
    max_leaves=8,
)
_extras = st.dictionaries(_keys, _json_values, max_size=3)


@settings(max_examples=60, deadline=None)
@given(
    top=_extras,
    choice=_extras,
    message=_extras,
    tool_call=_extras,
    usage=_extras,
    details=_extras,
)
def test_unknown_provider_fields_survive_a_round_trip_at_every_level(
    top: dict[str, Any],
    choice: dict[str, Any],
    message: dict[str, Any],
    tool_call: dict[str, Any],
    usage: dict[str, Any],
    details: dict[str, Any],
) -> None:
    data = copy.deepcopy(MORPHEUS_RESPONSE)
    data.update(top)
    data["choices"][0].update(choice)
    data["choices"][0]["message"].update(message)
    data["choices"][0]["message"]["tool_calls"][0].update(tool_call)
    data["usage"].update(usage)
    data["usage"]["completion_tokens_details"].update(details)

    completion = ChatCompletion.model_validate_json(json.dumps(data))

    assert completion.model_dump(exclude_none=True) == data
    assert json.loads(completion.model_dump_json(exclude_none=True)) == data


def test_an_extra_field_named_like_the_body_memo_cannot_replace_the_body() -> None:
    messages = [{"role": "user", "content": "hi"}]
    request = validate_request({"messages": messages}, {"_wire": {"oops": 1}}, stream=False)
    assert request.body()["messages"] == messages
