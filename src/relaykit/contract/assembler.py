"""Turn a stream of chunks into the ChatCompletion the non-streamed call would have returned.

One assembler serves every place that needs a whole answer from a stream: ``stream.completion()``,
the partial output carried by a broken-stream error, the cache storing a streamed answer, and
usage accounting after a stream ends.
"""

from __future__ import annotations

from typing import Any

from relaykit.contract.schema import ChatCompletion, ChatCompletionChunk, ChunkChoice

__all__ = ["StreamAssembler", "chunks_from_completion"]

# Chunk fields that describe the stream, not the answer: never part of the completion.
# (OpenAI pads chunks with a random "obfuscation" string against side-channel attacks.)
_STREAM_ONLY = frozenset({"choices", "usage", "obfuscation"})
# Top-level fields a server may leave out of the first chunk and send later.
_LATE_FIELDS = ("model", "created", "system_fingerprint", "service_tier")
# Delta fields that are not text: they replace, never concatenate.
_NON_TEXT_DELTA_FIELDS = frozenset({"role", "tool_calls", "function_call"})


class _ChoiceState:
    __slots__ = (
        "choice_extras",
        "extras",
        "finish_reason",
        "function_call",
        "index",
        "logprobs",
        "role",
        "text",
        "tool_calls",
    )

    def __init__(self, index: int) -> None:
        self.index = index
        self.role: str | None = None
        # Text-valued delta fields (content, refusal, reasoning_content, ...) by name, in order.
        self.text: dict[str, list[str]] = {}
        self.extras: dict[str, Any] = {}  # the message's
        self.choice_extras: dict[str, Any] = {}  # the choice's (vLLM's stop_reason, ...)
        self.tool_calls: dict[int, dict[str, Any]] = {}
        self.function_call: dict[str, str] | None = None
        self.finish_reason: str | None = None
        self.logprobs: dict[str, list[Any]] = {}

    def add(self, choice: ChunkChoice) -> None:
        delta = choice.delta
        if delta.role is not None:
            self.role = delta.role
        for name, value in delta:  # declared fields and provider extras alike
            if value is None or name in _NON_TEXT_DELTA_FIELDS:
                continue
            if isinstance(value, str):
                self.text.setdefault(name, []).append(value)
            else:
                self.extras[name] = value
        calls = delta.tool_calls or ()
        for position, call in enumerate(calls):
            if call.index is not None:
                index = call.index
            elif len(calls) > 1:  # several calls in one delta: their order is their index
                index = position
            else:
                index = self._unindexed(call.id or None)
            state = self.tool_calls.setdefault(
                index, {"id": None, "type": "function", "name": "", "arguments": []}
            )
            if call.id:
                state["id"] = call.id
            if call.type is not None:
                state["type"] = call.type
            if call.function is not None:
                if call.function.name:
                    state["name"] += call.function.name
                if call.function.arguments:
                    state["arguments"].append(call.function.arguments)
        if delta.function_call is not None:
            fc = self.function_call or {"name": "", "arguments": ""}
            fc["name"] += delta.function_call.name or ""
            fc["arguments"] += delta.function_call.arguments or ""
            self.function_call = fc
        if choice.finish_reason is not None:
            self.finish_reason = choice.finish_reason
        if choice.__pydantic_extra__:
            self.choice_extras.update(
                (k, v) for k, v in choice.__pydantic_extra__.items() if v is not None
            )
        if choice.logprobs is not None:
            for kind in ("content", "refusal"):
                entries = getattr(choice.logprobs, kind)
                if entries:
                    self.logprobs.setdefault(kind, []).extend(
                        e.model_dump(exclude_none=True) for e in entries
                    )

    def _unindexed(self, call_id: str | None) -> int:
        """Where a tool-call delta without ``index`` belongs (some servers leave it out).

        A new id starts a new call; a delta without an id continues the latest call.
        """
        for index, state in self.tool_calls.items():
            if call_id is not None and state["id"] == call_id:
                return index
        if call_id is not None or not self.tool_calls:
            return len(self.tool_calls)
        return max(self.tool_calls)

    def to_dict(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": self.role or "assistant"}
        for name, pieces in self.text.items():
            message[name] = "".join(pieces)
        if not message.get("content") and self.tool_calls:
            message["content"] = None  # the non-streamed answer to a tool call has null content
        message.setdefault("content", None)
        message.update(self.extras)
        if self.tool_calls:
            message["tool_calls"] = [
                {
                    "id": call["id"] or "",  # a server that never sent one still assembles
                    "type": call["type"],
                    "function": {"name": call["name"], "arguments": "".join(call["arguments"])},
                }
                for _, call in sorted(self.tool_calls.items())
            ]
        if self.function_call is not None:
            message["function_call"] = self.function_call
        choice: dict[str, Any] = {
            "index": self.index,
            "message": message,
            "finish_reason": self.finish_reason,
        }
        if self.logprobs:
            choice["logprobs"] = self.logprobs
        choice.update(self.choice_extras)
        return choice


class StreamAssembler:
    """Accumulates chunks; ``completion()`` can be called at any point (a partial answer)."""

    __slots__ = ("_choices", "_head", "_usage", "chunk_count")

    def __init__(self) -> None:
        self._head: dict[str, Any] | None = None
        self._choices: dict[int, _ChoiceState] = {}
        self._usage: dict[str, Any] | None = None
        self.chunk_count = 0

    def add(self, chunk: ChatCompletionChunk) -> None:
        self.chunk_count += 1
        if self._head is None:
            head = chunk.model_dump(exclude_none=True, exclude=set(_STREAM_ONLY))
            head["object"] = "chat.completion"
            self._head = head
        else:
            # Some servers send a field only on a later chunk (system_fingerprint with the
            # last one, a gateway's session_id): the first value of each is kept. The model is
            # the latest one named: a continued stream's later chunks come from the model that
            # finished the answer, whose usage the answer carries.
            head = self._head
            for name in _LATE_FIELDS:
                value = getattr(chunk, name)
                if value is not None and (name not in head or (name == "model" and value)):
                    head[name] = value
            for name, value in (chunk.__pydantic_extra__ or {}).items():
                if value is not None and name not in head and name not in _STREAM_ONLY:
                    head[name] = value
        for choice in chunk.choices:
            state = self._choices.get(choice.index)
            if state is None:
                state = self._choices[choice.index] = _ChoiceState(choice.index)
            state.add(choice)
        if chunk.usage is not None:
            self._usage = chunk.usage.model_dump(exclude_none=True)

    @property
    def finished(self) -> bool:
        """Whether every choice seen so far has a finish_reason (the answer is complete)."""
        return bool(self._choices) and all(
            c.finish_reason is not None for c in self._choices.values()
        )

    def text(self) -> str:
        """The first choice's content so far; cheap enough to call per chunk."""
        state = self._choices.get(0)
        return "".join(state.text.get("content", ())) if state else ""

    def completion(self) -> ChatCompletion:
        """The answer as a ChatCompletion, equal to what the non-streamed call returns."""
        data: dict[str, Any] = dict(self._head or {"id": "", "object": "chat.completion"})
        data["choices"] = [s.to_dict() for _, s in sorted(self._choices.items())]
        if self._usage is not None:
            data["usage"] = self._usage
        return ChatCompletion.model_validate(data)


def chunks_from_completion(
    completion: ChatCompletion, *, include_usage: bool = False
) -> list[ChatCompletionChunk]:
    """The chunks a provider would have streamed for ``completion``; assembling them gives it back.

    The usage chunk (with empty ``choices``) is sent only when ``include_usage`` asks for it, as
    OpenAI does for ``stream_options.include_usage``.

    Serves every place that must stream an answer it holds whole: a cache hit on a stream, or a
    function backend that returned a string.
    """
    head = completion.model_dump(exclude_none=True, exclude={"choices", "usage", "object"})
    head["object"] = "chat.completion.chunk"
    chunks: list[dict[str, Any]] = []
    for choice in completion.choices:
        message = choice.message.model_dump(exclude_none=True)
        tool_calls = message.pop("tool_calls", None)
        delta: dict[str, Any] = message
        if tool_calls:
            delta["tool_calls"] = [{"index": i, **call} for i, call in enumerate(tool_calls)]
        first: dict[str, Any] = {"index": choice.index, "delta": delta}
        if choice.logprobs is not None:
            first["logprobs"] = choice.logprobs.model_dump(exclude_none=True)
        chunks.append({**head, "choices": [first]})
        last = {"index": choice.index, "delta": {}, "finish_reason": choice.finish_reason}
        last.update(choice.__pydantic_extra__ or {})  # a choice's extras (vLLM's stop_reason)
        chunks.append({**head, "choices": [last]})
    if include_usage and completion.usage is not None:
        chunks.append(
            {**head, "choices": [], "usage": completion.usage.model_dump(exclude_none=True)}
        )
    return [ChatCompletionChunk.model_validate(chunk) for chunk in chunks]
