"""Logging: one line per successful call, a line per failure, no content or secrets by default."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from relaykit import Cache, OpenAICompatible, Relay, Target
from relaykit.contract.errors import ProviderError, RelayError
from relaykit.contract.events import (
    CacheHit,
    CacheMiss,
    CircuitClosed,
    CircuitOpened,
    RateLimited,
    Retrying,
)
from relaykit.contract.schema import ChatRequest
from relaykit.observability.logging import Logging
from relaykit.testing import FakeClock, FakeProvider, FunctionBackend, Reply

HI = [{"role": "user", "content": "hi"}]
SECRET_KEY = "sk-live-DO-NOT-LOG-9f8e7d6c5b4a"


@pytest.fixture
def min_level() -> Iterator[Any]:
    """Set structlog's level filter the way an app would; restores the config afterwards."""
    was_configured = structlog.is_configured()
    old = structlog.get_config()

    def set_level(level: int) -> None:
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(level))

    set_level(logging.INFO)
    yield set_level
    if was_configured:
        structlog.configure(**old)
    else:
        structlog.reset_defaults()


@pytest.fixture
def logs(min_level: Any) -> Iterator[list[dict[str, Any]]]:
    with capture_logs() as captured:
        yield captured


def events(captured: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(entry["log_level"], entry["event"]) for entry in captured]


def all_text(value: Any) -> Iterator[str]:
    """Every string inside a captured log value, however deeply nested."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from all_text(item)
    elif isinstance(value, list | tuple | set):
        for item in value:
            yield from all_text(item)
    else:
        yield str(value)


def named(provider: FakeProvider, name: str, **options: Any) -> Target:
    options.setdefault("api_key", "sk-test")
    return Target(OpenAICompatible(provider.url, model=f"{name}-model", **options), name=name)


async def test_a_successful_call_logs_exactly_one_line_at_info(provider, backend, logs) -> None:
    async with Relay(targets=[backend(provider)], middleware=[Logging()]) as relay:
        answer = await relay.acomplete(messages=HI, tenant="acme")
    assert answer.content == "Hello from FakeProvider."
    assert events(logs) == [("info", "relaykit.completed")]
    line = logs[0]
    assert answer.relay is not None and line["target"] == answer.relay.target
    assert line["model"] == answer.model
    assert (line["prompt_tokens"], line["completion_tokens"], line["total_tokens"]) == (10, 3, 13)
    assert (line["attempts"], line["tenant"], line["cached"], line["stream"]) == (
        1,
        "acme",
        False,
        False,
    )
    assert "messages" not in line and "answer" not in line
    assert provider.request_count == 1


async def test_latency_is_measured_on_the_relays_clock(logs) -> None:
    clock = FakeClock()

    async def slow(request: ChatRequest) -> str:
        await clock.sleep(0.25)
        return "done"

    relay = Relay(targets=[FunctionBackend(slow, name="fn")], middleware=[Logging()], clock=clock)
    await relay.acomplete(messages=HI)
    assert logs[0]["latency_ms"] == pytest.approx(250.0)
    assert logs[0]["target"] == "fn"


async def test_fallback_logs_the_failure_the_move_and_the_completion(logs) -> None:
    async with FakeProvider() as first, FakeProvider() as second:
        first.script(Reply.error(503, "upstream overloaded"))
        relay = Relay(
            targets=[named(first, "first"), named(second, "second")], middleware=[Logging()]
        )
        async with relay:
            answer = await relay.acomplete(messages=HI)
        assert (first.request_count, second.request_count) == (1, 1)
    assert answer.relay is not None and answer.relay.target == "second"
    assert events(logs) == [
        ("warning", "relaykit.attempt_failed"),
        ("warning", "relaykit.falling_back"),
        ("info", "relaykit.completed"),
    ]
    failed, moved, completed = logs
    assert (failed["target"], failed["attempt"]) == ("first", 1)
    assert (failed["error_type"], failed["status"]) == ("ProviderError", 503)
    assert "first" in failed["error"]
    assert (moved["target"], moved["to_target"], moved["error_type"]) == (
        "first",
        "second",
        "ProviderError",
    )
    assert (completed["target"], completed["attempts"], completed["model"]) == (
        "second",
        2,
        "second-model",
    )


async def test_message_content_is_not_logged_by_default(provider, backend, logs) -> None:
    provider.script(Reply.ok("the secret answer"))
    async with Relay(targets=[backend(provider)], middleware=[Logging()]) as relay:
        await relay.acomplete(messages=[{"role": "user", "content": "my private question"}])
    text = " ".join(all_text(logs))
    assert "my private question" not in text
    assert "the secret answer" not in text


async def test_content_true_adds_messages_and_answer_to_the_completion_line(
    provider, backend, logs
) -> None:
    provider.script(Reply.ok("the answer"))
    async with Relay(targets=[backend(provider)], middleware=[Logging(content=True)]) as relay:
        await relay.acomplete(messages=[{"role": "user", "content": "the question"}], tenant="t1")
    assert events(logs) == [("info", "relaykit.completed")]
    line = logs[0]
    assert line["messages"] == [{"role": "user", "content": "the question"}]
    assert line["answer"] == "the answer"
    assert (line["attempts"], line["tenant"], line["cached"], line["total_tokens"]) == (
        1,
        "t1",
        False,
        12,
    )


async def test_content_true_names_the_target_a_cache_hit_came_from_like_the_plain_line(
    provider, backend, logs
) -> None:
    lines = []
    for content in (False, True):
        logs.clear()
        relay = Relay(
            targets=[named(provider, "primary")],
            middleware=[Logging(content=content), Cache(ttl_s=60)],
        )
        async with relay:
            await relay.acomplete(messages=HI)
            await relay.acomplete(messages=HI)  # a hit
        lines.append(logs[-1])
    plain, with_content = lines
    for line in (plain, with_content):
        assert (line["target"], line["cached"], line["attempts"]) == ("primary", True, 0)


async def test_content_true_on_a_stream_logs_the_assembled_answer_once_consumed(
    provider, backend, logs
) -> None:
    provider.script(Reply.ok("streamed words here", chunk_size=1))
    async with Relay(targets=[backend(provider)], middleware=[Logging(content=True)]) as relay:
        stream = await relay.astream(messages=HI)
        assert logs == []
        completion = await stream.completion()
    assert completion.content == "streamed words here"
    assert events(logs) == [("info", "relaykit.completed")]
    assert logs[0]["answer"] == "streamed words here"
    assert logs[0]["stream"] is True


async def test_streamed_call_logs_one_line_after_the_stream_ends_with_usage(
    provider, backend, logs
) -> None:
    async with Relay(targets=[backend(provider)], middleware=[Logging()]) as relay:
        stream = relay.astream(messages=HI, stream_options={"include_usage": True})
        first = await anext(stream)
        assert first is not None and logs == []
        async for _ in stream:
            pass
    assert events(logs) == [("info", "relaykit.completed")]
    assert logs[0]["stream"] is True
    assert (logs[0]["prompt_tokens"], logs[0]["completion_tokens"]) == (10, 3)


async def test_a_stream_closed_early_logs_no_completion(provider, backend, logs) -> None:
    provider.script(Reply.ok("one two three four", chunk_size=1))
    relay = Relay(targets=[backend(provider)], middleware=[Logging(content=True)])
    async with relay, relay.astream(messages=HI) as stream:
        await anext(stream)
    assert events(logs) == []


async def test_api_key_and_headers_never_appear_in_any_line(min_level) -> None:
    min_level(logging.DEBUG)
    async with FakeProvider() as first, FakeProvider() as second:
        first.default = Reply.auth_error()
        second.script(Reply.error(503))
        targets = [
            named(first, "first", api_key=SECRET_KEY),
            named(second, "second", api_key=SECRET_KEY),
        ]
        logging_ = Logging(content=True, verbose=True)
        async with Relay(targets=targets, middleware=[logging_]) as relay:
            with capture_logs() as captured:
                with pytest.raises(Exception):  # noqa: B017 - any error; only the logs matter
                    await relay.acomplete(messages=HI, extra_headers={"X-Token": "hdr-secret-1"})
                await relay.acomplete(messages=HI, extra_headers={"X-Token": "hdr-secret-1"})
                stream = relay.astream(messages=HI, extra_headers={"X-Token": "hdr-secret-1"})
                await stream.completion()
        assert (first.request_count, second.request_count) == (3, 3)
        assert first.requests[0].header("Authorization") == f"Bearer {SECRET_KEY}"
        assert second.requests[2].header("X-Token") == "hdr-secret-1"
    kinds = {entry["event"] for entry in captured}
    assert {"relaykit.attempt_failed", "relaykit.falling_back", "relaykit.completed"} <= kinds
    assert "relaykit.attempt_started" in kinds  # debug lines were on, and were scanned too
    for text in all_text(captured):
        assert SECRET_KEY not in text
        assert "hdr-secret-1" not in text


async def test_verbose_debug_lines_appear_when_the_app_enables_debug(min_level) -> None:
    min_level(logging.DEBUG)
    relay = Relay(
        targets=[FunctionBackend(lambda r: "ok", name="fn")], middleware=[Logging(verbose=True)]
    )
    with capture_logs() as captured:
        await relay.acomplete(messages=HI)
    assert events(captured) == [
        ("debug", "relaykit.attempt_started"),
        ("debug", "relaykit.attempt_ok"),
        ("info", "relaykit.completed"),
    ]
    assert (captured[0]["target"], captured[0]["attempt"]) == ("fn", 1)


async def test_without_verbose_a_call_logs_only_its_completion_even_at_debug(min_level) -> None:
    min_level(logging.DEBUG)
    relay = Relay(targets=[FunctionBackend(lambda r: "ok", name="fn")], middleware=[Logging()])
    with capture_logs() as captured:
        await relay.acomplete(messages=HI)
    assert events(captured) == [("info", "relaykit.completed")]


async def test_reconfiguring_structlog_after_building_the_relay_takes_effect(min_level) -> None:
    relay = Relay(
        targets=[FunctionBackend(lambda r: "ok", name="fn")], middleware=[Logging(verbose=True)]
    )
    with capture_logs() as captured:
        await relay.acomplete(messages=HI)
        min_level(logging.DEBUG)
        await relay.acomplete(messages=HI)
        min_level(logging.ERROR)
        await relay.acomplete(messages=HI)
    assert [event for _, event in events(captured)] == [
        "relaykit.completed",
        "relaykit.attempt_started",
        "relaykit.attempt_ok",
        "relaykit.completed",
    ]


async def test_a_logger_structlog_caches_keeps_its_configuration_like_the_apps_own(
    min_level: Any,
) -> None:
    # With cache_logger_on_first_use, structlog fixes a logger's configuration at its first
    # use; Logging's logger follows the same rule as the app's own loggers.
    lines: list[str] = []

    class Lines:
        def msg(self, message: str) -> None:
            lines.append(message)

        info = error = msg

    structlog.configure(
        processors=[structlog.processors.JSONRenderer()],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=lambda *args: Lines(),
        cache_logger_on_first_use=True,
    )
    app_log = structlog.get_logger("app")
    relay = Relay(targets=[FunctionBackend(lambda r: "ok", name="fn")], middleware=[Logging()])
    app_log.info("app.first")
    await relay.acomplete(messages=HI)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    app_log.info("app.second")
    await relay.acomplete(messages=HI)
    events_written = [json.loads(line)["event"] for line in lines]
    assert events_written == [
        "app.first", "relaykit.completed", "app.second", "relaykit.completed"
    ]  # fmt: skip


class RecordingLogger:
    """A logger with a level filter that records what reached it."""

    def __init__(self, min_level: int) -> None:
        self.min_level = min_level
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    def is_enabled_for(self, level: int) -> bool:
        return level >= self.min_level

    def _record(self, level: str, event: str, **fields: Any) -> None:
        self.calls.append((level, event, fields))

    def debug(self, event: str, **fields: Any) -> None:
        self._record("debug", event, **fields)

    def info(self, event: str, **fields: Any) -> None:
        self._record("info", event, **fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._record("warning", event, **fields)


async def test_disabled_levels_never_reach_the_logger() -> None:
    logger = RecordingLogger(logging.INFO)
    relay = Relay(
        targets=[FunctionBackend(lambda r: "ok", name="fn")],
        middleware=[Logging(logger=logger)],  # type: ignore[arg-type]
    )
    await relay.acomplete(messages=HI)
    assert [(level, event) for level, event, _ in logger.calls] == [("info", "relaykit.completed")]


async def test_completion_level_is_configurable() -> None:
    logger = RecordingLogger(logging.DEBUG)
    relay = Relay(
        targets=[FunctionBackend(lambda r: "ok", name="fn")],
        middleware=[Logging(logger=logger, level="debug")],  # type: ignore[arg-type]
    )
    await relay.acomplete(messages=HI)
    assert [(level, event) for level, event, _ in logger.calls][-1] == (
        "debug",
        "relaykit.completed",
    )


def test_policy_events_are_logged_at_their_levels(logs) -> None:
    log = Logging(verbose=True)
    log.on_event(Retrying("a", 1, 0.5, ProviderError("answered 503", status=503, target="a")))
    log.on_event(CircuitOpened("a", 30.0, "5 consecutive failures"))
    log.on_event(RateLimited("a", 1.5, "rpm"))
    log.on_event(CircuitClosed("a"))
    log.on_event(CacheHit("k1", 3.0))
    log.on_event(CacheMiss("k2"))
    assert events(logs) == [
        ("warning", "relaykit.retrying"),
        ("warning", "relaykit.circuit_opened"),
        ("warning", "relaykit.rate_limited"),
        ("info", "relaykit.circuit_closed"),
    ]
    retry, opened, limited, _ = logs
    assert (retry["delay_s"], retry["status"], retry["error_type"]) == (0.5, 503, "ProviderError")
    assert (opened["cooldown_s"], opened["reason"]) == (30.0, "5 consecutive failures")
    assert (limited["wait_s"], limited["limit"]) == (1.5, "rpm")


def test_cache_events_are_debug_lines(min_level) -> None:
    min_level(logging.DEBUG)
    with capture_logs() as captured:
        log = Logging(verbose=True)
        log.on_event(CacheHit("k1", 3.0))
        log.on_event(CacheMiss("k2"))
    assert events(captured) == [("debug", "relaykit.cache_hit"), ("debug", "relaykit.cache_miss")]
    assert (captured[0]["key"], captured[0]["age_s"]) == ("k1", 3.0)


def test_sync_api_logs_one_line(logs) -> None:
    with Relay(targets=[FunctionBackend(lambda r: "ok", name="fn")], middleware=[Logging()]) as r:
        r.complete(messages=HI)
        assert "".join(c.choices[0].delta.content or "" for c in r.stream(messages=HI)) == "ok"
    assert events(logs) == [("info", "relaykit.completed"), ("info", "relaykit.completed")]
    assert [line["stream"] for line in logs] == [False, True]


@pytest.mark.parametrize("level", ["verbose", "", "INFO2"])
def test_unknown_level_is_rejected_at_construction(level: str) -> None:
    with pytest.raises(ValueError, match="level must be one of 'debug', 'info'"):
        Logging(level=level)


def test_level_names_are_case_insensitive() -> None:
    assert Logging(level="WARNING").level == "warning"


async def test_a_failed_call_logs_one_error_line_with_what_the_caller_got(logs) -> None:
    async with FakeProvider() as provider:
        provider.script(Reply.quota())
        async with Relay(targets=[named(provider, "only")], middleware=[Logging()]) as relay:
            with pytest.raises(RelayError):
                await relay.acomplete(messages=HI)
    assert events(logs) == [
        ("warning", "relaykit.attempt_failed"),
        ("error", "relaykit.failed"),
    ]
    failed = logs[-1]
    assert (failed["error_type"], failed["status"], failed["attempts"]) == (
        "QuotaExceededError",
        429,
        1,
    )


async def test_a_call_refused_before_any_request_is_still_logged(logs) -> None:
    from relaykit import CircuitBreaker, CircuitOpenError

    async def broken(request: ChatRequest) -> str:
        raise ProviderError("answered 503", status=503)

    guarded = Target(FunctionBackend(broken, name="only"), middleware=[CircuitBreaker(failures=1)])
    relay = Relay(targets=[guarded], middleware=[Logging()], clock=FakeClock())
    with pytest.raises(ProviderError):
        await relay.acomplete(messages=HI)
    logs.clear()
    with pytest.raises(CircuitOpenError):
        await relay.acomplete(messages=HI)
    assert events(logs) == [("error", "relaykit.failed")]
    assert logs[0]["error_type"] == "CircuitOpenError" and logs[0]["attempts"] == 0


async def test_a_broken_stream_logs_a_failed_line_not_a_completed_one(logs) -> None:
    from relaykit import StreamInterruptedError

    async with FakeProvider() as provider:
        provider.script(Reply.ok("one two three four").drop_after(3))
        async with Relay(targets=[named(provider, "only")], middleware=[Logging()]) as relay:
            stream = await relay.astream(messages=HI)
            with pytest.raises(StreamInterruptedError):
                await stream.completion()
    assert events(logs) == [("error", "relaykit.failed")]
    assert logs[0]["stream"] is True
