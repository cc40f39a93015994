"""A key never shows, however it was passed: errors, reprs, log lines, events and spans.

Each way a credential can reach a provider is tried against a FakeProvider that echoes every
header and query parameter it received back in its error, as is, JSON-escaped or PHP-escaped;
then every output a user could see is scanned for the key in any of the forms it could take.
"""

from __future__ import annotations

import base64
import json
import socket
import traceback
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from structlog.testing import capture_logs

from relaykit import (
    AllTargetsFailedError,
    AuthenticationError,
    Logging,
    OpenAICompatible,
    OpenTelemetry,
    ProviderConnectionError,
    Relay,
    RelayError,
    Target,
)
from relaykit._support.secrets import MASK, Secrets, mask_url
from relaykit.contract.events import Event
from relaykit.testing import FakeProvider, Reply

HI = [{"role": "user", "content": "hi"}]
# Shaped like no known key, so only the real mechanism (not the key-shape net) can mask it.
PLAIN = "rk-live-7f3a9c1e5b2d4f60"
# Characters JSON escapes (quote, backslash), PHP escapes too (slash), and URLs encode.
NASTY = 'rk/ab"cd\\ef-0123456789'


def forms(key: str) -> list[str]:
    """Every form in which a key could show: as is, JSON- and PHP-escaped, URL-encoded, and as
    the Basic credential a user:password@ URL turns into."""
    escaped = json.dumps(key)[1:-1]
    basic = base64.b64encode(f"tenant:{key}".encode()).decode()
    return [key, escaped, escaped.replace("/", "\\/"), quote(key, safe=""), basic]


@dataclass
class Way:
    """One way of giving a key: backend options, and call options."""

    backend: Callable[[str, str], dict[str, Any]]
    call: Callable[[str], dict[str, Any]] = field(default=lambda key: {})


WAYS = {
    "api_key": Way(lambda url, key: {"base_url": url, "api_key": key}),
    "authorization": Way(
        lambda url, key: {"base_url": url, "headers": {"Authorization": f"Bearer {key}"}}
    ),
    "api-key": Way(lambda url, key: {"base_url": url, "headers": {"api-key": key}}),
    "x-api-key": Way(lambda url, key: {"base_url": url, "headers": {"x-api-key": key}}),
    "x-goog-api-key": Way(lambda url, key: {"base_url": url, "headers": {"x-goog-api-key": key}}),
    "user-named header": Way(
        lambda url, key: {
            "base_url": url,
            "headers": {"X-Tenant-Pass": key},
            "secret_headers": ["X-Tenant-Pass"],
        }
    ),
    "query ?key=": Way(lambda url, key: {"base_url": f"{url}?key={quote(key, safe='')}"}),
    "user:password@": Way(
        lambda url, key: {"base_url": url.replace("://", f"://tenant:{quote(key, safe='')}@")}
    ),
    "extra_body api_key": Way(lambda url, key: {"base_url": url, "extra_body": {"api_key": key}}),
    "extra_headers": Way(
        lambda url, key: {"base_url": url}, lambda key: {"extra_headers": {"x-api-key": key}}
    ),
}


class Outputs:
    """Everything a user can see of a call: log lines, events and spans as they happen."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))

    def texts(self, logs: list[dict[str, Any]]) -> list[str]:
        spans = [
            json.dumps(
                {
                    "name": span.name,
                    "attributes": dict(span.attributes or {}),
                    "status": span.status.description,
                    "events": [(e.name, dict(e.attributes or {})) for e in span.events],
                },
                default=repr,
            )
            for span in self.exporter.get_finished_spans()
        ]
        return [
            *(json.dumps(line, default=repr) for line in logs),
            *(repr(event) for event in self.events),
            *spans,
        ]


def error_texts(error: BaseException) -> list[str]:
    """The error as str, repr and a printed traceback (its causes and sub-errors included)."""
    return [str(error), repr(error), repr(error.args), "".join(traceback.format_exception(error))]


def assert_never_shown(key: str, texts: list[str]) -> None:
    for text in texts:
        for form in forms(key):
            assert form not in text, f"{form!r} shows in {text[:300]!r}"


@pytest.mark.parametrize("key", [PLAIN, NASTY], ids=["plain key", "key with quote/slash"])
@pytest.mark.parametrize("style", ["json", "php", "raw"])
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize("way", list(WAYS))
async def test_a_key_echoed_by_the_provider_shows_nowhere(
    way: str, stream: bool, style: str, key: str
) -> None:
    outputs = Outputs()
    async with FakeProvider() as provider:
        provider.default = Reply.echo_credentials(style=style)  # type: ignore[arg-type]
        options = WAYS[way].backend(provider.url, key)
        backends = [OpenAICompatible(model="m", **options) for _ in range(2)]
        relay = Relay(
            targets=[Target(backends[0], name="primary"), Target(backends[1], name="backup")],
            middleware=[Logging(), OpenTelemetry(tracer_provider=outputs.tracer_provider)],
            listeners=[outputs.events.append],
        )
        with capture_logs() as logs, pytest.raises(AllTargetsFailedError) as caught:
            if stream:
                await relay.astream(messages=HI, **WAYS[way].call(key))
            else:
                await relay.acomplete(messages=HI, **WAYS[way].call(key))
        await relay.aclose()
        received = provider.requests[0]

    # The key did reach the provider, and the provider did echo what it got into the error.
    sent = [*received.headers.values(), urllib.parse.unquote(received.query)]
    sent += [v for v in (received.body or {}).values() if isinstance(v, str)]
    basic = base64.b64encode(f"tenant:{key}".encode()).decode()
    assert any(key in text or basic in text for text in sent)
    first = caught.value.exceptions[0]
    assert isinstance(first, AuthenticationError)
    assert "Invalid credentials. The request carried" in str(first)
    assert MASK in str(first)
    texts = error_texts(caught.value) + outputs.texts(logs)
    texts += [repr(relay), repr(relay.targets), repr(backends[0]), repr(vars(backends[0]))]
    assert_never_shown(key, texts)


@pytest.mark.parametrize("way", ["query ?key=", "user:password@"])
async def test_an_unreachable_url_with_a_key_in_it_shows_it_nowhere(way: str) -> None:
    outputs = Outputs()
    with socket.socket() as sock:  # a port nobody listens on: bound, never accepting
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
        backend = OpenAICompatible(model="m", **WAYS[way].backend(url, NASTY))
        relay = Relay(
            targets=[backend],
            middleware=[Logging(), OpenTelemetry(tracer_provider=outputs.tracer_provider)],
            listeners=[outputs.events.append],
        )
        with capture_logs() as logs, pytest.raises(ProviderConnectionError) as caught:
            await relay.acomplete(messages=HI)
        await relay.aclose()

    assert "could not be reached at http://" in str(caught.value)
    assert_never_shown(NASTY, error_texts(caught.value) + outputs.texts(logs) + [repr(backend)])


def test_a_bad_base_url_with_a_key_in_its_query_is_refused_without_showing_it() -> None:
    with pytest.raises(ValueError) as caught:
        OpenAICompatible(f"ftp://example.com/v1?key={PLAIN}")

    assert "base_url must be an http(s) URL" in str(caught.value)
    assert_never_shown(PLAIN, [str(caught.value)])


def test_shown_urls_keep_everything_but_the_credentials() -> None:
    shown = mask_url(f"https://u:{PLAIN}@host/v1?api-version=2024-06-01&key={PLAIN}&sig=abc")

    assert shown == f"https://{MASK}@host/v1?api-version=2024-06-01&key={MASK}&sig={MASK}"


def test_masking_leaves_ordinary_words_alone() -> None:
    secrets = Secrets.of(headers={"Authorization": "Bearer secret-value-1234"}, names=())
    text = "missing bearer token; the key is wrong; max_tokens must be at least 1"

    assert secrets.mask(text) == text
    assert secrets.mask("got secret-value-1234") == f"got {MASK}"


async def test_a_key_in_a_headers_value_of_the_wrong_type_is_not_shown() -> None:
    with pytest.raises(ValueError) as caught:
        OpenAICompatible("http://127.0.0.1:1/v1", headers={"x-api-key": 12345678901})  # type: ignore[dict-item]

    assert "headers must map header names to strings" in str(caught.value)
    assert "12345678901" not in str(caught.value)


def test_an_error_built_elsewhere_is_masked_by_key_shape() -> None:
    error = RelayError(Secrets().mask("see https://host/v1?key=abc123def&x=1 and sk-" + "a" * 24))

    assert str(error) == f"see https://host/v1?key={MASK}&x=1 and {MASK}"


async def test_a_key_another_sdk_sent_shows_in_no_span_or_log_under_resilient() -> None:
    import openai

    from relaykit import resilient

    outputs = Outputs()
    async with FakeProvider() as provider:
        provider.default = Reply.echo_credentials()
        client = openai.AsyncOpenAI(
            base_url=provider.url,
            api_key=PLAIN,
            default_headers={"x-api-key": NASTY},
            max_retries=0,
        )

        @resilient(
            fallback_models=["small"],
            middleware=[Logging(), OpenTelemetry(tracer_provider=outputs.tracer_provider)],
        )
        async def ask(question: str, model: str = "large") -> str:
            answer = await client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": question}]
            )
            return answer.choices[0].message.content or ""

        with capture_logs() as logs, pytest.raises(AllTargetsFailedError) as caught:
            await ask("hi")
        await client.close()

    assert "Invalid credentials" in str(caught.value.exceptions[0])
    spans = outputs.exporter.get_finished_spans()
    assert any(e.name == "exception" for span in spans for e in span.events)
    for key in (PLAIN, NASTY):
        texts = [str(e) for e in caught.value.exceptions] + outputs.texts(logs)
        assert_never_shown(key, texts)


async def test_a_header_a_config_file_names_secret_shows_nowhere() -> None:
    async with FakeProvider() as provider:
        provider.default = Reply.echo_credentials(style="raw")
        relay = Relay.from_config(
            {
                "targets": [
                    {
                        "base_url": provider.url,
                        "model": "m",
                        "headers": {"X-Tenant-Pass": PLAIN},
                        "secret_headers": ["x-tenant-pass"],
                    }
                ]
            }
        )
        with pytest.raises(AuthenticationError) as caught:
            await relay.acomplete(messages=HI)
        await relay.aclose()

    assert provider.requests[0].header("X-Tenant-Pass") == PLAIN
    assert_never_shown(PLAIN, [*error_texts(caught.value), repr(relay.targets)])


async def test_a_key_in_an_error_raised_by_users_own_code_is_masked_in_logs_and_spans() -> None:
    from relaykit import FunctionBackend, ProviderError

    key = "sk-" + "Z9" * 15  # shaped like a key: the net behind every log line and span

    def broken(request: Any) -> str:
        raise ProviderError(f"my gateway refused {key}")

    outputs = Outputs()
    relay = Relay(
        targets=[FunctionBackend(broken, name="mine")],
        middleware=[Logging(), OpenTelemetry(tracer_provider=outputs.tracer_provider)],
    )
    with capture_logs() as logs, pytest.raises(ProviderError):
        await relay.acomplete(messages=HI)

    assert any(line["event"] == "relaykit.failed" for line in logs)
    assert_never_shown(key, outputs.texts(logs))
