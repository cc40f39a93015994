"""The HTTP backend's body shortcut sends exactly what the plain dict would have said."""

from __future__ import annotations

import json
from typing import Any

import pytest

from relaykit.backends._request_json import request_json
from relaykit.facade.request import validate_request

REQUESTS: list[dict[str, Any]] = [
    {"messages": [{"role": "user", "content": "héllo ✓"}]},
    {
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
        ],
        "temperature": 0.7,
        "stop": ["\n"],
        "stream_options": {"include_usage": True},
        "tools": [
            {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
        ],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": {"type": "object"}},
        },
    },
]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("arguments", REQUESTS)
@pytest.mark.parametrize("extra", [{}, {"top_k": 5, "temperature": 0.1}])
def test_body_equals_the_request_with_model_and_stream_set(
    arguments: dict[str, Any], stream: bool, extra: dict[str, Any]
) -> None:
    request = validate_request(dict(arguments), {"session_id": "s-1"}, stream=stream)

    sent = json.loads(request_json(request, "gpt-4o", stream=stream, extra=extra))

    expected = {**request.body(), "model": "gpt-4o", "stream": stream, **extra}
    if not stream:
        expected.pop("stream_options", None)  # OpenAI refuses it without stream
    assert sent == expected
