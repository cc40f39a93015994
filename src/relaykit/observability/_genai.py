"""The OpenTelemetry GenAI semantic conventions, as attributes of requests and answers.

Kept apart from the span bookkeeping in ``telemetry.py``: these are pure functions of
relaykit's types, and the only place that knows the conventions' attribute names and message
format (role and parts, media recorded by type only).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from relaykit.contract.schema import ChatCompletion, ChatRequest

__all__ = ["input_messages", "output_messages", "request_attributes", "response_attributes"]


def request_attributes(request: ChatRequest) -> dict[str, Any]:
    attributes: dict[str, Any] = {"gen_ai.operation.name": "chat"}
    if request.model is not None:
        attributes["gen_ai.request.model"] = request.model
    if request.temperature is not None:
        attributes["gen_ai.request.temperature"] = request.temperature
    if request.top_p is not None:
        attributes["gen_ai.request.top_p"] = request.top_p
    max_tokens = request.max_tokens or request.max_completion_tokens
    if max_tokens is not None:
        attributes["gen_ai.request.max_tokens"] = max_tokens
    if request.seed is not None:
        attributes["gen_ai.request.seed"] = request.seed
    if request.stop is not None:
        attributes["gen_ai.request.stop_sequences"] = (
            [request.stop] if isinstance(request.stop, str) else list(request.stop)
        )
    if request.frequency_penalty is not None:
        attributes["gen_ai.request.frequency_penalty"] = request.frequency_penalty
    if request.presence_penalty is not None:
        attributes["gen_ai.request.presence_penalty"] = request.presence_penalty
    if request.n is not None and request.n != 1:
        attributes["gen_ai.request.choice.count"] = request.n
    attributes["relaykit.stream"] = bool(request.stream)
    return attributes


def response_attributes(completion: ChatCompletion) -> dict[str, Any]:
    attributes: dict[str, Any] = {"gen_ai.response.id": completion.id}
    if completion.model is not None:
        attributes["gen_ai.response.model"] = completion.model
    reasons = [choice.finish_reason for choice in completion.choices if choice.finish_reason]
    if reasons:
        attributes["gen_ai.response.finish_reasons"] = reasons
    usage = completion.usage
    if usage is not None:
        attributes["gen_ai.usage.input_tokens"] = usage.prompt_tokens
        attributes["gen_ai.usage.output_tokens"] = usage.completion_tokens
    return attributes


def input_messages(request: ChatRequest) -> str:
    """The request's messages as the GenAI conventions' JSON (role + parts)."""
    messages = []
    for message in request.messages:
        dumped = message.model_dump(mode="json", exclude_none=True)
        parts: list[dict[str, Any]] = []
        content = dumped.get("content")
        if isinstance(content, str):
            parts.append({"type": "text", "content": content})
        elif isinstance(content, list):
            for part in content:
                if part.get("type") == "text":
                    parts.append({"type": "text", "content": part.get("text", "")})
                else:
                    parts.append({"type": part.get("type", "unknown")})  # media is not recorded
        parts.extend(_tool_call_parts(dumped.get("tool_calls")))
        if dumped.get("role") == "tool":
            parts = [
                {
                    "type": "tool_call_response",
                    "id": dumped.get("tool_call_id"),
                    "response": content,
                }
            ]
        messages.append({"role": dumped.get("role"), "parts": parts})
    return json.dumps(messages, ensure_ascii=False)


def output_messages(completion: ChatCompletion) -> str:
    """The answer's choices as the GenAI conventions' JSON (role + parts + finish reason)."""
    messages = []
    for choice in completion.choices:
        dumped = choice.message.model_dump(mode="json", exclude_none=True)
        parts: list[dict[str, Any]] = []
        if dumped.get("content") is not None:
            parts.append({"type": "text", "content": dumped["content"]})
        parts.extend(_tool_call_parts(dumped.get("tool_calls")))
        messages.append(
            {
                "role": dumped.get("role", "assistant"),
                "parts": parts,
                "finish_reason": choice.finish_reason or "",
            }
        )
    return json.dumps(messages, ensure_ascii=False)


def _tool_call_parts(tool_calls: Sequence[dict[str, Any]] | None) -> list[dict[str, Any]]:
    return [
        {
            "type": "tool_call",
            "id": call.get("id"),
            "name": call.get("function", {}).get("name"),
            "arguments": call.get("function", {}).get("arguments"),
        }
        for call in tool_calls or ()
    ]
