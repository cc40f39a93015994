"""RateLimit: a target stays within its rpm/tpm without sending the request that would get a 429."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Any

import pytest

from relaykit import (
    CallContext,
    ChatRequest,
    CircuitOpenError,
    FunctionBackend,
    Handler,
    LocalRateLimitError,
    OpenAICompatible,
    Relay,
    Retry,
    Target,
    Timeout,
)
from relaykit.contract.events import Event, FallingBack, RateLimited
from relaykit.contract.pipeline import Response
from relaykit.middleware.rate_limit import RateLimit
from relaykit.stores.rate_limit import GRANTED, Bucket, MemoryRateLimitStore, RateLimitStore
from relaykit.testing import FakeProvider
from relaykit.testing.clock import FakeClock

BackendFactory = Callable[..., OpenAICompatible]

HI = [{"role": "user", "content": "hi"}]


class Counting:
    """An in-process backend function that counts calls and answers with a chosen usage."""

    def __init__(self, clock: FakeClock, *, total_tokens: int | None = None) -> None:
        self.clock = clock
        self.total_tokens = total_tokens
        self.calls: list[float] = []

    async def answer(self, request: ChatRequest) -> dict[str, Any] | str:
        self.calls.append(self.clock.now())
        await asyncio.sleep(0)  # let concurrent calls interleave
        if self.total_tokens is None:
            return "ok"
        return {
            "id": "c1",
            "object": "chat.completion",
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "ok"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": 1,
                "completion_tokens": self.total_tokens - 1,
                "total_tokens": self.total_tokens,
            },
        }


def relay_with(limit: RateLimit, clock: FakeClock, fn: Counting, **options: Any) -> Relay:
    target = Target(FunctionBackend(fn.answer, name="primary"), name="primary", middleware=[limit])
    return Relay(targets=[target], clock=clock, **options)


# --- requests per minute -----------------------------------------------------------------------


async def test_a_full_minutes_budget_passes_at_once_and_the_next_call_is_refused_without_a_request(
    provider: FakeProvider, backend: BackendFactory
) -> None:
    clock = FakeClock()
    relay = Relay(
        targets=[Target(backend(provider), name="primary", middleware=[RateLimit(rpm=60)])],
        clock=clock,
    )
    for _ in range(60):
        await relay.acomplete(messages=HI)

    with pytest.raises(LocalRateLimitError) as caught:
        await relay.acomplete(messages=HI)

    assert provider.request_count == 60
    assert caught.value.target == "primary"
    assert caught.value.retry_after == pytest.approx(1.0)
    assert str(caught.value) == (
        "target 'primary' is over its local limit of 60 requests/min; next slot in 1.0 s. "
        "Raise RateLimit(max_wait_s=...) to queue instead"
    )
    assert clock.sleeps == []


async def test_one_more_call_passes_once_a_slot_has_refilled() -> None:
    clock = FakeClock()
    fn = Counting(clock)
    relay = relay_with(RateLimit(rpm=60), clock, fn)
    for _ in range(60):
        await relay.acomplete(messages=HI)

    clock.advance(1.0)
    await relay.acomplete(messages=HI)
    with pytest.raises(LocalRateLimitError):
        await relay.acomplete(messages=HI)

    assert len(fn.calls) == 61


async def test_burst_of_one_spaces_requests_evenly() -> None:
    clock = FakeClock()
    fn = Counting(clock)
    relay = relay_with(RateLimit(rpm=60, burst=1, max_wait_s=5), clock, fn)

    for _ in range(3):
        await relay.acomplete(messages=HI)

    start = fn.calls[0]
    assert [t - start for t in fn.calls] == pytest.approx([0.0, 1.0, 2.0])
    assert clock.sleeps == pytest.approx([1.0, 1.0])


async def test_burst_of_one_refuses_the_second_immediate_call() -> None:
    clock = FakeClock()
    fn = Counting(clock)
    relay = relay_with(RateLimit(rpm=120, burst=1), clock, fn)
    await relay.acomplete(messages=HI)

    with pytest.raises(LocalRateLimitError) as caught:
        await relay.acomplete(messages=HI)

    assert caught.value.retry_after == pytest.approx(0.5)
    assert len(fn.calls) == 1


async def test_max_wait_queues_the_call_instead_of_raising() -> None:
    clock = FakeClock()
    fn = Counting(clock)
    relay = relay_with(RateLimit(rpm=60, max_wait_s=2), clock, fn)
    for _ in range(60):
        await relay.acomplete(messages=HI)

    answer = await relay.acomplete(messages=HI)

    assert answer.content == "ok"
    assert clock.sleeps == pytest.approx([1.0])
    assert len(fn.calls) == 61


async def test_a_wait_longer_than_max_wait_is_refused_at_once() -> None:
    clock = FakeClock()
    fn = Counting(clock)
    relay = relay_with(RateLimit(rpm=60, burst=1, max_wait_s=0.5), clock, fn)
    await relay.acomplete(messages=HI)

    with pytest.raises(LocalRateLimitError, match=r"longer than max_wait_s=0\.5") as caught:
        await relay.acomplete(messages=HI)

    assert caught.value.retry_after == pytest.approx(1.0)
    assert clock.sleeps == []
    assert len(fn.calls) == 1


async def test_a_wait_never_crosses_the_calls_deadline() -> None:
    async def deadline_in_half_a_second(
        request: ChatRequest, ctx: CallContext, call_next: Handler
    ) -> Response:
        ctx.bounds = ctx.bounds.within(deadline=ctx.clock.now() + 0.5)
        return await call_next(request, ctx)

    clock = FakeClock()
    fn = Counting(clock)
    relay = relay_with(
        RateLimit(rpm=60, burst=1, max_wait_s=10), clock, fn, middleware=[deadline_in_half_a_second]
    )
    await relay.acomplete(messages=HI)

    with pytest.raises(LocalRateLimitError, match=r"after the call's deadline \(0\.5 s left\)"):
        await relay.acomplete(messages=HI)

    assert clock.sleeps == []
    assert len(fn.calls) == 1


async def test_a_wait_within_the_deadline_goes_ahead() -> None:
    async def deadline_in_two_seconds(
        request: ChatRequest, ctx: CallContext, call_next: Handler
    ) -> Response:
        ctx.bounds = ctx.bounds.within(deadline=ctx.clock.now() + 2)
        return await call_next(request, ctx)

    clock = FakeClock()
    fn = Counting(clock)
    relay = relay_with(
        RateLimit(rpm=60, burst=1, max_wait_s=10), clock, fn, middleware=[deadline_in_two_seconds]
    )
    await relay.acomplete(messages=HI)
    await relay.acomplete(messages=HI)

    assert clock.sleeps == pytest.approx([1.0])
    assert len(fn.calls) == 2


async def test_a_call_cancelled_while_queued_gives_its_slot_back() -> None:
    clock = FakeClock(auto_advance=False)
    fn = Counting(clock)
    relay = relay_with(RateLimit(rpm=60, burst=1, max_wait_s=5), clock, fn)
    await relay.acomplete(messages=HI)
    queued = asyncio.create_task(relay.acomplete(messages=HI))
    for _ in range(5):
        await asyncio.sleep(0)
    assert clock.sleeps == [1.0]

    queued.cancel()
    with pytest.raises(asyncio.CancelledError):
        await queued
    clock.advance(1.0)
    after = asyncio.create_task(relay.acomplete(messages=HI))
    for _ in range(5):
        await asyncio.sleep(0)
    after.cancel()  # a no-op when it finished; stops it when it queued (the failure case)

    assert clock.sleeps == [1.0]  # had the cancelled call kept its slot, this one would queue
    assert after.done() and not after.cancelled()
    assert len(fn.calls) == 2


async def test_a_hundred_concurrent_calls_send_exactly_the_budget_upstream() -> None:
    clock = FakeClock()
    fn = Counting(clock)
    relay = relay_with(RateLimit(rpm=10), clock, fn)

    results = await asyncio.gather(
        *(relay.acomplete(messages=HI) for _ in range(100)), return_exceptions=True
    )

    refused = [r for r in results if isinstance(r, LocalRateLimitError)]
    assert len(fn.calls) == 10
    assert len(refused) == 90


async def test_concurrent_queued_calls_are_spaced_by_their_reservations() -> None:
    clock = FakeClock(auto_advance=False)
    fn = Counting(clock)
    relay = relay_with(RateLimit(rpm=60, burst=2, max_wait_s=10), clock, fn)

    calls = asyncio.gather(*(relay.acomplete(messages=HI) for _ in range(5)))
    for _ in range(10):
        await asyncio.sleep(0)
    assert sorted(clock.sleeps) == pytest.approx([1.0, 2.0, 3.0])
    for _ in range(3):
        clock.advance(1.0)
        for _ in range(10):
            await asyncio.sleep(0)
    await calls

    start = fn.calls[0]
    assert [t - start for t in fn.calls] == pytest.approx([0.0, 0.0, 1.0, 2.0, 3.0])


# --- tokens per minute -------------------------------------------------------------------------


async def test_a_request_whose_max_tokens_exceeds_tpm_can_never_pass() -> None:
    clock = FakeClock()
    fn = Counting(clock)
    relay = relay_with(RateLimit(tpm=1000, max_wait_s=60), clock, fn)

    with pytest.raises(LocalRateLimitError, match="can never pass") as caught:
        await relay.acomplete(messages=HI, max_tokens=5000)

    assert "from max_tokens" in str(caught.value)
    assert caught.value.retry_after is None
    assert clock.sleeps == []
    assert fn.calls == []


async def test_usage_smaller_than_the_estimate_gives_tokens_back() -> None:
    clock = FakeClock()
    fn = Counting(clock, total_tokens=20)
    relay = relay_with(RateLimit(tpm=1000), clock, fn)

    await relay.acomplete(messages=HI, max_tokens=600)
    await relay.acomplete(messages=HI, max_tokens=600)  # 2 x 600 would not fit without usage

    assert len(fn.calls) == 2


async def test_without_usage_the_estimate_stands() -> None:
    clock = FakeClock()
    fn = Counting(clock)  # answers with no usage
    relay = relay_with(RateLimit(tpm=1000), clock, fn)
    await relay.acomplete(messages=HI, max_tokens=600)

    with pytest.raises(LocalRateLimitError, match="1000 tokens/min"):
        await relay.acomplete(messages=HI, max_tokens=600)

    assert len(fn.calls) == 1


async def test_usage_larger_than_the_estimate_takes_the_difference() -> None:
    clock = FakeClock()
    fn = Counting(clock, total_tokens=900)
    relay = relay_with(RateLimit(tpm=1000), clock, fn)
    await relay.acomplete(messages=HI, max_tokens=10)

    with pytest.raises(LocalRateLimitError, match="1000 tokens/min") as caught:
        await relay.acomplete(messages=HI, max_tokens=200)

    assert caught.value.retry_after is not None and caught.value.retry_after > 0
    assert len(fn.calls) == 1


async def test_a_streams_reported_usage_settles_the_estimate_when_it_ends() -> None:
    clock = FakeClock()
    fn = Counting(clock, total_tokens=20)
    limit = RateLimit(tpm=1000)
    relay = relay_with(limit, clock, fn)

    stream = relay.astream(messages=HI, max_tokens=600, stream_options={"include_usage": True})
    assert (await stream.completion()).usage is not None
    await limit.aclose()  # waits for the settlement written as the stream ended
    await relay.acomplete(messages=HI, max_tokens=600)

    assert len(fn.calls) == 2


async def test_a_stream_without_usage_keeps_its_estimate(
    provider: FakeProvider, backend: BackendFactory
) -> None:
    clock = FakeClock()
    limit = RateLimit(tpm=1000)
    relay = Relay(
        targets=[Target(backend(provider), name="primary", middleware=[limit])], clock=clock
    )
    await relay.astream(messages=HI, max_tokens=600).completion()
    await limit.aclose()  # waits for the settlement written as the stream ended

    with pytest.raises(LocalRateLimitError):
        await relay.acomplete(messages=HI, max_tokens=600)

    assert provider.request_count == 1


async def test_rpm_and_tpm_together_refuse_on_whichever_runs_out_first() -> None:
    clock = FakeClock()
    fn = Counting(clock)
    relay = relay_with(RateLimit(rpm=100, tpm=1000), clock, fn)
    await relay.acomplete(messages=HI, max_tokens=600)

    with pytest.raises(LocalRateLimitError, match="1000 tokens/min"):
        await relay.acomplete(messages=HI, max_tokens=600)
    await relay.acomplete(messages=HI, max_tokens=100)  # the refused call took no request unit

    assert len(fn.calls) == 2


# --- placement: fallback, tenants, failures, events ----------------------------------------------


async def test_fallback_answers_from_the_next_target_without_a_request_to_the_limited_one(
    provider: FakeProvider, backend: BackendFactory
) -> None:
    clock = FakeClock()
    events: list[Event] = []
    secondary = FunctionBackend(lambda request: "from secondary", name="secondary")
    relay = Relay(
        targets=[
            Target(backend(provider), name="primary", middleware=[RateLimit(rpm=1)]),
            secondary,
        ],
        clock=clock,
        listeners=[events.append],
    )
    first = await relay.acomplete(messages=HI)

    second = await relay.acomplete(messages=HI)

    assert first.relay is not None and first.relay.target == "primary"
    assert second.content == "from secondary"
    assert second.relay is not None and second.relay.target == "secondary"
    assert provider.request_count == 1
    assert [e for e in events if isinstance(e, RateLimited)] == [
        RateLimited("primary", 60.0, "1 requests/min")
    ]
    assert any(isinstance(e, FallingBack) and e.from_target == "primary" for e in events)


async def test_per_tenant_limits_keep_one_tenant_from_using_anothers_budget() -> None:
    clock = FakeClock()
    fn = Counting(clock)
    relay = relay_with(RateLimit(rpm=1, per_tenant=True), clock, fn)
    await relay.acomplete(messages=HI, tenant="acme")

    with pytest.raises(LocalRateLimitError, match="for tenant 'acme'"):
        await relay.acomplete(messages=HI, tenant="acme")
    await relay.acomplete(messages=HI, tenant="globex")

    assert len(fn.calls) == 2


async def test_without_per_tenant_all_tenants_share_the_targets_budget() -> None:
    clock = FakeClock()
    fn = Counting(clock)
    relay = relay_with(RateLimit(rpm=1), clock, fn)
    await relay.acomplete(messages=HI, tenant="acme")

    with pytest.raises(LocalRateLimitError):
        await relay.acomplete(messages=HI, tenant="globex")


async def test_each_target_has_its_own_budget_in_one_instance() -> None:
    clock = FakeClock()
    limit = RateLimit(rpm=1)
    a, b = Counting(clock), Counting(clock)
    relay = Relay(
        targets=[
            Target(FunctionBackend(a.answer), name="a", middleware=[limit]),
            Target(FunctionBackend(b.answer), name="b", middleware=[limit]),
        ],
        clock=clock,
    )
    await relay.acomplete(messages=HI)
    await relay.acomplete(messages=HI)

    assert (len(a.calls), len(b.calls)) == (1, 1)


async def test_a_call_that_failed_before_reaching_upstream_gives_its_unit_back() -> None:
    async def open_circuit(request: ChatRequest, ctx: CallContext, call_next: Handler) -> Response:
        raise CircuitOpenError("is skipped: its circuit is open", target=ctx.target)

    clock = FakeClock()
    fn = Counting(clock)
    limit = RateLimit(rpm=1)
    blocked = Relay(
        targets=[Target(FunctionBackend(fn.answer), name="p", middleware=[limit, open_circuit])],
        clock=clock,
    )
    with pytest.raises(CircuitOpenError):
        await blocked.acomplete(messages=HI)

    open_relay = Relay(
        targets=[Target(FunctionBackend(fn.answer), name="p", middleware=[limit])], clock=clock
    )
    await open_relay.acomplete(messages=HI)

    assert len(fn.calls) == 1


async def test_a_failed_upstream_request_still_counts() -> None:
    clock = FakeClock()

    def broken(request: ChatRequest) -> str:
        raise RuntimeError("boom")

    relay = Relay(
        targets=[Target(FunctionBackend(broken), name="p", middleware=[RateLimit(rpm=1)])],
        clock=clock,
    )
    with pytest.raises(Exception, match="boom"):
        await relay.acomplete(messages=HI)

    with pytest.raises(LocalRateLimitError):
        await relay.acomplete(messages=HI)


async def test_waiting_emits_a_rate_limited_event() -> None:
    clock = FakeClock()
    events: list[Event] = []
    fn = Counting(clock)
    relay = relay_with(
        RateLimit(rpm=60, burst=1, max_wait_s=5), clock, fn, listeners=[events.append]
    )
    await relay.acomplete(messages=HI)
    await relay.acomplete(messages=HI)

    limited = [e for e in events if isinstance(e, RateLimited)]
    assert limited == [RateLimited("primary", 1.0, "60 requests/min")]


# --- construction ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "needs rpm, tpm or both"),
        ({"rpm": 0}, "rpm must be a positive"),
        ({"rpm": -5}, "rpm must be a positive"),
        ({"rpm": math.inf}, "rpm must be a positive, finite"),
        ({"tpm": 0}, "tpm must be a positive"),
        ({"rpm": True}, "rpm must be"),
        ({"tpm": 1000, "burst": 5}, "burst is the capacity of the request bucket, so it needs rpm"),
        ({"rpm": 60, "burst": 0.5}, "burst must be a number of requests, at least 1"),
        ({"rpm": 60, "max_wait_s": -1}, "max_wait_s must be >= 0"),
        ({"rpm": 60, "max_wait_s": math.nan}, "max_wait_s must be >= 0"),
        ({"rpm": 60, "store": object()}, "store must be a RateLimitStore"),
    ],
)
def test_bad_settings_fail_at_construction_naming_the_argument(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        RateLimit(**options)


def test_the_in_memory_store_fits_the_store_protocol() -> None:
    assert isinstance(MemoryRateLimitStore(), RateLimitStore)


# --- the store on its own ----------------------------------------------------------------------

REQUESTS = Bucket("r", capacity=2, refill_per_s=1.0)
TOKENS = Bucket("t", capacity=100, refill_per_s=10.0)


async def test_store_takes_from_every_bucket_or_from_none() -> None:
    store = MemoryRateLimitStore()

    assert await store.acquire([REQUESTS, TOKENS], [1, 90], now=0.0) is GRANTED
    refused = await store.acquire([REQUESTS, TOKENS], [1, 50], now=0.0)

    assert (refused.granted, refused.limited_by) == (False, 1)
    assert refused.wait_s == pytest.approx(4.0)
    assert store.available(REQUESTS, now=0.0) == pytest.approx(1.0)  # untouched by the refusal


async def test_store_reserves_within_max_wait_so_later_callers_queue_behind() -> None:
    store = MemoryRateLimitStore()
    await store.acquire([REQUESTS], [2], now=0.0)

    first = await store.acquire([REQUESTS], [1], now=0.0, max_wait_s=5)
    second = await store.acquire([REQUESTS], [1], now=0.0, max_wait_s=5)

    assert first.granted and first.wait_s == pytest.approx(1.0)
    assert second.granted and second.wait_s == pytest.approx(2.0)


async def test_store_never_refills_past_capacity_and_allows_debt() -> None:
    store = MemoryRateLimitStore()
    await store.adjust(TOKENS, -500, now=0.0)
    assert store.available(TOKENS, now=0.0) == pytest.approx(100)

    await store.adjust(TOKENS, 150, now=0.0)

    assert store.available(TOKENS, now=0.0) == pytest.approx(-50)
    assert (await store.acquire([TOKENS], [1], now=0.0)).wait_s == pytest.approx(5.1)


async def test_store_refuses_an_amount_larger_than_the_capacity_forever() -> None:
    refused = await MemoryRateLimitStore().acquire([REQUESTS], [3], now=0.0, max_wait_s=math.inf)

    assert (refused.granted, refused.wait_s) == (False, math.inf)


async def test_store_counts_a_600_rpm_burst_exactly_despite_float_rounding() -> None:
    store = MemoryRateLimitStore()
    bucket = Bucket("b", capacity=600, refill_per_s=10.0)
    now = 1234.567

    granted = [(await store.acquire([bucket], [1], now=now)).granted for _ in range(601)]

    assert granted.count(True) == 600 and granted[-1] is False


async def test_store_forgets_buckets_that_have_refilled() -> None:
    store = MemoryRateLimitStore()
    for i in range(3000):
        await store.acquire([Bucket(f"tenant-{i}", 1, 1.0)], [1], now=float(i))

    assert len(store._tat) < 2100


def test_the_sync_api_is_limited_the_same_way() -> None:
    clock = FakeClock()
    fn = Counting(clock)
    with relay_with(RateLimit(rpm=1), clock, fn) as relay:
        relay.complete(messages=HI)
        with pytest.raises(LocalRateLimitError):
            relay.complete(messages=HI)

    assert len(fn.calls) == 1


async def test_an_outer_rate_limit_keeps_its_bucket_after_a_timeout_under_retry() -> None:
    clock = FakeClock(auto_advance=True)
    calls = 0

    async def slow_then_fast(request: ChatRequest) -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            await clock.sleep(10)  # outlives the 5 s deadline; the bucket needs 60 s
        return "answered"

    relay = Relay(
        targets=[Target(FunctionBackend(slow_then_fast, name="fn"), name="A")],
        middleware=[Retry(attempts=3, budget=None), Timeout(total_s=5), RateLimit(rpm=1)],
        clock=clock,
    )
    with pytest.raises(LocalRateLimitError):
        await relay.acomplete(messages=HI)
    assert calls == 1  # the retry met the same relay-wide bucket, not target A's
