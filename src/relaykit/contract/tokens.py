"""Cheap token estimates for a request, for budgets that must be checked before the call.

A rate limit on tokens per minute has to decide before the provider says how many tokens a
request used, so it needs a guess that costs microseconds, not a tokenizer. The rule is the
usual one for English and code: about four bytes of text per token. Counting UTF-8 bytes
rather than characters keeps scripts that tokenize densely (Chinese, Japanese, ...) from being
underestimated by a factor of three or four. The guess is reconciled with the provider's
``usage`` afterwards, so being off by 20 % costs a little budget for one call, never more.

>>> estimate_tokens(request)  # prompt estimate + max_completion_tokens (or max_tokens, or 256)
"""

from __future__ import annotations

import json
from typing import Any

from relaykit.contract.schema import (
    AssistantMessage,
    ChatCompletion,
    ChatRequest,
    ImageURLPart,
    InputAudioPart,
    TextPart,
    ToolMessage,
)

__all__ = [
    "DEFAULT_COMPLETION_TOKENS",
    "estimate_answer_tokens",
    "estimate_completion_tokens",
    "estimate_prompt_tokens",
    "estimate_tokens",
]

DEFAULT_COMPLETION_TOKENS = 256
"""Completion tokens assumed for a request that sets neither max_completion_tokens nor
max_tokens: a typical chat answer. Too low a guess only delays the correction to when the
usage comes back."""

_BYTES_PER_TOKEN = 4
# Role, name and separators OpenAI's chat format wraps around each message, and the priming of
# the reply (the cookbook's tokens_per_message = 3 and reply priming = 3).
_MESSAGE_OVERHEAD = 3
_REPLY_OVERHEAD = 3
# Tool definitions are rendered into a system prompt; a few tokens frame the block.
_TOOLS_OVERHEAD = 8
# An image costs OpenAI 85 tokens at low detail and up to ~765 for a 1024x1024 one at high or
# auto detail; the URL or base64 text says nothing useful about the size, so use the common case.
_IMAGE_TOKENS_LOW = 85
_IMAGE_TOKENS = 765
# Base64 audio: ~43 kB of text per second of 16 kHz speech, at roughly 10-50 tokens per second.
_AUDIO_BYTES_PER_TOKEN = 1000


def estimate_tokens(request: ChatRequest) -> int:
    """Tokens the request may use in all: its prompt estimate plus its completion budget."""
    return estimate_prompt_tokens(request) + estimate_completion_tokens(request)


def estimate_completion_tokens(
    request: ChatRequest, *, default: int = DEFAULT_COMPLETION_TOKENS
) -> int:
    """The completion budget: max_completion_tokens, else max_tokens, else ``default``; per
    choice, so ``n=3`` triples it."""
    limit = request.max_completion_tokens or request.max_tokens or default
    return limit * (request.n or 1)


def estimate_prompt_tokens(request: ChatRequest) -> int:
    """Prompt tokens, estimated at ~4 bytes of UTF-8 per token over every message's text (parts,
    names, tool calls), the tool definitions' JSON and a JSON response schema, plus a small
    per-message overhead. Never below 1; no tokenizer, a few microseconds for a typical chat."""
    size = 0
    extra_tokens = _REPLY_OVERHEAD + _MESSAGE_OVERHEAD * len(request.messages)
    for message in request.messages:
        content = message.content
        if isinstance(content, str):
            size += _size(content)
        elif content is not None:
            for part in content:
                if isinstance(part, TextPart):
                    size += _size(part.text)
                elif isinstance(part, ImageURLPart):
                    low = part.image_url.detail == "low"
                    extra_tokens += _IMAGE_TOKENS_LOW if low else _IMAGE_TOKENS
                elif isinstance(part, InputAudioPart):
                    data = part.input_audio.get("data")
                    if isinstance(data, str):
                        extra_tokens += len(data) // _AUDIO_BYTES_PER_TOKEN
        name = getattr(message, "name", None)
        if name:
            size += len(name)
        if isinstance(message, AssistantMessage):
            if message.refusal:
                size += _size(message.refusal)
            for call in message.tool_calls or ():
                size += _size(call.function.name) + _size(call.function.arguments)
            if message.function_call is not None:
                size += _size(message.function_call.name) + _size(message.function_call.arguments)
        elif isinstance(message, ToolMessage):
            size += len(message.tool_call_id)
    if request.tools or request.response_format is not None:
        # The wire body is computed once per request and reused by the backend that sends it.
        body = request.body()
        if request.tools:
            size += _json_size(body.get("tools"))
            extra_tokens += _TOOLS_OVERHEAD
        schema = body.get("response_format", {}).get("json_schema")
        if schema is not None:
            size += _json_size(schema)
    return max(1, extra_tokens + (size + _BYTES_PER_TOKEN - 1) // _BYTES_PER_TOKEN)


def estimate_answer_tokens(answer: ChatCompletion) -> int:
    """Completion tokens of an answer the provider sent no usage for, at ~4 bytes per token over
    every choice's text, refusal and tool calls; at least 1 per choice, since even an empty
    answer was generated."""
    tokens = 0
    for choice in answer.choices:
        message = choice.message
        size = _size(message.content or "") + _size(message.refusal or "")
        for call in message.tool_calls or ():
            size += _size(call.function.name) + _size(call.function.arguments)
        tokens += max(1, (size + _BYTES_PER_TOKEN - 1) // _BYTES_PER_TOKEN)
    return tokens


def _size(text: str) -> int:
    # str.isascii() is O(1) in CPython (a flag on the string), so ASCII text costs no encoding.
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _json_size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False)) if value else 0
