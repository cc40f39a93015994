"""HTTP error answers map onto one taxonomy: the type, retryability and wait a policy acts on."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from relaykit.backends.classify import (
    classify_exception,
    error_from_http,
    parse_error_body,
    retry_after_from_headers,
)
from relaykit.contract.errors import (
    AuthenticationError,
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


def openai_body(
    message: str = "Something went wrong.",
    *,
    type: str | None = None,
    code: str | None = None,
    param: str | None = None,
) -> bytes:
    return json.dumps(
        {"error": {"message": message, "type": type, "code": code, "param": param}}
    ).encode()


@pytest.mark.parametrize(
    ("status", "body", "kind", "retryable"),
    [
        (401, openai_body("Incorrect API key provided.", code="invalid_api_key"),
         AuthenticationError, False),
        (403, openai_body("Project lacks access to model."), AuthenticationError, False),
        (429, openai_body("Rate limit reached.", code="rate_limit_exceeded"),
         RateLimitError, True),
        (429, openai_body("You exceeded your current quota.", type="insufficient_quota",
                          code="insufficient_quota"), QuotaExceededError, False),
        (429, openai_body("Out of credit.", type="insufficient_quota"),
         QuotaExceededError, False),
        (400, openai_body("This model's maximum context length is 8192 tokens.",
                          code="context_length_exceeded", param="messages"),
         ContextWindowError, False),
        (400, openai_body("Filtered.", code="content_filter"), ContentFilterError, False),
        (400, openai_body("Invalid value for 'temperature'.", param="temperature"),
         InvalidRequestError, False),
        (422, openai_body("Unprocessable."), InvalidRequestError, False),
        (404, openai_body("The model 'x' does not exist."), ModelNotFoundError, False),
        (408, openai_body("Request timed out."), ProviderTimeout, True),
        (409, openai_body("Conflict."), ProviderError, True),
        (500, openai_body("The server had an error.", type="server_error"), ProviderError, True),
        (502, b"<html><body><h1>502 Bad Gateway</h1></body></html>", ProviderError, True),
        (503, openai_body("The engine is currently overloaded."), ProviderError, True),
        (504, b"", ProviderError, True),
    ],
)  # fmt: skip
def test_status_and_body_map_to_the_error_type(
    status: int, body: bytes, kind: type[RelayError], retryable: bool
) -> None:
    error = error_from_http(status, body, {}, target="main")

    assert type(error) is kind
    assert error.status == status
    assert error.retryable is retryable
    assert error.target == "main"
    assert str(error).startswith(f"target 'main' answered {status}")


def test_quota_is_a_rate_limit_error_that_is_not_retried() -> None:
    error = error_from_http(429, openai_body(code="insufficient_quota"), {})

    assert isinstance(error, RateLimitError)
    assert not error.retryable
    assert error.code == "insufficient_quota"


def test_context_window_is_an_invalid_request_found_by_message_without_a_code() -> None:
    body = {"message": "prompt is too long: 210000 tokens > 200000 maximum"}

    error = error_from_http(400, body, {})

    assert isinstance(error, ContextWindowError)
    assert isinstance(error, InvalidRequestError)


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"retry-after-ms": "250"}, 0.25),
        ({"Retry-After-Ms": "250", "Retry-After": "9"}, 0.25),  # the precise one wins
        ({"retry-after-ms": "soon", "retry-after": "3"}, 3.0),
        ({"Retry-After": "-4"}, 0.0),
        ({"Retry-After": "not a date"}, None),
        ({}, None),
    ],
)
def test_rate_limit_retry_after_from_headers(
    headers: dict[str, str], seconds: float | None
) -> None:
    error = error_from_http(429, openai_body("Slow down."), headers)

    assert isinstance(error, RateLimitError)
    assert error.retry_after == seconds
    if seconds is not None:
        assert f"(retry after {seconds:.1f} s)" in str(error)


def test_rate_limit_retry_after_as_an_http_date() -> None:
    when = datetime.now(UTC) + timedelta(seconds=30)

    error = error_from_http(429, openai_body(), {"Retry-After": format_datetime(when, usegmt=True)})

    assert error.retry_after is not None
    assert 28 <= error.retry_after <= 31  # the date has whole-second resolution


def test_retry_after_http_date_is_measured_from_now() -> None:
    headers = {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}
    then = datetime(2015, 10, 21, 7, 27, 50, tzinfo=UTC).timestamp()

    assert retry_after_from_headers(headers, now=then) == 10.0
    assert retry_after_from_headers(headers, now=time.time()) == 0.0  # a date in the past


@pytest.mark.parametrize(
    ("status", "header", "retryable"),
    [
        (500, "false", False),
        (503, "False", False),
        (429, "false", False),
        (400, "true", True),
        (401, "true", True),
        (429, " TRUE ", True),
    ],
)
def test_x_should_retry_overrides_retryability(status: int, header: str, retryable: bool) -> None:
    error = error_from_http(status, openai_body(), {"X-Should-Retry": header})

    assert error.retryable is retryable


def test_x_should_retry_on_one_answer_leaves_later_answers_alone() -> None:
    overridden = error_from_http(500, openai_body(), {"x-should-retry": "false"})

    later = error_from_http(500, openai_body(), {})

    assert not overridden.retryable
    assert later.retryable


def test_html_body_gives_a_short_readable_message() -> None:
    page = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n" + "x" * 2000 + "</html>"

    error = error_from_http(502, page.encode(), {})

    assert isinstance(error, ProviderError)
    assert "502 Bad Gateway" in str(error)
    assert "\r" not in str(error) and "\n" not in str(error)
    assert len(str(error)) < 600


@pytest.mark.parametrize(
    "body",
    [
        b'{"error": "Invalid API key"}',
        '{"error": "Invalid API key"}',
        {"error": "Invalid API key"},
        b'{"message": "Invalid API key"}',
        b'{"detail": "Invalid API key"}',
        b"Invalid API key",
    ],
)
def test_string_and_flat_error_bodies_keep_their_message(body: Any) -> None:
    error = error_from_http(401, body, {})

    assert isinstance(error, AuthenticationError)
    assert "Invalid API key" in str(error)


@pytest.mark.parametrize("body", [None, b"", b"   ", b"[1, 2]", b"null", b'{"error": 5}'])
def test_empty_or_odd_bodies_still_classify_by_status(body: Any) -> None:
    error = error_from_http(503, body, {})

    assert isinstance(error, ProviderError)
    assert str(error).startswith("answered 503: ")


def test_parse_error_body_reads_the_openai_shape() -> None:
    body = openai_body("Bad value.", type="invalid_request_error", code="bad", param="top_p")

    assert parse_error_body(body) == {
        "message": "Bad value.",
        "type": "invalid_request_error",
        "code": "bad",
        "param": "top_p",
    }


def test_error_messages_say_what_to_do_next() -> None:
    headers = {"retry-after": "2"}

    error = error_from_http(429, openai_body("Rate limit reached."), headers, target="a")

    assert str(error) == (
        "target 'a' answered 429 (retry after 2.0 s): Rate limit reached. Slow down (RateLimit), "
        "retry later (Retry), or add a fallback target"
    )


def test_every_relay_error_survives_copy_and_pickle_with_its_attributes() -> None:
    import copy
    import pickle

    from relaykit.contract.errors import RequestValidationError, StreamInterruptedError

    errors = [
        StreamInterruptedError("broke its stream", partial=None, target="a"),
        RequestValidationError("bad temperature", field="temperature"),
        error_from_http(429, {"error": {"code": "insufficient_quota"}}, {"retry-after": "3"}),
    ]
    for error in errors:
        for twin in (copy.copy(error), pickle.loads(pickle.dumps(error))):
            assert type(twin) is type(error)
            assert twin.__dict__ == error.__dict__
            assert str(twin) == str(error)


# --- exceptions from other SDKs never put their request's key in relaykit's errors -------------

KEY = "live-8f3k2-SECRET"  # no recognisable key shape: only the request can reveal it


@pytest.mark.parametrize(
    ("headers", "url"),
    [
        ({"Authorization": f"Bearer {KEY}"}, "http://127.0.0.1/v1/chat/completions"),
        ({"api-key": KEY}, "http://127.0.0.1/openai/deployments/d/chat/completions"),  # Azure
        ({"x-api-key": KEY}, "http://127.0.0.1/v1/messages"),
        ({}, f"http://127.0.0.1/v1beta/models/m:generateContent?key={KEY}"),
    ],
)
def test_a_key_the_provider_echoes_is_redacted_with_the_request_it_came_from(
    headers: dict[str, str], url: str
) -> None:
    request = httpx.Request("POST", url, headers=headers)
    response = httpx.Response(401, text=f"Incorrect API key provided: {KEY}", request=request)
    exc = httpx.HTTPStatusError(f"401 for {url}", request=request, response=response)

    error = classify_exception(exc)

    assert isinstance(error, AuthenticationError)
    assert "Incorrect API key provided: **********" in str(error)
    assert KEY not in str(error) and KEY not in repr(error)
    assert error.__cause__ is exc  # the library's own exception, unchanged


def test_a_key_echoed_json_escaped_is_redacted_too() -> None:
    key = "live/8f3k2/SECRET"
    request = httpx.Request("POST", "http://127.0.0.1/v1", headers={"api-key": key})
    escaped = key.replace("/", "\\/")  # as PHP's json_encode writes it
    body = '{"error": {"message": "Incorrect API key provided: ' + escaped + '"}}'
    response = httpx.Response(401, text=body, request=request)
    exc = httpx.HTTPStatusError("401", request=request, response=response)

    error = classify_exception(exc)

    assert isinstance(error, AuthenticationError)
    assert "Incorrect API key provided: **********" in str(error)
    assert key not in str(error) and escaped not in str(error) and "8f3k2" not in repr(error)


def test_a_connection_error_message_hides_the_key_of_its_request() -> None:
    request = httpx.Request("POST", "http://127.0.0.1/v1", headers={"x-api-key": KEY})
    exc = httpx.ConnectError(f"proxy refused x-api-key {KEY}", request=request)

    error = classify_exception(exc)

    assert isinstance(error, ProviderConnectionError)
    assert str(error) == "could not be reached: ConnectError: proxy refused x-api-key **********"


def test_key_shaped_tokens_are_redacted_even_from_an_exception_without_its_request() -> None:
    key = "sk-proj-" + "a1B2c3D4" * 4
    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"

    error = classify_exception(TimeoutError(f"proxy timed out; key {key}, Bearer {token}"))

    assert isinstance(error, ProviderTimeout)
    assert (
        str(error) == "timed out: TimeoutError: proxy timed out; key **********, Bearer **********"
    )


def test_redaction_leaves_ordinary_words_and_placeholder_keys_alone() -> None:
    request = httpx.Request("POST", "http://127.0.0.1/v1", headers={"Authorization": "Bearer k"})
    message = "missing bearer token for task-queue-worker-pool-alpha; check the key"

    error = classify_exception(httpx.ConnectError(message, request=request))

    assert str(error) == f"could not be reached: ConnectError: {message}"


def test_a_missing_file_in_the_callers_code_is_not_a_connection_error() -> None:
    assert classify_exception(FileNotFoundError("settings.json")) is None
    assert classify_exception(ConnectionRefusedError("refused")) is not None


def test_network_failures_from_http_libraries_stay_retryable_transport_errors() -> None:
    import socket

    import aiohttp

    from relaykit import ProviderConnectionError

    for exc in (
        aiohttp.ClientOSError(104, "Connection reset by peer"),
        socket.gaierror(-2, "Name or service not known"),
        OSError(101, "Network is unreachable"),
    ):
        error = classify_exception(exc)
        assert isinstance(error, ProviderConnectionError) and error.retryable, exc
    assert classify_exception(PermissionError("settings.json")) is None
