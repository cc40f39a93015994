"""Several OS processes sharing one RedisStore: the limit, the circuit and the cache hold for
all of them together, counted at the FakeProvider they all call.

The workers bound each Redis command by 5 s instead of 50 ms: 250 concurrent calls in each of
four processes on a loaded 2-core machine can starve an event loop for longer than 50 ms (or
even 1 s), and a store that degrades lets each process count alone, as documented. What these
tests check is the shared count, so each also asserts that no worker degraded; degradation has
tests of its own (test_redis_outage.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from processes import run_workers

from relaykit import ChatRequest, CircuitBreaker, OpenAICompatible, Relay, RelayError, Target
from relaykit.contract.tokens import estimate_prompt_tokens
from relaykit.stores.redis import RedisStore
from relaykit.testing import FakeProvider, Reply

WORKER_TIMEOUT_S = 5.0


def jobs(count: int, provider: FakeProvider, redis_url: str, prefix: str, **job: Any) -> list[Any]:
    common = {
        "provider_url": provider.url,
        "redis_url": redis_url,
        "prefix": prefix,
        "timeout_s": WORKER_TIMEOUT_S,
    }
    return [{**common, **job} for _ in range(count)]


def total(results: list[dict[str, Any]], outcome: str) -> int:
    return sum(result["outcomes"].get(outcome, 0) for result in results)


def assert_none_degraded(results: list[dict[str, Any]]) -> None:
    assert [result["degraded"] for result in results] == [[]] * len(results)


def allowed_by_60_rpm(results: list[dict[str, Any]]) -> int:
    """What a 60-rpm bucket (burst 60) allows from the first start to the last answer: the
    full burst, plus one request per whole second that passed (usually none)."""
    span_s = max(r["last_ok"] for r in results) - min(r["started"] for r in results)
    return 60 + int(span_s)


# --- one rate limit ---------------------------------------------------------------------------


def test_four_processes_hammering_one_60_rpm_limit_send_60_requests_in_total(
    redis_url: str, redis_prefix: str
) -> None:
    with FakeProvider() as provider:
        # Each loop calls until refused three times in a row (at most 10 s): the bucket then
        # refills one request per second, which counts only if a loaded machine stretches the
        # run past a second.
        work = jobs(4, provider, redis_url, redis_prefix, kind="rate", rpm=60)
        results = run_workers([{**job, "seconds": 10, "concurrency": 4} for job in work])

        assert 60 <= provider.request_count <= allowed_by_60_rpm(results)
    assert total(results, "ok") == provider.request_count
    assert total(results, "rate_limited") > 0
    assert_none_degraded(results)


def test_a_thousand_concurrent_calls_over_four_processes_send_60_requests_in_total(
    redis_url: str, redis_prefix: str
) -> None:
    with FakeProvider() as provider:
        work = jobs(4, provider, redis_url, redis_prefix, kind="rate", rpm=60, calls=250)
        results = run_workers(work)

        assert 60 <= provider.request_count <= allowed_by_60_rpm(results)
    assert total(results, "ok") == provider.request_count
    assert total(results, "rate_limited") == 1000 - provider.request_count
    assert_none_degraded(results)


# --- one circuit ------------------------------------------------------------------------------


async def open_circuit(
    provider: FakeProvider, redis_url: str, prefix: str, cooldown_s: float
) -> None:
    """Open the shared circuit of target 'primary' from this (the test's) process."""
    provider.script(Reply.server_error(), Reply.server_error())
    store = RedisStore(redis_url, prefix=prefix)
    breaker = CircuitBreaker(failures=2, cooldown_s=cooldown_s, store=store)
    backend = OpenAICompatible(provider.url, api_key="sk-test", model="m")
    relay = Relay(targets=[Target(backend, name="primary", middleware=[breaker])])
    for _ in range(2):
        with contextlib.suppress(RelayError):
            await relay.acomplete(messages=[{"role": "user", "content": "hello"}])
    await relay.aclose()
    await store.aclose()


def test_a_circuit_opened_in_one_process_makes_another_skip_the_target_without_a_request(
    redis_url: str, redis_prefix: str
) -> None:
    with FakeProvider() as provider:
        asyncio.run(open_circuit(provider, redis_url, redis_prefix, cooldown_s=60))
        assert provider.request_count == 2

        work = jobs(1, provider, redis_url, redis_prefix, kind="breaker", failures=2)
        results = run_workers([{**job, "cooldown_s": 60, "calls": 3} for job in work])

        assert provider.request_count == 2
    assert results[0]["outcomes"] == {"circuit_open": 3}


def test_exactly_one_half_open_probe_goes_out_across_four_processes(
    redis_url: str, redis_prefix: str
) -> None:
    with FakeProvider() as provider:
        # Half-open by the time the workers have started; the probe's answer takes a second,
        # so every other call arrives while it is in flight.
        asyncio.run(open_circuit(provider, redis_url, redis_prefix, cooldown_s=0.05))
        provider.default = Reply.ok().delayed(1.0)

        work = jobs(4, provider, redis_url, redis_prefix, kind="breaker", failures=2)
        results = run_workers([{**job, "cooldown_s": 0.05, "calls": 5} for job in work])

        assert provider.request_count == 2 + 1
    assert total(results, "ok") == 1
    assert total(results, "circuit_open") == 19
    assert_none_degraded(results)


# --- one cache --------------------------------------------------------------------------------


def test_an_answer_cached_in_one_process_is_a_hit_in_another(
    redis_url: str, redis_prefix: str
) -> None:
    with FakeProvider() as provider:
        first = run_workers(jobs(1, provider, redis_url, redis_prefix, kind="cache", calls=1))
        second = run_workers(jobs(1, provider, redis_url, redis_prefix, kind="cache", calls=1))

        assert provider.request_count == 1
    assert first[0]["outcomes"] == {"ok": 1}
    assert second[0]["outcomes"] == {"cached": 1}


def test_concurrent_identical_misses_in_four_processes_make_one_upstream_call(
    redis_url: str, redis_prefix: str
) -> None:
    with FakeProvider() as provider:
        provider.default = Reply.ok().delayed(0.5)  # long enough for every process to miss

        results = run_workers(jobs(4, provider, redis_url, redis_prefix, kind="cache", calls=3))

        assert provider.request_count == 1
    assert total(results, "ok") == 1
    assert total(results, "cached") == 11
    assert_none_degraded(results)


# --- one budget ------------------------------------------------------------------------------


def test_four_processes_sharing_one_redis_budget_spend_exactly_it(
    redis_url: str, redis_prefix: str
) -> None:
    # Each call's real cost equals its reservation (the usage is the worst case), so 40
    # reservations are exactly the budget: one call more would be an overspend, one fewer a
    # budget the processes failed to use.
    request = ChatRequest.model_validate({"messages": [{"role": "user", "content": "hello"}]})
    prompt = estimate_prompt_tokens(request)
    with FakeProvider() as provider:
        provider.default = Reply.ok("hi", usage={"prompt_tokens": prompt, "completion_tokens": 100})
        work = jobs(
            4,
            provider,
            redis_url,
            redis_prefix,
            kind="budget",
            limit_usd=40 * (prompt + 100) * 1e-6,  # $1 per million tokens
            max_tokens=100,
        )
        results = run_workers([{**job, "seconds": 20, "concurrency": 4} for job in work])

        assert provider.request_count == 40
    assert total(results, "ok") == 40
    assert all(result["outcomes"].get("budget_exceeded", 0) > 0 for result in results)
    assert_none_degraded(results)
