"""When Redis is slow or gone, calls go on: the cache misses, limits and breakers count in this
process, events say so, and state is shared again once Redis is back.

Each test runs a private redis-server on its own port, which it pauses or kills. The store's
recheck interval runs on a FakeClock; the time bound of a Redis command is real time, since it
bounds real I/O.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from redis_servers import PrivateRedis, StoreFactory
from structlog.testing import capture_logs

from relaykit import (
    Cache,
    CircuitBreaker,
    LocalRateLimitError,
    Logging,
    OpenAICompatible,
    RateLimit,
    Relay,
    Target,
)
from relaykit.contract.events import Event, StoreDegraded, StoreRecovered
from relaykit.stores.redis import RedisStore
from relaykit.testing import FakeClock, FakeProvider, Reply

MESSAGES = [{"role": "user", "content": "hello"}]


@pytest.fixture
def server() -> Iterator[PrivateRedis]:
    running = PrivateRedis()
    running.start()
    yield running
    running.remove()


def shared_relay(
    provider: FakeProvider, store: RedisStore, events: list[Event], *, fail_closed: bool = False
) -> Relay:
    backend = OpenAICompatible(provider.url, api_key="sk-test", model="m")
    limit = RateLimit(rpm=600, store=store, fail_closed=fail_closed)
    guards = [CircuitBreaker(store=store), limit]
    return Relay(
        targets=[Target(backend, name="primary", middleware=guards)],
        middleware=[Cache(store=store)],
        listeners=[events.append],
    )


def kinds(events: list[Event]) -> list[str]:
    return [type(e).__name__ for e in events if isinstance(e, StoreDegraded | StoreRecovered)]


async def test_calls_succeed_while_redis_is_down_and_share_state_again_after_a_restart(
    server: PrivateRedis, provider: FakeProvider, stores: StoreFactory
) -> None:
    provider.default = Reply.echo()
    clock = FakeClock()
    events: list[Event] = []
    relay = shared_relay(provider, stores(url=server.url, clock=clock, recheck_s=5), events)
    await relay.acomplete(messages=[{"role": "user", "content": "before"}])

    server.kill()
    started = time.perf_counter()
    answers = [
        await relay.acomplete(messages=[{"role": "user", "content": f"during {i}"}])
        for i in range(5)
    ]
    elapsed = time.perf_counter() - started

    assert [a.content for a in answers] == [f"during {i}" for i in range(5)]
    assert elapsed < 1.0  # refused connections: nothing waits for a timeout
    assert kinds(events) == ["StoreDegraded"]  # once per outage, not once per call
    degraded = next(e for e in events if isinstance(e, StoreDegraded))
    assert degraded.store == server.url and "Connection" in degraded.error

    server.start()  # an empty Redis on the same port
    await relay.acomplete(messages=[{"role": "user", "content": "still down for 5 s"}])
    assert server.client().dbsize() == 0  # not asked again before recheck_s
    clock.advance(5)
    await relay.acomplete(messages=[{"role": "user", "content": "after"}])

    assert kinds(events) == ["StoreDegraded", "StoreRecovered"]
    other = shared_relay(provider, stores(url=server.url), [])
    shared = await other.acomplete(messages=[{"role": "user", "content": "after"}])
    assert shared.relay is not None and shared.relay.cached
    assert provider.request_count == 1 + 5 + 1 + 1
    await relay.aclose()
    await other.aclose()


async def test_a_paused_redis_costs_one_time_bound_then_nothing_until_rechecked(
    server: PrivateRedis, provider: FakeProvider, stores: StoreFactory
) -> None:
    events: list[Event] = []
    store = stores(url=server.url, clock=FakeClock(), timeout_s=0.05)
    relay = shared_relay(provider, store, events)
    await relay.acomplete(messages=MESSAGES)
    server.client().execute_command("CLIENT", "PAUSE", 1000, "ALL")

    started = time.perf_counter()
    first = await relay.acomplete(messages=[{"role": "user", "content": "slow"}])
    first_s = time.perf_counter() - started
    started = time.perf_counter()
    for i in range(20):
        await relay.acomplete(messages=[{"role": "user", "content": f"next {i}"}])
    next_s = time.perf_counter() - started

    assert first.content and 0.045 < first_s < 0.5
    assert next_s < 0.5  # 20 more calls, each far below one 50 ms bound
    assert kinds(events) == ["StoreDegraded"]
    degraded = next(e for e in events if isinstance(e, StoreDegraded))
    assert degraded.error == "no answer within the time bound"
    await relay.aclose()


async def test_fail_closed_refuses_calls_while_redis_is_down_and_sends_nothing(
    server: PrivateRedis, provider: FakeProvider, stores: StoreFactory
) -> None:
    events: list[Event] = []
    relay = shared_relay(provider, stores(url=server.url), events, fail_closed=True)
    server.kill()

    refusal = r"RateLimit\(fail_closed=True\) refuses"
    with pytest.raises(LocalRateLimitError, match=refusal) as caught:
        await relay.acomplete(messages=MESSAGES)

    assert provider.request_count == 0
    assert "600 requests/min" in str(caught.value)
    assert kinds(events) == ["StoreDegraded"]
    await relay.aclose()


async def test_a_budget_counts_in_this_process_while_redis_is_down(
    server: PrivateRedis, provider: FakeProvider, stores: StoreFactory
) -> None:
    from relaykit import Budget, BudgetExceededError, Price

    provider.default = Reply.ok("hi", usage={"prompt_tokens": 10, "completion_tokens": 90})
    events: list[Event] = []
    store = stores(url=server.url, clock=FakeClock(), recheck_s=5)
    backend = OpenAICompatible(provider.url, api_key="sk-test", model="m")
    relay = Relay(
        targets=[Target(backend, price=Price(input_per_mtok=1, output_per_mtok=1))],
        # Room for one worst case (~1,009 micro-dollars), not for a second.
        middleware=[Budget(limit_usd=0.00105, per="all", store=store)],
        listeners=[events.append],
    )

    server.kill()
    await relay.acomplete(messages=MESSAGES, max_tokens=1000)
    with pytest.raises(BudgetExceededError):
        await relay.acomplete(messages=MESSAGES, max_tokens=1000)

    assert provider.request_count == 1
    assert kinds(events) == ["StoreDegraded"]
    await relay.aclose()


async def test_logging_writes_a_warning_when_redis_goes_and_a_line_when_it_is_back(
    server: PrivateRedis, provider: FakeProvider, stores: StoreFactory
) -> None:
    clock = FakeClock()
    store = stores(url=server.url, clock=clock, recheck_s=5)
    backend = OpenAICompatible(provider.url, api_key="sk-test", model="m")
    relay = Relay(targets=[backend], middleware=[Logging(), Cache(store=store)])
    await relay.acomplete(messages=[{"role": "user", "content": "up"}])
    server.kill()

    with capture_logs() as captured:
        await relay.acomplete(messages=[{"role": "user", "content": "down"}])
        server.start()
        clock.advance(5)
        await relay.acomplete(messages=[{"role": "user", "content": "back"}])

    lines = [(e["log_level"], e["event"], e.get("store")) for e in captured]
    assert ("warning", "relaykit.store_degraded", server.url) in lines
    assert ("info", "relaykit.store_recovered", server.url) in lines
    await relay.aclose()
