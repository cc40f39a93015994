"""The OpenAI chat-completions wire format as FakeProvider speaks it, both ways.

Reading: what a request body asks for. Writing: a ``Reply`` rendered as a JSON completion or
as the bytes of an SSE stream, faults such as truncation and odd framings included. These
are pure functions of their arguments, so the server only decides when bytes leave.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from relaykit.testing.replies import JSONObject, Reply, SSEStyle

CREATED = 1_700_000_000
SYSTEM_FINGERPRINT = "fp_fake"

_TRUNCATED_EVENT = b'data: {"id": "chatc'


@dataclass(frozen=True)
class Envelope:
    """The identity every completion or chunk of one response shares."""

    id: str
    model: str

    def head(self, object_type: str) -> JSONObject:
        return {
            "id": self.id,
            "object": object_type,
            "created": CREATED,
            "model": self.model,
            "system_fingerprint": SYSTEM_FINGERPRINT,
        }


def parse_object(raw: bytes) -> dict[str, Any] | None:
    try:
        parsed = json.loads(raw)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def include_usage(body: dict[str, Any] | None) -> bool:
    options = body.get("stream_options") if body else None
    return isinstance(options, dict) and options.get("include_usage") is True


def credential_echo(
    headers: dict[str, str], query: str, body: dict[str, Any] | None, style: str
) -> tuple[bytes, str]:
    """The body (and its content type) of an auth error repeating the request's headers, query
    parameters and top-level text fields of its body verbatim, in the echo ``style`` of
    ``Reply.echo_credentials``."""
    received = [f"{name}: {value}" for name, value in headers.items()]
    received += [f"{name}={value}" for name, value in parse_qsl(query, keep_blank_values=True)]
    received += [f'"{k}": {v}' for k, v in (body or {}).items() if isinstance(v, str)]
    message = "Invalid credentials. The request carried " + "; ".join(received)
    if style == "raw":
        return message.encode(), "text/plain; charset=utf-8"
    text = json.dumps(
        {"error": {"message": message, "type": "invalid_request_error", "code": "invalid_api_key"}}
    )
    return (text.replace("/", "\\/") if style == "php" else text).encode(), "application/json"


def last_user_text(body: dict[str, Any] | None) -> str:
    messages = body.get("messages") if body else None
    if not isinstance(messages, list):
        return ""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return _text_of(message.get("content"))
    return ""


def _text_of(content: Any) -> str:
    """The text of a message content, which may be a string or a list of typed parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def _finish_reason(reply: Reply) -> str:
    if reply.finish_reason is not None:
        return reply.finish_reason
    return "tool_calls" if reply.tool_calls else "stop"


def _usage(reply: Reply) -> JSONObject:
    if reply.usage is not None:
        return reply.usage
    completion_tokens = max(1, len((reply.content or "").split()))
    return {
        "prompt_tokens": 10,
        "completion_tokens": completion_tokens,
        "total_tokens": 10 + completion_tokens,
    }


def _completion(reply: Reply, envelope: Envelope) -> JSONObject:
    message: JSONObject = {"role": "assistant", "content": reply.content}
    if reply.tool_calls:
        message["tool_calls"] = list(reply.tool_calls)
    message.update(reply.message_extra)
    choice = {
        "index": 0,
        "message": message,
        "logprobs": reply.logprobs,
        "finish_reason": _finish_reason(reply),
    }
    return {
        **envelope.head("chat.completion"),
        "choices": [choice],
        "usage": _usage(reply),
        **reply.extra,
    }


def json_body(reply: Reply, envelope: Envelope) -> bytes:
    if reply.kind == "malformed_sse":
        return b"not json"
    body = json.dumps(_completion(reply, envelope)).encode()
    if reply.kind == "truncated_json":
        return body[: len(body) // 2]
    return body


def _content_pieces(reply: Reply) -> list[str]:
    """Split content the way models stream it: a word per chunk, leading space attached.

    The pieces always join back to the exact content, trailing whitespace included.
    """
    text = reply.content or ""
    if reply.chunk_size is not None:
        size = reply.chunk_size
        return [text[start : start + size] for start in range(0, len(text), size)]
    return re.findall(r"\s*\S+|\s+", text)


def _thirds(text: str) -> list[str]:
    """Split tool arguments in up to three pieces, so clients must concatenate partial JSON."""
    cuts = [0, len(text) // 3, 2 * len(text) // 3, len(text)]
    return [text[start:end] for start, end in itertools.pairwise(cuts) if start < end]


def _tool_call_deltas(tool_calls: Sequence[JSONObject]) -> list[JSONObject]:
    deltas: list[JSONObject] = []
    for index, call in enumerate(tool_calls):
        function = call.get("function", {})
        opening = {
            "index": index,
            "id": call.get("id"),
            "type": call.get("type", "function"),
            "function": {"name": function.get("name"), "arguments": ""},
        }
        deltas.append({"tool_calls": [opening]})
        deltas.extend(
            {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}
            for piece in _thirds(str(function.get("arguments", "")))
        )
    return deltas


def _deltas(reply: Reply) -> list[tuple[JSONObject, JSONObject | None]]:
    """Every (delta, logprobs) pair of a stream before the finishing chunk, in OpenAI's order.

    Non-string ``message_extra`` fields ride on the role chunk; string ones get a chunk each.
    The role chunk's content is null for a null-content reply so that assembling the stream
    reproduces the plain message exactly.
    """
    strings = {key: value for key, value in reply.message_extra.items() if isinstance(value, str)}
    others = {key: value for key, value in reply.message_extra.items() if key not in strings}
    role = {"role": "assistant", "content": None if reply.content is None else "", **others}
    deltas: list[tuple[JSONObject, JSONObject | None]] = [(role, None)]
    deltas.extend(({key: value}, None) for key, value in strings.items())
    deltas.extend(
        ({"content": piece}, reply.logprobs if index == 0 else None)
        for index, piece in enumerate(_content_pieces(reply))
    )
    deltas.extend((delta, None) for delta in _tool_call_deltas(reply.tool_calls))
    return deltas


def _stream_payloads(reply: Reply, envelope: Envelope, include_usage: bool) -> list[str]:
    """The ``data:`` payloads of a stream, ``[DONE]`` included."""
    head = envelope.head("chat.completion.chunk")
    if include_usage:
        head["usage"] = None  # OpenAI's other chunks carry a null usage when usage is requested

    def chunk(delta: JSONObject, logprobs: JSONObject | None, finish: str | None) -> JSONObject:
        choice = {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
        return {**head, "choices": [choice], **reply.extra}

    chunks = [chunk(delta, logprobs, None) for delta, logprobs in _deltas(reply)]
    # Logprobs ride on the first content chunk; with no content they must still arrive somewhere.
    final_logprobs = None if _content_pieces(reply) else reply.logprobs
    chunks.append(chunk({}, final_logprobs, _finish_reason(reply)))
    if include_usage:
        chunks.append({**head, "choices": [], **reply.extra, "usage": _usage(reply)})
    return [json.dumps(item) for item in chunks] + ["[DONE]"]


def _event(data: str, style: SSEStyle, number: int) -> bytes:
    """Frame one SSE event in the reply's style."""
    if style == "crlf":
        return f"data: {data}\r\n\r\n".encode()
    if style == "comments":
        return f": keep-alive\n\nevent: message\nid: {number}\ndata: {data}\n\n".encode()
    return f"data: {data}\n\n".encode()


def stream_events(reply: Reply, envelope: Envelope, include_usage: bool) -> list[bytes]:
    payloads = _stream_payloads(reply, envelope, include_usage)
    if reply.kind == "malformed_sse":
        payloads.insert(0, "not json")
    if reply.error_at is not None:
        payloads = [*payloads[: reply.error_at], json.dumps(reply.error_event)]
    if reply.malformed_at is not None:
        payloads.insert(reply.malformed_at, '{"id": "chatcmpl-fake", "choices": [{"delta": {')
    events = [_event(data, reply.sse_style, number) for number, data in enumerate(payloads, 1)]
    if reply.kind == "truncated_json":
        return [*events[:1], _TRUNCATED_EVENT]
    return events


def _slices(event: bytes) -> list[bytes]:
    """Cut an event mid-payload and between its last two line-end bytes.

    Those are the boundaries SSE parsers most often get wrong: a JSON document split across
    reads, and a blank line (or a CRLF) whose halves arrive separately.
    """
    middle = len(event) // 2
    return [part for part in (event[:middle], event[middle:-1], event[-1:]) if part]


def group_writes(events: list[bytes], style: SSEStyle) -> list[list[bytes]]:
    """The writes for each event, in order: one each, sliced, or all events in a single write."""
    if style == "coalesced":
        return [[b"".join(events)]]
    if style == "split":
        return [_slices(event) for event in events]
    return [[event] for event in events]
