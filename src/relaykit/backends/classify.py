"""Map an HTTP error answer (status, OpenAI error body, headers) onto relaykit's taxonomy.

One function serves every place that sees HTTP errors: the OpenAI-compatible backend, errors
reported inside an SSE stream, and, through ``classify_exception``, the LiteLLM backend and the
``@resilient`` decorator classifying LiteLLM's, the openai SDK's or an HTTP library's exceptions.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator, Mapping
from email.utils import parsedate_to_datetime
from typing import Any

from relaykit._support.secrets import Secrets
from relaykit.contract.errors import (
    AuthenticationError,
    BadResponseError,
    ContentFilterError,
    ContextWindowError,
    InvalidRequestError,
    ModelNotFoundError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeout,
    QuotaExceededError,
    RateLimitError,
    RelayError,
)

__all__ = [
    "classify_exception",
    "describe_exception",
    "error_from_http",
    "parse_error_body",
    "retry_after_from_headers",
]

_CONTEXT_WINDOW_HINTS = re.compile(
    r"context[_ ]length|context window|maximum context|prompt is too long|too many tokens",
    re.IGNORECASE,
)
_MAX_SNIPPET = 300


def parse_error_body(body: bytes | str | Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``{"message", "type", "code", "param"}`` of an error body, whatever its shape.

    Providers disagree: OpenAI nests under ``error``, some put a string there, some answer
    ``{"message": ...}`` or ``{"detail": ...}``, proxies answer HTML. Unknown shapes give the
    start of the body as the message.
    """
    data: Any = body
    if isinstance(body, bytes | str):
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        try:
            data = json.loads(text)
        except ValueError:
            return {"message": _snippet(text)} if text.strip() else {}
    if not isinstance(data, Mapping):
        return {}
    error = data.get("error", data)
    if isinstance(error, str):
        return {"message": error}
    if not isinstance(error, Mapping):
        return {}
    message = error.get("message") or error.get("detail") or error.get("msg")
    return {
        "message": message if isinstance(message, str) else _snippet(json.dumps(error)),
        "type": error.get("type"),
        "code": error.get("code"),
        "param": error.get("param"),
    }


def retry_after_from_headers(
    headers: Mapping[str, str], *, now: float | None = None
) -> float | None:
    """Seconds to wait, from ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    milliseconds = lowered.get("retry-after-ms")
    if milliseconds is not None:
        try:
            return max(0.0, float(milliseconds) / 1000)
        except ValueError:
            pass
    value = lowered.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def error_from_http(
    status: int,
    body: bytes | str | Mapping[str, Any] | None,
    headers: Mapping[str, str] | None = None,
    *,
    target: str | None = None,
    refined: type[RelayError] | None = None,
) -> RelayError:
    """The typed error for an HTTP error answer; ``x-should-retry`` overrides retryability.

    ``refined`` is a type the caller already knows the error to be (LiteLLM recognises a
    context-window error by provider wording these rules do not know); it is used when it is a
    subclass of the type the rules find, so it can only make the answer more specific.
    """
    headers = headers or {}
    details = parse_error_body(body)
    code = _text(details.get("code"))
    kind = _text(details.get("type"))
    provider_message = _text(details.get("message")).strip().rstrip(". ") or "no error message"
    retry_after = retry_after_from_headers(headers)
    error_class = _classify(status, code, kind, provider_message)
    if refined is not None and issubclass(refined, error_class):
        error_class = refined
    wait = f" (retry after {retry_after:.1f} s)" if retry_after is not None else ""
    # "Sorry about that!" ends its own sentence; a full stop after it would double it.
    stop = "" if provider_message[-1] in "!?" else "."
    message = f"answered {status}{wait}: {provider_message}{stop} {_ADVICE[error_class]}"
    should_retry = {k.lower(): v for k, v in headers.items()}.get("x-should-retry")
    retryable = None if should_retry is None else should_retry.strip().lower() == "true"
    return error_class(
        message,
        status=status,
        target=target,
        retry_after=retry_after,
        code=code or kind,
        retryable=retryable,
    )


def _classify(status: int, code: str, kind: str, message: str) -> type[RelayError]:
    if "insufficient_quota" in (code, kind):
        return QuotaExceededError
    if code == "context_length_exceeded" or (
        status in (400, 413, 422) and _CONTEXT_WINDOW_HINTS.search(message)
    ):
        return ContextWindowError
    if code in ("content_filter", "content_policy_violation"):
        return ContentFilterError
    if status == 404 or code in _NOT_FOUND_CODES:
        return ModelNotFoundError
    if status in (401, 403):
        return AuthenticationError
    if status == 429:
        return RateLimitError
    if status == 408:
        return ProviderTimeout
    if status == 409 or status >= 500:
        return ProviderError
    return InvalidRequestError


# A model or an Azure deployment this target does not have, whatever the status says.
_NOT_FOUND_CODES = frozenset({"model_not_found", "DeploymentNotFound"})

_ADVICE: dict[type[RelayError], str] = {
    QuotaExceededError: "The account is out of quota; retrying will not help. Add credit or "
    "route this traffic to another target",
    ContextWindowError: "Shorten the messages, or add a fallback target with a larger context "
    "window",
    ContentFilterError: "The provider's content filter refused it; rephrase the request",
    AuthenticationError: "Check this target's API key and its access to the model",
    RateLimitError: "Slow down (RateLimit), retry later (Retry), or add a fallback target",
    ProviderTimeout: "The provider timed out; retrying may help",
    ProviderError: "The provider failed; a Retry or a fallback target can absorb this",
    InvalidRequestError: "The provider rejected the request as invalid; fix it before retrying",
    ModelNotFoundError: "This target has no such model (or deployment, or its base_url path is "
    "wrong); check the target's model and base_url. The fallback moves on to the next target",
}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))


def _snippet(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _MAX_SNIPPET else flat[:_MAX_SNIPPET] + "…"


def classify_exception(exc: BaseException, *, secrets: Secrets | None = None) -> RelayError | None:
    """relaykit's error for an exception from LiteLLM, the openai SDK, httpx, aiohttp or requests.

    Duck-typed on what those libraries expose (a status code, a response with headers, a body),
    so none of them is imported. None when ``exc`` is no model-call failure at all (a bug in
    the caller's own code), which must not be retried or fallen back on. The error's message
    never holds the failed request's credentials nor ``secrets``, even when the provider echoed
    them; ``exc`` itself stays the ``__cause__``, as its library wrote it.

    A status that came with no HTTP answer is the SDK's own guess: LiteLLM reports a dropped
    connection as 500 and a timeout as 408, on a placeholder response without headers. The
    exceptions it wraps then say what really happened, and the one nearest the wire that says
    something wins; the guessed status is used only when none does.
    """
    chain = list(_chain(exc))
    hidden = secrets or Secrets()
    for link in chain:
        hidden += _credentials(link)
    status = _status_of(exc)
    if status is not None and not _answered(exc):
        for link in chain:
            error = _from_wire(link, hidden)
            if error is not None:
                error.__cause__ = exc
                return error
    if status is not None:
        error = _http_error(exc, status, hidden)
        error.__cause__ = exc
        return error
    return _from_wire(exc, hidden)


def _from_wire(exc: BaseException, hidden: Secrets) -> RelayError | None:
    """The error for one exception of a chain when it says what happened on the wire: an
    HTTP answer, a timeout, a connection failure or a body that could not be read."""
    if _answered(exc):
        status = _status_of(exc)
        assert status is not None
        return _http_error(exc, status, hidden)
    name = type(exc).__name__
    if "Timeout" in name or isinstance(exc, TimeoutError):
        return ProviderTimeout(f"timed out: {describe_exception(exc, secrets=hidden)}")
    if (
        "Connect" in name
        or "Connection" in name
        or (isinstance(exc, OSError) and not isinstance(exc, _LOCAL_OS_ERRORS))
        or type(exc).__module__.split(".")[0] in _HTTP_LIBRARIES
    ):
        return ProviderConnectionError(
            f"could not be reached: {describe_exception(exc, secrets=hidden)}"
        )
    if "JSONDecode" in name or "Decoding" in name:  # a body the SDK could not parse
        return BadResponseError(
            f"sent an answer that could not be read: {describe_exception(exc, secrets=hidden)}"
        )
    return None


def _http_error(exc: BaseException, status: int, hidden: Secrets) -> RelayError:
    response = _attribute(exc, "response")
    headers = getattr(response, "headers", None) or getattr(exc, "headers", None) or {}
    body = getattr(exc, "body", None)
    if body is None and response is not None:
        body = _response_text(response) or None  # LiteLLM's placeholder responses are empty
    text = _body_text(body) if body is not None else str(exc)
    return error_from_http(status, hidden.mask(text), dict(headers), refined=_refined_type(exc))


# Exception classes whose name says more than their status: LiteLLM knows each provider's
# wording of a context-window or a content-policy error, which the rules here do not. Names are
# matched along the class's ancestry, so a subclass counts as its parent.
_REFINED_BY_NAME: dict[str, type[RelayError]] = {
    "ContextWindowExceededError": ContextWindowError,
    "ContentPolicyViolationError": ContentFilterError,
}
_CHAIN_LIMIT = 16  # causes followed at most; real chains are three to five long


def _refined_type(exc: BaseException) -> type[RelayError] | None:
    for kind in type(exc).__mro__:
        refined = _REFINED_BY_NAME.get(kind.__name__)
        if refined is not None:
            return refined
    return None


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the exceptions it was raised from or while handling, outermost first."""
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen and len(seen) < _CHAIN_LIMIT:
        seen.add(id(link))
        yield link
        link = link.__cause__ or link.__context__


def _answered(exc: BaseException) -> bool:
    """Whether ``exc`` holds a real HTTP answer: a status and the headers a server sent."""
    if _status_of(exc) is None:
        return False
    response = _attribute(exc, "response")
    return bool(getattr(response, "headers", None) or getattr(exc, "headers", None))


def describe_exception(exc: BaseException, *, secrets: Secrets | None = None) -> str:
    """``"Name: message"`` for a message relaykit builds from a foreign exception, redacted.

    Masked: ``secrets`` and the credentials the request behind ``exc`` carried. relaykit's own
    backend knows its key; an exception from another SDK does not say which key it used, but
    the openai SDK, httpx, requests and aiohttp keep the request on it: its credential headers
    and query parameters (``relaykit._support.secrets``) are the secrets a provider may echo back.
    """
    hidden = _credentials(exc) if secrets is None else secrets + _credentials(exc)
    return f"{type(exc).__name__}: {hidden.mask(str(exc))}"


def _credentials(exc: BaseException) -> Secrets:
    found = Secrets()
    requests = (
        _attribute(exc, "request"),  # openai SDK, httpx, requests
        _attribute(exc, "request_info"),  # aiohttp
        _attribute(_attribute(exc, "response"), "request"),
    )
    for request in requests:
        if request is None:
            continue
        headers = _attribute(request, "headers")
        try:
            pairs = dict(headers.items()) if headers is not None else {}
        except Exception:  # not a mapping after all: nothing to learn from it
            pairs = {}
        url = _attribute(request, "url")
        found += Secrets.of(headers=pairs, url=None if url is None else str(url), guessed=True)
    return found


def _attribute(source: Any, name: str) -> Any:
    # httpx's exceptions raise RuntimeError for a .request that was never set.
    try:
        return getattr(source, name, None)
    except Exception:
        return None


def _body_text(body: Any) -> str:
    # The openai SDK parses the body (a dict); as text it can be redacted, and error_from_http
    # parses it again.
    if isinstance(body, bytes):
        return body.decode("utf-8", "replace")
    return body if isinstance(body, str) else json.dumps(body, default=str)


# OSErrors that come from the caller's own files, not from the network.
_LOCAL_OS_ERRORS = (
    FileNotFoundError,
    FileExistsError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
)
# Any other exception these raise is a transport failure (resets, TLS, DNS, proxies).
_HTTP_LIBRARIES = frozenset({"aiohttp", "httpx", "httpcore", "requests", "urllib3"})


def _status_of(exc: BaseException) -> int | None:
    for source in (exc, getattr(exc, "response", None)):
        for attribute in ("status_code", "status"):
            value = getattr(source, attribute, None)
            if isinstance(value, int) and 100 <= value < 600:
                return value
    return None


def _response_text(response: Any) -> str | None:
    # httpx and requests have the body as a str property; aiohttp's text() is a coroutine, and
    # its message is on the exception instead.
    text = getattr(response, "text", None)
    return text if isinstance(text, str) else None
