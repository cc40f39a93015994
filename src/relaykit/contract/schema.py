"""The OpenAI chat-completions wire schema as pydantic v2 models.

Every model allows extra fields, so whatever a provider adds (``reasoning_content``, a gateway's
``session_id``, a new usage counter) survives a round trip untouched. Optional fields default to
``None`` so that ``model_dump(exclude_none=True)`` of a parsed response gives back the provider's
JSON apart from its null fields: nothing relaykit adds shows up as if the provider had sent it.
"""

# No ``from __future__ import annotations`` here: pydantic would then evaluate every field's
# annotation from its text at import, the larger part of what defining these models costs.
import copy
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field

from relaykit._support.canonical import request_identity
from relaykit.contract.errors import RouteStep

__all__ = [
    "AssistantMessage",
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatRequest",
    "Choice",
    "ChunkChoice",
    "CompletionMessage",
    "CompletionTokensDetails",
    "ContentPart",
    "Delta",
    "DeveloperMessage",
    "FunctionCall",
    "FunctionCallDelta",
    "FunctionDefinition",
    "FunctionMessage",
    "ImageURL",
    "ImageURLPart",
    "InputAudioPart",
    "JSONSchemaFormat",
    "Logprobs",
    "Message",
    "PromptTokensDetails",
    "RelayInfo",
    "ResponseFormat",
    "StreamOptions",
    "SystemMessage",
    "TextPart",
    "TokenLogprob",
    "Tool",
    "ToolCall",
    "ToolCallDelta",
    "ToolChoice",
    "ToolMessage",
    "TopLogprob",
    "Usage",
    "UserMessage",
]


class _Wire(BaseModel):
    """Base of every wire model: unknown fields are kept, never dropped or rejected.

    Each model's validator is built when first used (the first request or answer), not when
    relaykit is imported: a program pays only for the models it touches.
    """

    model_config = ConfigDict(extra="allow", defer_build=True)


# --- request: messages and content parts -------------------------------------------------------


class TextPart(_Wire):
    type: Literal["text"]
    text: str


class ImageURL(_Wire):
    url: str
    detail: Literal["auto", "low", "high"] | None = None


class ImageURLPart(_Wire):
    type: Literal["image_url"]
    image_url: ImageURL


class InputAudioPart(_Wire):
    type: Literal["input_audio"]
    input_audio: dict[str, Any]


ContentPart = Annotated[TextPart | ImageURLPart | InputAudioPart, Field(discriminator="type")]


class FunctionCall(_Wire):
    name: str
    arguments: str


class ToolCall(_Wire):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class SystemMessage(_Wire):
    role: Literal["system"]
    content: str | list[TextPart]
    name: str | None = None


class DeveloperMessage(_Wire):
    role: Literal["developer"]
    content: str | list[TextPart]
    name: str | None = None


class UserMessage(_Wire):
    role: Literal["user"]
    content: str | list[ContentPart]
    name: str | None = None


class AssistantMessage(_Wire):
    role: Literal["assistant"]
    content: str | list[TextPart] | None = None
    name: str | None = None
    refusal: str | None = None
    tool_calls: list[ToolCall] | None = None
    function_call: FunctionCall | None = None


class ToolMessage(_Wire):
    role: Literal["tool"]
    content: str | list[TextPart]
    tool_call_id: str


class FunctionMessage(_Wire):
    role: Literal["function"]
    content: str | None
    name: str


Message = Annotated[
    SystemMessage
    | DeveloperMessage
    | UserMessage
    | AssistantMessage
    | ToolMessage
    | FunctionMessage,
    Field(discriminator="role"),
]

# --- request: tools, formats, options ----------------------------------------------------------


class FunctionDefinition(_Wire):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(_Wire):
    type: Literal["function"] = "function"
    function: FunctionDefinition


class _NamedFunction(_Wire):
    name: str


class NamedToolChoice(_Wire):
    type: Literal["function"] = "function"
    function: _NamedFunction


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


class JSONSchemaFormat(_Wire):
    name: str
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    description: str | None = None
    strict: bool | None = None

    model_config = ConfigDict(
        extra="allow", populate_by_name=True, serialize_by_alias=True, defer_build=True
    )


class ResponseFormat(_Wire):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None


class StreamOptions(_Wire):
    include_usage: bool | None = Field(default=None, strict=True)


class ChatRequest(_Wire):
    """One chat-completion request, validated once when it enters relaykit and frozen after.

    ``model`` is what the caller asked for: an alias that picks a route, or the upstream model
    name when the target names none. Numbers and flags are strict: ``"0.5"``, or ``1`` for a
    flag, is refused rather than converted (an int is a valid float). ``stream`` is set by
    relaykit from the method the caller used (``acomplete`` or ``astream``), not by the caller.
    """

    model_config = ConfigDict(extra="allow", frozen=True, defer_build=True)

    messages: list[Message] = Field(min_length=1)
    model: str | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(default=None, ge=0, le=2, strict=True)
    top_p: float | None = Field(default=None, ge=0, le=1, strict=True)
    n: int | None = Field(default=None, ge=1, strict=True)
    stop: str | list[str] | None = None
    max_tokens: int | None = Field(default=None, ge=1, strict=True)
    max_completion_tokens: int | None = Field(default=None, ge=1, strict=True)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2, strict=True)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2, strict=True)
    logit_bias: dict[str, Annotated[float, Field(strict=True)]] | None = None
    logprobs: bool | None = Field(default=None, strict=True)
    top_logprobs: int | None = Field(default=None, ge=0, le=20, strict=True)
    seed: int | None = Field(default=None, strict=True)
    user: str | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = Field(default=None, strict=True)
    response_format: ResponseFormat | None = None
    reasoning_effort: Literal["minimal", "low", "medium", "high"] | None = None
    session_id: str | None = None
    # OpenAI's other chat-completion arguments: typed loosely where their shape is OpenAI's to
    # change, so a new option inside them passes through.
    metadata: dict[str, str] | None = None
    store: bool | None = Field(default=None, strict=True)
    service_tier: str | None = None
    modalities: list[str] | None = None
    audio: dict[str, Any] | None = None
    prediction: dict[str, Any] | None = None
    web_search_options: dict[str, Any] | None = None
    verbosity: Literal["low", "medium", "high"] | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None
    functions: list[dict[str, Any]] | None = None  # deprecated by OpenAI for tools
    function_call: str | dict[str, Any] | None = None  # deprecated by OpenAI for tool_choice

    # Slots, not pydantic private attributes: building a request is on every call's path, and
    # a private attribute costs a microsecond to set up. model_copy() leaves them unset, so an
    # edited copy computes its own body and identity.
    __slots__ = ("_identity", "_wire")
    if TYPE_CHECKING:  # for mypy only: pydantic would make an annotated name a private attribute
        _wire: dict[str, Any]
        _identity: str | None

    def body(self) -> dict[str, Any]:
        """The JSON body to send upstream: set fields only, extras verbatim, by wire name.

        Computed once per request, however many attempts use it; callers must not mutate it.
        """
        try:
            # Straight to the slot: plain attribute access would fall back to pydantic's
            # __getattr__, which could return an extra field that happens to share the name.
            wire: dict[str, Any] = object.__getattribute__(self, "_wire")
            return wire
        except AttributeError:
            # The serializer itself: model_dump's wrapper adds a third to the cost.
            body: dict[str, Any] = self.__pydantic_serializer__.to_python(
                self, exclude_none=True, by_alias=True
            )
            object.__setattr__(self, "_wire", body)
            return body

    def identity(self) -> str | None:
        """What this request asks, as one text (``relaykit._support.canonical.request_identity``):
        the same for a streamed and a plain call, None when a value is not JSON.

        Taken from the caller's arguments as the Relay validated them when a layer asked for
        it (``set_request_identity``), else from ``body()``; computed once either way.
        """
        try:
            identity: str | None = object.__getattribute__(self, "_identity")
            return identity
        except AttributeError:
            identity = request_identity(self.body())
            set_request_identity(self, identity)
            return identity


def set_request_identity(request: ChatRequest, identity: str | None) -> None:
    """Record what ``request`` asks (``request.identity()`` then returns it)."""
    object.__setattr__(request, "_identity", identity)


# --- response ----------------------------------------------------------------------------------


class TopLogprob(_Wire):
    token: str
    logprob: float
    bytes: list[int] | None = None


class TokenLogprob(_Wire):
    token: str
    logprob: float
    bytes: list[int] | None = None
    top_logprobs: list[TopLogprob] | None = None


class Logprobs(_Wire):
    content: list[TokenLogprob] | None = None
    refusal: list[TokenLogprob] | None = None


class CompletionMessage(_Wire):
    role: str = "assistant"
    content: str | None = None
    refusal: str | None = None
    tool_calls: list[ToolCall] | None = None
    function_call: FunctionCall | None = None


class Choice(_Wire):
    index: int = 0
    message: CompletionMessage
    finish_reason: str | None = None
    logprobs: Logprobs | None = None


class PromptTokensDetails(_Wire):
    cached_tokens: int | None = None
    audio_tokens: int | None = None


class CompletionTokensDetails(_Wire):
    reasoning_tokens: int | None = None
    audio_tokens: int | None = None
    accepted_prediction_tokens: int | None = None
    rejected_prediction_tokens: int | None = None


class Usage(_Wire):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    prompt_tokens_details: PromptTokensDetails | None = None
    completion_tokens_details: CompletionTokensDetails | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None


class RelayInfo:
    """How relaykit produced a result: which target served it, after how many attempts, and
    the ``route`` it took there.

    A stream that broke and was continued on another target (``Fallback(continue_streams=True)``)
    names the target that finished it as ``target`` and the ones whose streams broke, in order,
    as ``continued_from``; the answer's ``model`` and ``usage`` are the finishing target's too.
    Kept outside the OpenAI fields, so ``model_dump()`` stays the provider's answer.

    ``cost_usd`` is what the answer cost at the answering target's price (``Target(price=...)``
    or its backend's), None when that target has no price; a cached answer cost 0.0. Failed
    attempts are not billed. ``cost_estimated`` says the provider reported no usage (a stream
    without ``include_usage``), so the tokens were estimated from the text. A stream's cost is
    there once it has ended.
    """

    __slots__ = (
        "_steps",
        "attempts",
        "cached",
        "continued_from",
        "cost_estimated",
        "cost_usd",
        "target",
    )

    def __init__(
        self,
        target: str | None,
        attempts: int,
        steps: Sequence[RouteStep] | None = None,
        *,
        cached: bool = False,
        continued_from: tuple[str, ...] = (),
    ) -> None:
        self.target = target
        self.attempts = attempts
        self.cached = cached
        # What the strategies recorded before the answer (the call's own list: a stream that is
        # continued later adds to it). None when nothing happened but the answer.
        self._steps = steps
        self.continued_from = continued_from
        self.cost_usd: float | None = 0.0 if cached else None  # a cached answer is free
        self.cost_estimated = False

    @property
    def route(self) -> tuple[RouteStep, ...]:
        """Each target the call considered, in order, and what happened there; the last step
        is the target that answered. Empty for a cached answer: no target was asked."""
        steps = tuple(self._steps) if self._steps else ()
        if self.target is None or self.cached:
            return steps
        return (*steps, RouteStep(self.target, "answered"))

    @property
    def rerouted(self) -> bool:
        """Whether anything besides one answer from the first target asked happened: a
        failure, a skip, a hedge."""
        return bool(self._steps)

    @property
    def continued(self) -> bool:
        """Whether the answer was written by more than one target (a continued stream)."""
        return bool(self.continued_from)

    def __repr__(self) -> str:
        shown = f"RelayInfo(target={self.target!r}, attempts={self.attempts}, cached={self.cached}"
        if self.continued_from:
            shown += f", continued_from={self.continued_from!r}"
        if self.cost_usd is not None:
            estimated = " (estimated)" if self.cost_estimated else ""
            shown += f", cost_usd={self.cost_usd:.6g}{estimated}"
        return shown + ")"


class ChatCompletion(_Wire):
    id: str
    object: str | None = None
    created: int | float | None = None  # some servers send time.time() as is
    model: str | None = None
    choices: list[Choice]
    usage: Usage | None = None
    system_fingerprint: str | None = None
    service_tier: str | None = None

    # A slot, not a pydantic private attribute: an answer is built on every call and every
    # cache hit, and a private attribute costs each build a microsecond. Copies and pickles
    # carry it (below); equality ignores it, as it ignores how an answer was obtained.
    __slots__ = ("_relay",)
    if TYPE_CHECKING:  # for mypy only: pydantic would make an annotated name a private attribute
        _relay: RelayInfo | None

    @property
    def relay(self) -> RelayInfo | None:
        """Which target answered and how many attempts it took; ``None`` outside a Relay."""
        try:
            info: RelayInfo | None = object.__getattribute__(self, "_relay")
            return info
        except AttributeError:
            return None

    def __copy__(self) -> Self:
        copied = super().__copy__()
        set_relay_info(copied, self.relay)
        return copied

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> Self:
        copied = super().__deepcopy__(memo)
        set_relay_info(copied, copy.deepcopy(self.relay, memo))
        return copied

    def __getstate__(self) -> dict[Any, Any]:
        return {**super().__getstate__(), "relay": self.relay}

    def __setstate__(self, state: dict[Any, Any]) -> None:
        super().__setstate__(state)
        set_relay_info(self, state.get("relay"))

    @property
    def content(self) -> str | None:
        """The first choice's text, the one thing most callers want."""
        return self.choices[0].message.content if self.choices else None


def set_relay_info(completion: ChatCompletion, info: RelayInfo | None) -> None:
    """Record how relaykit produced ``completion`` (read back as ``completion.relay``)."""
    object.__setattr__(completion, "_relay", info)


class FunctionCallDelta(_Wire):
    name: str | None = None
    arguments: str | None = None


class ToolCallDelta(_Wire):
    # Some OpenAI-compatible servers leave index out; the assembler then uses the position.
    index: int | None = None
    id: str | None = None
    type: str | None = None
    function: FunctionCallDelta | None = None


class Delta(_Wire):
    role: str | None = None
    content: str | None = None
    refusal: str | None = None
    tool_calls: list[ToolCallDelta] | None = None
    function_call: FunctionCallDelta | None = None


class ChunkChoice(_Wire):
    index: int = 0
    delta: Delta = Field(default_factory=Delta)
    finish_reason: str | None = None
    logprobs: Logprobs | None = None


class ChatCompletionChunk(_Wire):
    id: str
    object: str | None = None
    created: int | float | None = None  # some servers send time.time() as is
    model: str | None = None
    choices: list[ChunkChoice] = Field(default_factory=list)
    usage: Usage | None = None
    system_fingerprint: str | None = None
    service_tier: str | None = None
