"""OpenTelemetry: a span per call, a child span per attempt, GenAI attributes, route facts."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from relaykit import (
    AllTargetsFailedError,
    Cache,
    ChatCompletion,
    Fallback,
    OpenAICompatible,
    ProviderTimeout,
    Relay,
    StreamInterruptedError,
    Target,
)
from relaykit.contract.pipeline import CallContext, Handler, Response
from relaykit.contract.schema import ChatRequest
from relaykit.observability.telemetry import OpenTelemetry
from relaykit.testing import FakeClock, FakeProvider, FunctionBackend, Reply

HI = [{"role": "user", "content": "hi"}]


class Traces:
    """A private TracerProvider whose finished spans land in memory (no global provider)."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))

    def otel(self, **options: Any) -> OpenTelemetry:
        return OpenTelemetry(tracer_provider=self.provider, **options)

    @property
    def spans(self) -> tuple[ReadableSpan, ...]:
        return self.exporter.get_finished_spans()

    def calls(self) -> list[ReadableSpan]:
        return [span for span in self.spans if span.parent is None]

    def attempts(self, call: ReadableSpan) -> list[ReadableSpan]:
        children = [
            span
            for span in self.spans
            if span.parent is not None and span.parent.span_id == call.context.span_id
        ]
        return sorted(children, key=lambda span: attr(span, "relaykit.attempt"))


def attr(span: ReadableSpan, name: str) -> Any:
    assert span.attributes is not None
    value = span.attributes.get(name)
    return tuple(value) if isinstance(value, list | tuple) else value


@pytest.fixture
def traces() -> Traces:
    return Traces()


def named(provider: FakeProvider, name: str) -> Target:
    backend = OpenAICompatible(provider.url, api_key="sk-test", model=f"{name}-model")
    return Target(backend, name=name)


async def test_a_call_is_one_client_span_with_one_attempt_span(provider, traces) -> None:
    relay = Relay(targets=[named(provider, "main")], middleware=[traces.otel()])
    async with relay:
        answer = await relay.acomplete(
            messages=HI, model="gpt-4o-mini", temperature=0.5, top_p=0.9, max_tokens=50
        )
    assert provider.request_count == 1
    [call] = traces.calls()
    [attempt] = traces.attempts(call)
    assert len(traces.spans) == 2
    assert (call.name, call.kind) == ("chat gpt-4o-mini", SpanKind.CLIENT)
    assert call.status.status_code == StatusCode.UNSET
    expected = {
        "gen_ai.operation.name": "chat",
        "gen_ai.system": "openai",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.request.temperature": 0.5,
        "gen_ai.request.top_p": 0.9,
        "gen_ai.request.max_tokens": 50,
        "gen_ai.response.model": answer.model,
        "gen_ai.response.id": answer.id,
        "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.usage.input_tokens": 10,
        "gen_ai.usage.output_tokens": 3,
        "relaykit.target": "main",
        "relaykit.attempt": 1,
        "relaykit.cached": False,
        "relaykit.fallback": False,
    }
    assert {name: attr(call, name) for name in expected} == expected
    assert attempt.kind == SpanKind.CLIENT
    assert attempt.status.status_code == StatusCode.UNSET
    assert (attr(attempt, "relaykit.target"), attr(attempt, "relaykit.attempt")) == (
        "main",
        1,
    )
    assert attr(attempt, "gen_ai.request.model") == "main-model"  # what the target sent
    assert attr(attempt, "gen_ai.usage.output_tokens") == 3
    assert attr(attempt, "gen_ai.response.id") == answer.id
    assert attempt.start_time >= call.start_time and attempt.end_time <= call.end_time  # type: ignore[operator]


async def test_unset_request_parameters_are_not_recorded(provider, traces) -> None:
    relay = Relay(targets=[named(provider, "main")], middleware=[traces.otel()])
    async with relay:
        await relay.acomplete(messages=HI)
    [call] = traces.calls()
    assert call.name == "chat"
    assert call.attributes is not None
    for name in ("gen_ai.request.temperature", "gen_ai.request.top_p", "gen_ai.request.max_tokens"):
        assert name not in call.attributes


async def test_fallback_gives_two_attempt_spans_and_marks_the_route(traces) -> None:
    async with FakeProvider() as first, FakeProvider() as second:
        first.script(Reply.error(503, "overloaded"))
        relay = Relay(
            targets=[named(first, "first"), named(second, "second")], middleware=[traces.otel()]
        )
        async with relay:
            answer = await relay.acomplete(messages=HI)
        assert (first.request_count, second.request_count) == (1, 1)
    [call] = traces.calls()
    failed, answered = traces.attempts(call)
    assert answer.relay is not None and answer.relay.target == "second"
    assert (attr(call, "relaykit.target"), attr(call, "relaykit.attempt")) == ("second", 2)
    assert attr(call, "relaykit.fallback") is True
    assert attr(call, "gen_ai.system") == "openai"
    assert attr(call, "relaykit.target") == "second"
    assert call.status.status_code == StatusCode.UNSET
    assert [event.name for event in call.events] == ["relaykit.fallback"]
    assert (attr(failed, "relaykit.target"), attr(failed, "error.type")) == (
        "first",
        "ProviderError",
    )
    assert failed.status.status_code == StatusCode.ERROR
    assert "503" in (failed.status.description or "")
    assert (attr(answered, "relaykit.target"), answered.status.status_code) == (
        "second",
        StatusCode.UNSET,
    )
    assert attr(answered, "gen_ai.response.model") == "second-model"
    assert failed.end_time <= answered.start_time  # type: ignore[operator]


async def test_a_failed_call_has_error_status_and_type(traces) -> None:
    async with FakeProvider() as first, FakeProvider() as second:
        first.script(Reply.error(503))
        second.script(Reply.quota())
        relay = Relay(
            targets=[named(first, "first"), named(second, "second")], middleware=[traces.otel()]
        )
        async with relay:
            with pytest.raises(AllTargetsFailedError):
                await relay.acomplete(messages=HI)
    [call] = traces.calls()
    assert call.status.status_code == StatusCode.ERROR
    assert attr(call, "error.type") == "AllTargetsFailedError"
    assert attr(call, "relaykit.fallback") is True
    assert [attr(span, "error.type") for span in traces.attempts(call)] == [
        "ProviderError",
        "QuotaExceededError",
    ]
    assert any(event.name == "exception" for event in call.events)


async def test_a_stream_span_ends_when_the_stream_is_consumed_with_usage(provider, traces) -> None:
    provider.script(Reply.ok("one two three", chunk_size=1))
    relay = Relay(targets=[named(provider, "main")], middleware=[traces.otel()])
    async with relay:
        stream = await relay.astream(messages=HI, stream_options={"include_usage": True})
        assert traces.spans == ()
        completion = await stream.completion()
    assert completion.content == "one two three"
    [call] = traces.calls()
    [attempt] = traces.attempts(call)
    assert attr(call, "relaykit.stream") is True
    assert (attr(call, "gen_ai.usage.input_tokens"), attr(call, "gen_ai.usage.output_tokens")) == (
        10,
        3,
    )
    assert attr(call, "gen_ai.response.finish_reasons") == ("stop",)
    assert attr(call, "gen_ai.response.id") == completion.id
    assert attempt.end_time <= call.end_time  # type: ignore[operator]


async def test_a_continued_stream_has_a_span_for_the_continuing_attempt(traces) -> None:
    async with FakeProvider() as first, FakeProvider() as second:
        first.script(Reply.ok("one two three four").drop_after(3))
        second.script(Reply.ok(" three four"))
        relay = Relay(
            targets=[named(first, "first"), named(second, "second")],
            middleware=[traces.otel()],
            strategy=Fallback(continue_streams=True),
        )
        async with relay:
            answer = await relay.astream(messages=HI).completion()
        assert (first.request_count, second.request_count) == (1, 1)

    assert answer.content == "one two three four"
    [call] = traces.calls()
    broken, continuing = traces.attempts(call)
    assert (attr(broken, "relaykit.target"), broken.status.status_code) == (
        "first",
        StatusCode.ERROR,
    )
    assert (attr(continuing, "relaykit.target"), attr(continuing, "relaykit.attempt")) == (
        "second",
        2,
    )
    assert continuing.status.status_code == StatusCode.UNSET
    assert broken.end_time <= continuing.start_time <= call.end_time  # type: ignore[operator]


async def test_a_broken_stream_marks_the_call_span_as_failed(provider, traces) -> None:
    provider.script(Reply.ok("one two three four", chunk_size=1).drop_after(2))
    relay = Relay(targets=[named(provider, "main")], middleware=[traces.otel()])
    async with relay:
        with pytest.raises(StreamInterruptedError):
            await relay.astream(messages=HI).completion()
    [call] = traces.calls()
    [attempt] = traces.attempts(call)
    assert call.status.status_code == StatusCode.ERROR
    assert attr(call, "error.type") == "StreamInterruptedError"
    # The attempt committed its stream, then broke: it failed too.
    assert attempt.status.status_code == StatusCode.ERROR
    assert attr(attempt, "error.type") == "StreamInterruptedError"


async def test_a_stream_closed_early_still_ends_its_span(provider, traces) -> None:
    provider.script(Reply.ok("one two three four", chunk_size=1))
    relay = Relay(targets=[named(provider, "main")], middleware=[traces.otel()])
    async with relay, relay.astream(messages=HI) as stream:
        await anext(stream)
    [call] = traces.calls()
    assert attr(call, "relaykit.stream.closed_early") is True
    assert call.status.status_code == StatusCode.UNSET


async def test_content_is_recorded_only_when_asked(traces) -> None:
    backend = FunctionBackend(lambda request: "the answer", name="fn")
    plain = Relay(targets=[backend], middleware=[traces.otel()])
    await plain.acomplete(messages=[{"role": "user", "content": "the question"}])
    capturing = Relay(targets=[backend], middleware=[traces.otel(capture_content=True)])
    await capturing.acomplete(messages=[{"role": "user", "content": "the question"}])
    without, with_content = traces.calls()
    assert without.attributes is not None
    assert "gen_ai.input.messages" not in without.attributes
    assert "gen_ai.output.messages" not in without.attributes
    assert json.loads(attr(with_content, "gen_ai.input.messages")) == [
        {"role": "user", "parts": [{"type": "text", "content": "the question"}]}
    ]
    assert json.loads(attr(with_content, "gen_ai.output.messages")) == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": "the answer"}],
            "finish_reason": "stop",
        }
    ]


async def test_the_call_span_is_current_inside_the_call(traces) -> None:
    seen: list[trace.SpanContext] = []

    async def answer(request: ChatRequest) -> str:
        seen.append(trace.get_current_span().get_span_context())
        return "ok"

    relay = Relay(targets=[FunctionBackend(answer, name="fn")], middleware=[traces.otel()])
    await relay.acomplete(messages=HI)
    [call] = traces.calls()
    assert seen[0].span_id == call.context.span_id
    assert trace.get_current_span() is trace.INVALID_SPAN  # nothing left attached


async def test_concurrent_calls_keep_their_attempts_apart(traces) -> None:
    clock = FakeClock()

    async def answer(request: ChatRequest) -> str:
        await asyncio.sleep(0)  # interleave the two calls
        return str(request.messages[0].content)

    relay = Relay(
        targets=[FunctionBackend(answer, name="fn")], middleware=[traces.otel()], clock=clock
    )
    await asyncio.gather(
        relay.acomplete(messages=[{"role": "user", "content": "a"}], temperature=0.1),
        relay.acomplete(messages=[{"role": "user", "content": "b"}], temperature=0.2),
    )
    calls = traces.calls()
    assert len(calls) == 2 and len(traces.spans) == 4
    for call in calls:
        [attempt] = traces.attempts(call)
        assert attempt.context.trace_id == call.context.trace_id


async def test_a_cache_hit_is_marked_cached_with_no_attempt(traces) -> None:
    cached = ChatCompletion.model_validate(
        {
            "id": "chatcmpl-cached",
            "model": "m",
            "choices": [
                {"message": {"role": "assistant", "content": "old"}, "finish_reason": "stop"}
            ],
        }
    )

    async def cache(request: ChatRequest, ctx: CallContext, call_next: Handler) -> Response:
        return cached

    calls: list[ChatRequest] = []
    backend = FunctionBackend(lambda request: calls.append(request) or "new", name="fn")
    relay = Relay(targets=[backend], middleware=[traces.otel(), cache])
    answer = await relay.acomplete(messages=HI)
    assert answer.content == "old" and calls == []
    [span] = traces.spans
    assert (attr(span, "relaykit.cached"), attr(span, "relaykit.attempt")) == (True, 0)
    assert attr(span, "gen_ai.response.id") == "chatcmpl-cached"


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
async def test_a_cache_hit_span_names_the_target_that_gave_the_answer(
    provider, traces, stream: bool
) -> None:
    relay = Relay(targets=[named(provider, "main")], middleware=[traces.otel(), Cache()])
    async with relay:
        await relay.acomplete(messages=HI)
        if stream:
            await relay.astream(messages=HI).completion()
        else:
            await relay.acomplete(messages=HI)
    assert provider.request_count == 1
    _, hit = traces.calls()
    assert traces.attempts(hit) == []
    assert (attr(hit, "relaykit.cached"), attr(hit, "relaykit.target")) == (True, "main")


async def test_an_attempt_cut_off_by_a_timeout_ends_with_its_error(traces) -> None:
    clock = FakeClock()

    async def hangs(request: ChatRequest) -> str:
        await clock.sleep(10)
        return "too late"

    async def attempt_timeout(
        request: ChatRequest, ctx: CallContext, call_next: Handler
    ) -> Response:
        try:
            async with ctx.clock.timeout(1.0):
                return await call_next(request, ctx)
        except TimeoutError:
            raise ProviderTimeout("did not answer within 1.0 s", target=ctx.target) from None

    slow = Target(FunctionBackend(hangs, name="slow"), middleware=[attempt_timeout])
    fast = FunctionBackend(lambda request: "fast", name="fast")
    relay = Relay(targets=[slow, fast], middleware=[traces.otel()], clock=clock)
    answer = await relay.acomplete(messages=HI)
    assert answer.content == "fast"
    [call] = traces.calls()
    cut, answered = traces.attempts(call)
    assert (attr(cut, "relaykit.target"), attr(cut, "error.type")) == (
        "slow",
        "ProviderTimeout",
    )
    assert cut.status.status_code == StatusCode.ERROR
    assert attr(answered, "relaykit.target") == "fast"


async def test_two_relays_never_mix_their_spans() -> None:
    one, two = Traces(), Traces()
    a = Relay(targets=[FunctionBackend(lambda r: "a", name="a")], middleware=[one.otel()])
    b = Relay(targets=[FunctionBackend(lambda r: "b", name="b")], middleware=[two.otel()])
    await a.acomplete(messages=HI)
    await b.acomplete(messages=HI)
    assert {attr(span, "relaykit.target") for span in one.spans} == {"a"}
    assert {attr(span, "relaykit.target") for span in two.spans} == {"b"}


def test_missing_opentelemetry_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    with pytest.raises(ImportError, match=r"pip install relaykit\[otel\]"):
        OpenTelemetry()
