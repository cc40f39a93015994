"""The request boundary: a call's arguments, checked once, before anything is sent.

A call takes OpenAI's request arguments (``messages=``, ``temperature=``, ...) and relaykit's
own call options (``tenant=``, ``cache=``, ``timeout=``, ...). A mistake in either is a
``RequestValidationError`` naming the field (``temperature``, ``messages[0].nme``, ``tenant``)
and what is allowed; nothing reaches a middleware or a provider. The rules:

- Unknown arguments are refused, with "did you mean" for a typo. Provider-specific fields go in
  ``extra_body={...}``; options relaykit owns elsewhere (``max_retries=``, ``api_key=``) are
  pointed to where they belong, never to ``extra_body`` (which would send them upstream).
- A message's unknown fields are refused the same way. The fields of OpenAI's messages and the
  few that providers document for messages (``reasoning_content``, ``cache_control``,
  ``prefix``, ...) pass; any other goes in a message built with ``relaykit.types``
  (``UserMessage(role="user", content="hi", my_field=1)``), whose extra fields are kept as
  given. An answer's message (``answer.choices[0].message``, also the openai SDK's) may be
  passed back as is.
- Numbers and flags must be numbers and flags: ``temperature="0.5"`` is refused, not converted.
  (Config files, whose values are text, convert theirs: see ``relaykit.config.loader``.)
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, get_args

from pydantic import BaseModel, ValidationError

from relaykit._support.canonical import request_identity
from relaykit._support.checks import positive_seconds
from relaykit._support.pydantic_errors import error_path, problem
from relaykit.contract.errors import RequestValidationError
from relaykit.contract.pipeline import CacheMode
from relaykit.contract.schema import (
    AssistantMessage,
    ChatRequest,
    DeveloperMessage,
    FunctionMessage,
    SystemMessage,
    ToolMessage,
    UserMessage,
    set_request_identity,
)

__all__ = [
    "CALL_OPTIONS",
    "PROVIDER_MESSAGE_FIELDS",
    "check_call_options",
    "validate_request",
]

_REQUEST_FIELDS = frozenset(ChatRequest.model_fields) - {"stream"}
CALL_OPTIONS = (
    "tenant",
    "cache",
    "cache_ttl_s",
    "cache_max_age_s",
    "timeout",
    "extra_headers",
    "extra_body",
    "validate",
)
"""relaykit's own per-call options, next to the request arguments."""
_CACHE_MODES = get_args(CacheMode)
_MESSAGE_MODELS = (
    SystemMessage,
    DeveloperMessage,
    UserMessage,
    AssistantMessage,
    ToolMessage,
    FunctionMessage,
)
# Every field of OpenAI's messages, whatever the role: the providers' documents (Morpheus' and
# VoidAI's among them) describe one message object with all of them.
_MESSAGE_FIELDS = frozenset[str]().union(*(m.model_fields for m in _MESSAGE_MODELS)) | {"audio"}
PROVIDER_MESSAGE_FIELDS = frozenset(
    {
        "reasoning_content",  # DeepSeek, vLLM, Qwen: an answer's reasoning, passed back
        "reasoning",  # OpenRouter
        "reasoning_details",  # OpenRouter
        "thinking_blocks",  # LiteLLM's Anthropic reasoning
        "cache_control",  # Anthropic prompt caching through OpenRouter or LiteLLM
        "prefix",  # DeepSeek and Mistral: the assistant message the answer continues
        "annotations",  # OpenAI's answers (web search citations), passed back
    }
)
"""Message fields providers document beyond OpenAI's, accepted in a message dict."""
_MESSAGE_KEYS = _MESSAGE_FIELDS | PROVIDER_MESSAGE_FIELDS

_RETRIES = "retrying is the Relay's: add Retry(attempts=...) to its middleware"
_BACKEND = "it belongs to the backend: OpenAICompatible(base_url, api_key=..., headers=...)"
# Per-call options of other clients (the openai SDK, LiteLLM) that relaykit sets elsewhere.
_OWNED_ELSEWHERE = {
    "max_retries": _RETRIES,
    "num_retries": _RETRIES,
    "retries": _RETRIES,
    "retry": _RETRIES,
    "fallbacks": "fallback is the Relay's: list the targets in order (or give routes=)",
    "request_timeout": "pass timeout= (seconds) to bound this call",
    "api_key": _BACKEND,
    "api_base": _BACKEND,
    "base_url": _BACKEND,
    "organization": _BACKEND,
    "headers": "pass this call's HTTP headers as extra_headers={...}",
    "default_headers": "pass this call's HTTP headers as extra_headers={...}",
    "extra_query": "a query belongs in the backend's base_url, which keeps it on every request",
    "cache_ttl": "pass cache_ttl_s= (seconds)",
    "ttl": "pass cache_ttl_s= (seconds)",
    "caching": "pass cache='use', 'bypass', 'refresh' or 'only'",
    "no_cache": "pass cache='bypass'",
    "tenant_id": "pass tenant=",
}
_NOT_SENT = "invalid request, nothing was sent"


def validate_request(
    request: dict[str, Any],
    extra_body: Mapping[str, Any] | None,
    *,
    stream: bool,
    identify: bool = False,
) -> ChatRequest:
    """The caller's keyword arguments as a ChatRequest, or a RequestValidationError naming the
    field; nothing is sent before this passes (the rules: this module's docstring).

    ``identify`` also records the request's identity (what a cache keys on) from the arguments
    as given: cheaper than from the validated request, and taken now, so a caller changing its
    ``messages`` list while the call is under way cannot make the answer cached under the
    changed question. When the arguments are not plain JSON (pydantic messages), the identity
    is left to come from the validated request.
    """
    if not _REQUEST_FIELDS.issuperset(request):
        raise _unknown_argument(request)
    if extra_body is not None and not isinstance(extra_body, Mapping):
        raise RequestValidationError(
            "extra_body must be a dict of provider-specific fields, got "
            f"{type(extra_body).__name__}",
            field="extra_body",
        )
    messages = request.get("messages")
    if isinstance(messages, list | tuple):
        checked = _checked_messages(messages)
        if checked is not messages:
            request = {**request, "messages": checked}
    given = {**extra_body, **request} if extra_body else request
    try:
        # The validator itself: model_validate's wrapper adds a sixth to the cost of every call.
        chat: ChatRequest = ChatRequest.__pydantic_validator__.validate_python(
            {**given, "stream": stream}
        )
    except ValidationError as exc:
        raise _validation_error(exc) from None
    if identify:
        identity = request_identity(given)
        if identity is not None:
            set_request_identity(chat, identity)
    return chat


def check_call_options(
    tenant: object,
    cache: object,
    cache_ttl_s: object,
    cache_max_age_s: object,
    extra_headers: object,
    timeout: object,
) -> None:
    """Refuse a relaykit call option of the wrong type or range, naming it."""
    if cache not in _CACHE_MODES:
        raise RequestValidationError(
            f"cache must be one of {', '.join(map(repr, _CACHE_MODES))}, got {cache!r}",
            field="cache",
        )
    if tenant is not None and not isinstance(tenant, str):
        raise RequestValidationError(
            f"tenant must be a string (it namespaces the cache and the logs), got "
            f"{type(tenant).__name__} {tenant!r}; pass tenant=str(...)",
            field="tenant",
        )
    for name, value, zero in (
        ("cache_ttl_s", cache_ttl_s, False),
        ("cache_max_age_s", cache_max_age_s, True),
        ("timeout", timeout, False),
    ):
        if value is not None:
            try:
                positive_seconds(name, value, allow_zero=zero)
            except ValueError as exc:
                raise RequestValidationError(str(exc), field=name) from None
    if extra_headers is not None and not (
        isinstance(extra_headers, Mapping)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in extra_headers.items())
    ):
        raise RequestValidationError(
            "extra_headers must map header names to strings, e.g. {'X-Request-Id': 'abc'}",
            field="extra_headers",
        )


def check_validate(validate: Callable[..., Any] | None) -> None:
    """``validate=`` is a function of the answer."""
    if validate is not None and not callable(validate):
        raise RequestValidationError(
            f"validate must be a function of the answer that raises BadResponseError to reject "
            f"it, got {validate!r}",
            field="validate",
        )


def _unknown_argument(request: Mapping[str, Any]) -> RequestValidationError:
    name = sorted(request.keys() - _REQUEST_FIELDS)[0]
    if name == "stream":
        return RequestValidationError(
            "stream is chosen by calling astream() or stream(), not by an argument",
            field=name,
        )
    if name in CALL_OPTIONS:  # a relaykit option this method does not take
        return RequestValidationError(
            f"{name}= checks a whole answer, so acomplete() and complete() take it; a stream is "
            "committed at its first chunk, before the answer is known"
            if name == "validate"
            else f"{name}= is not taken by this method",
            field=name,
        )
    owned = _OWNED_ELSEWHERE.get(name)
    if owned is not None:
        return RequestValidationError(f"{name!r} is not a request argument: {owned}", field=name)
    close = difflib.get_close_matches(name, [*_REQUEST_FIELDS, *CALL_OPTIONS], n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return RequestValidationError(
        f"{name!r} is not an OpenAI chat-completion argument nor a relaykit call option; "
        f"{hint}pass provider-specific fields in extra_body={{...}}",
        field=name,
    )


def _checked_messages(messages: Sequence[Any]) -> Sequence[Any]:
    """``messages``, or a copy where an answer's message (a pydantic model that is not one of
    relaykit's message models) became a dict; a dict with an unknown field is refused."""
    copied: list[Any] | None = None
    for index, message in enumerate(messages):
        if isinstance(message, Mapping):
            if not _MESSAGE_KEYS.issuperset(message):
                raise _unknown_message_field(index, message)
        elif isinstance(message, BaseModel) and not isinstance(message, _MESSAGE_MODELS):
            # Passed back from an answer: a provider wrote its fields, so none is a typo.
            if copied is None:
                copied = list(messages)
            copied[index] = message.model_dump(exclude_none=True)
    return messages if copied is None else copied


def _unknown_message_field(index: int, message: Mapping[Any, Any]) -> RequestValidationError:
    name = sorted(str(k) for k in message if k not in _MESSAGE_KEYS)[0]
    field = f"messages[{index}].{name}"
    close = difflib.get_close_matches(name, _MESSAGE_FIELDS, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return RequestValidationError(
        f"{_NOT_SENT}: {field} is not a field of a message; {hint}A message has "
        f"{', '.join(sorted(_MESSAGE_FIELDS))}. For a provider-specific field, build the "
        f"message with relaykit.types, e.g. UserMessage(role='user', content=..., {name}=...)",
        field=field,
    )


def _validation_error(exc: ValidationError) -> RequestValidationError:
    errors = exc.errors(include_url=False)
    paths = [error_path(error, "request") for error in errors]
    problems = [
        f"{path}: {problem(error)}{_as_text_hint(error)}"
        for path, error in zip(paths[:3], errors, strict=False)
    ]
    more = len(errors) - len(problems)
    suffix = f"; and {more} more" if more > 0 else ""
    return RequestValidationError(f"{_NOT_SENT}: {'; '.join(problems)}{suffix}", field=paths[0])


def _as_text_hint(error: Any) -> str:
    """For a number or flag given as text: that it is refused, not read, on purpose."""
    if error["type"] in ("float_type", "int_type", "bool_type") and isinstance(
        error.get("input"), str
    ):
        return " — pass the value itself, not as text"
    return ""
