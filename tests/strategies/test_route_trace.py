"""The routing trace: answer.relay.route, error.route, the log line and the span list each
target a call considered, in order, and what happened there."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import structlog
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from structlog.testing import capture_logs

from relaykit import (
    AllTargetsFailedError,
    CircuitBreaker,
    CircuitOpenError,
    Logging,
    OpenAICompatible,
    OpenTelemetry,
    ProviderError,
    RateLimit,
    Relay,
    RouteStep,
    Target,
)
from relaykit.testing import FakeClock, FakeProvider, Reply

HI = [{"role": "user", "content": "hi"}]


@pytest.fixture
async def providers() -> AsyncIterator[tuple[FakeProvider, FakeProvider, FakeProvider]]:
    async with FakeProvider() as a, FakeProvider() as b, FakeProvider() as c:
        yield a, b, c


def target(provider: FakeProvider, name: str, **options: Any) -> Target:
    backend = OpenAICompatible(provider.url, api_key="sk-test", model=f"{name}-model")
    return Target(backend, name=name, **options)


def described(route: tuple[RouteStep, ...]) -> list[tuple[str, str, str]]:
    return [(step.target, step.outcome, step.reason) for step in route]


async def test_an_answer_from_the_only_target_has_a_route_of_one_step(provider) -> None:
    async with Relay(targets=[target(provider, "a")]) as relay:
        answer = await relay.acomplete(messages=HI)
    assert answer.relay is not None
    assert described(answer.relay.route) == [("a", "answered", "")]
    assert not answer.relay.rerouted


async def test_the_route_lists_a_failure_a_skipped_open_circuit_and_the_answer(providers) -> None:
    a, b, c = providers
    clock = FakeClock()
    breaker = CircuitBreaker(failures=1)
    b.script(Reply.server_error())
    targets = [target(a, "a"), target(b, "b", middleware=[breaker]), target(c, "c")]
    async with Relay(targets=targets, clock=clock) as relay:
        await relay.acomplete(messages=HI)  # a answers; nothing asks b
        a.script(Reply.overloaded())
        relay_b_only = Relay(targets=[targets[1], targets[2]], clock=clock)
        await relay_b_only.acomplete(messages=HI)  # b fails once: its circuit opens
        answer = await relay.acomplete(messages=HI)
    assert answer.relay is not None and answer.relay.rerouted
    assert described(answer.relay.route) == [
        ("a", "failed", "ProviderError"),
        ("b", "skipped", "circuit open"),
        ("c", "answered", ""),
    ]
    failed, skipped, _ = answer.relay.route
    assert isinstance(failed.error, ProviderError) and failed.error.status == 503
    assert failed.latency_s is not None
    assert isinstance(skipped.error, CircuitOpenError)
    assert skipped.describe() == "b: skipped (circuit open)"
    assert failed.describe().startswith("a: failed (ProviderError 503 after ")
    assert b.request_count == 1  # the open circuit sent nothing


async def test_a_spent_rate_limit_is_a_skip_in_the_route(providers) -> None:
    a, b, _ = providers
    limited = target(a, "a", middleware=[RateLimit(rpm=1)])
    async with Relay(targets=[limited, target(b, "b")], clock=FakeClock()) as relay:
        await relay.acomplete(messages=HI)
        answer = await relay.acomplete(messages=HI)
    assert answer.relay is not None
    assert described(answer.relay.route) == [
        ("a", "skipped", "rate limit has no room"),
        ("b", "answered", ""),
    ]
    assert (a.request_count, b.request_count) == (1, 1)


async def test_a_context_window_too_small_is_a_skip_in_the_route(providers) -> None:
    a, b, c = providers
    a.script(Reply.context_length())
    targets = [
        target(a, "a", context_window=8_000),
        target(b, "b", context_window=8_000),
        target(c, "c", context_window=128_000),
    ]
    async with Relay(targets=targets) as relay:
        answer = await relay.acomplete(messages=HI)
    assert answer.relay is not None
    assert described(answer.relay.route) == [
        ("a", "failed", "ContextWindowError"),
        ("b", "skipped", "context window too small"),
        ("c", "answered", ""),
    ]


async def test_the_error_carries_the_route_and_its_message_lists_every_attempt(providers) -> None:
    a, b, _ = providers
    a.script(Reply.server_error())
    b.script(Reply.overloaded())
    async with Relay(targets=[target(a, "a"), target(b, "b")]) as relay:
        with pytest.raises(AllTargetsFailedError) as caught:
            await relay.acomplete(messages=HI)
    error = caught.value
    assert described(error.route) == [
        ("a", "failed", "ProviderError"),
        ("b", "failed", "ProviderError"),
    ]
    assert "a: ProviderError 500" in str(error) and "b: ProviderError 503" in str(error)


async def test_a_single_target_failure_carries_its_route_too(provider) -> None:
    provider.script(Reply.server_error())
    async with Relay(targets=[target(provider, "a")]) as relay:
        with pytest.raises(ProviderError) as caught:
            await relay.acomplete(messages=HI)
    assert described(caught.value.route) == [("a", "failed", "ProviderError")]


async def test_a_stream_carries_its_route(providers) -> None:
    a, b, _ = providers
    a.script(Reply.server_error())
    async with Relay(targets=[target(a, "a"), target(b, "b")]) as relay:
        stream = await relay.astream(messages=HI)
        answer = await stream.completion()
    assert answer.relay is not None
    assert described(answer.relay.route) == [
        ("a", "failed", "ProviderError"),
        ("b", "answered", ""),
    ]


@pytest.fixture
def debug_logs() -> Iterator[list[dict[str, Any]]]:
    was_configured = structlog.is_configured()
    old = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    with capture_logs() as captured:
        yield captured
    if was_configured:
        structlog.configure(**old)
    else:
        structlog.reset_defaults()


async def test_logging_writes_the_route_at_debug_level(providers, debug_logs) -> None:
    a, b, _ = providers
    a.script(Reply.server_error(), Reply.server_error())
    b.script(Reply.ok(), Reply.overloaded())
    targets = [target(a, "a"), target(b, "b")]
    async with Relay(targets=targets, middleware=[Logging()]) as relay:
        await relay.acomplete(messages=HI)
        with pytest.raises(AllTargetsFailedError):
            await relay.acomplete(messages=HI)
    routes = [entry for entry in debug_logs if entry["event"] == "relaykit.route"]
    assert [entry["log_level"] for entry in routes] == ["debug", "debug"]
    assert routes[0]["target"] == "b"
    assert routes[0]["route"][0].startswith("a: failed (ProviderError 500 after ")
    assert routes[0]["route"][1] == "b: answered"
    assert [line.split(" (")[0] for line in routes[1]["route"]] == ["a: failed", "b: failed"]


async def test_logging_writes_no_route_line_for_an_answer_at_the_first_try(
    provider, debug_logs
) -> None:
    async with Relay(targets=[target(provider, "a")], middleware=[Logging()]) as relay:
        await relay.acomplete(messages=HI)
    assert "relaykit.route" not in [entry["event"] for entry in debug_logs]


async def test_the_call_span_lists_the_route(providers) -> None:
    a, b, _ = providers
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    a.script(Reply.server_error())
    otel = OpenTelemetry(tracer_provider=tracer_provider)
    async with Relay(targets=[target(a, "a"), target(b, "b")], middleware=[otel]) as relay:
        await relay.acomplete(messages=HI)
    (call,) = [span for span in exporter.get_finished_spans() if span.parent is None]
    assert call.attributes is not None
    route = list(call.attributes["relaykit.route"])  # type: ignore[arg-type]
    assert route[0].startswith("a: failed (ProviderError 500") and route[1] == "b: answered"
