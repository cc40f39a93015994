"""RedisStore in one process: what two stores on one Redis (as two processes would) share."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import pytest
import redis
from redis_servers import PrivateRedis, StoreFactory, free_port

from relaykit import (
    Cache,
    CircuitBreaker,
    LocalRateLimitError,
    OpenAICompatible,
    RateLimit,
    Relay,
    Target,
)
from relaykit.stores.breaker import BreakerPolicy, Outcome
from relaykit.stores.cache import FROZEN_FORMAT, MemoryCacheStore
from relaykit.stores.rate_limit import Bucket, MemoryRateLimitStore
from relaykit.stores.redis import RedisStore
from relaykit.stores.redis._base import bucket_key, hash_tag
from relaykit.testing import FakeProvider, Reply

MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]


def cached_relay(provider: FakeProvider, store: RedisStore) -> Relay:
    backend = OpenAICompatible(provider.url, api_key="sk-test", model="m")
    return Relay(targets=[Target(backend, name="primary")], middleware=[Cache(store=store)])


def client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=5)


# --- cache ------------------------------------------------------------------------------------


async def test_an_answer_cached_through_one_store_is_a_hit_through_another(
    provider: FakeProvider, stores: StoreFactory
) -> None:
    provider.script(Reply.ok("Paris"))
    first, second = cached_relay(provider, stores()), cached_relay(provider, stores())

    await first.acomplete(messages=MESSAGES)
    answer = await second.acomplete(messages=MESSAGES)

    assert provider.request_count == 1
    assert answer.content == "Paris"
    assert answer.relay is not None and answer.relay.cached
    assert answer.relay.target == "primary"
    await first.aclose()
    await second.aclose()


async def test_a_cache_entry_lives_in_redis_with_its_ttl_and_ages_by_its_pttl(
    provider: FakeProvider, stores: StoreFactory, redis_url: str, redis_prefix: str
) -> None:
    store = stores()
    relay = Relay(
        targets=[OpenAICompatible(provider.url, api_key="sk-test", model="m")],
        middleware=[cache := Cache(ttl_s=600, store=store)],
    )
    await relay.acomplete(messages=MESSAGES)
    [key] = client(redis_url).keys(f"{redis_prefix}cache:*")
    redis_key = key.decode()
    assert 599_000 < client(redis_url).pttl(redis_key) <= 600_000

    client(redis_url).pexpire(redis_key, 590_000)  # as if 10 s had passed
    cache_key = redis_key.removeprefix(f"{redis_prefix}cache:{{").removesuffix("}")
    hit = await cache.store.get(cache_key, 0.0)

    assert hit is not None and hit.age_s == pytest.approx(10.0, abs=0.05)
    assert client(redis_url).get(redis_key).split(b"\n", 1)[1].startswith(FROZEN_FORMAT)
    await relay.aclose()


async def test_an_entry_of_another_format_version_reads_as_a_miss(
    provider: FakeProvider, stores: StoreFactory, redis_url: str, redis_prefix: str
) -> None:
    relay = cached_relay(provider, stores())
    await relay.acomplete(messages=MESSAGES)
    [key] = client(redis_url).keys(f"{redis_prefix}cache:*")
    stored = client(redis_url).get(key)
    client(redis_url).set(key, stored.replace(b"relaykit.frozen/1", b"relaykit.frozen/0"))

    answer = await relay.acomplete(messages=MESSAGES)

    assert provider.request_count == 2
    assert answer.relay is not None and not answer.relay.cached
    await relay.aclose()


async def test_tenants_never_read_each_others_answers_in_redis(
    provider: FakeProvider, stores: StoreFactory, redis_url: str, redis_prefix: str
) -> None:
    provider.default = Reply.echo()
    relay = cached_relay(provider, stores())

    await relay.acomplete(messages=MESSAGES, tenant="acme")
    other = await relay.acomplete(messages=MESSAGES, tenant="globex")

    assert provider.request_count == 2
    assert other.relay is not None and not other.relay.cached
    keys = sorted(k.decode() for k in client(redis_url).keys(f"{redis_prefix}cache:*"))
    assert [k.split(":")[3:5] for k in keys] == [["{0", "4"], ["{0", "6"]]
    assert "acme" in keys[0] and "globex" in keys[1]
    await relay.aclose()


async def test_when_the_process_asking_upstream_dies_a_waiter_asks_once_its_lock_expires(
    stores: StoreFactory,
) -> None:
    dead, waiting = stores(flight_s=0.2), stores(flight_s=5)
    assert await dead.join_flight("question", 0.0, 5.0) is None  # it holds the flight, then dies

    started = time.perf_counter()
    found = await waiting.join_flight("question", 0.0, 5.0)
    waited = time.perf_counter() - started

    assert found is None  # nothing stored: the waiter asks upstream itself...
    assert 0.15 < waited < 1.5  # ...once the dead holder's 0.2 s lock has expired, not after 5 s
    started = time.perf_counter()
    assert await stores().join_flight("question", 0.0, 0.05) is None
    assert time.perf_counter() - started >= 0.045  # a third waits: the waiter holds it now


# --- rate limits ------------------------------------------------------------------------------


async def test_an_acquire_takes_from_every_bucket_or_from_none(stores: StoreFactory) -> None:
    first, second = stores(), stores()
    requests = Bucket("rate:primary:requests", 10, 10 / 60)
    tokens = Bucket("rate:primary:tokens", 100, 100 / 60)
    assert (await first.acquire([requests, tokens], [1, 90], now=0.0)).granted

    refused = await second.acquire([requests, tokens], [1, 20], now=0.0)
    taken = [(await second.acquire([requests], [1], now=0.0)).granted for _ in range(10)]

    assert not refused.granted and refused.limited_by == 1
    assert refused.wait_s == pytest.approx(6.0, abs=0.1)  # 10 tokens at 100/min
    assert taken == [True] * 9 + [False]  # the refused acquire took no request


async def test_reported_usage_replaces_the_token_estimate_for_every_process(
    provider: FakeProvider, stores: StoreFactory
) -> None:
    provider.default = Reply.ok(usage={"prompt_tokens": 880, "completion_tokens": 20})

    def relay() -> Relay:
        limited = RateLimit(tpm=1000, store=stores())
        backend = OpenAICompatible(provider.url, api_key="sk-test", model="m")
        return Relay(targets=[Target(backend, name="primary", middleware=[limited])])

    first, second = relay(), relay()
    await first.acomplete(messages=MESSAGES, max_tokens=100)  # estimated ~110, used 900

    with pytest.raises(LocalRateLimitError, match="1000 tokens/min"):
        await second.acomplete(messages=MESSAGES, max_tokens=100)

    assert provider.request_count == 1
    await first.aclose()
    await second.aclose()


async def test_a_wait_within_max_wait_reserves_the_slot_for_the_waiter(
    stores: StoreFactory,
) -> None:
    store = stores()
    bucket = Bucket("rate:primary:requests", 1, 60 / 60)
    await store.acquire([bucket], [1], now=0.0)

    queued = await store.acquire([bucket], [1], now=0.0, max_wait_s=5)
    behind = await store.acquire([bucket], [1], now=0.0, max_wait_s=1.5)

    assert queued.granted and queued.wait_s == pytest.approx(1.0, abs=0.05)
    assert not behind.granted and behind.wait_s == pytest.approx(2.0, abs=0.05)


# --- circuit breakers -------------------------------------------------------------------------

QUICK = BreakerPolicy(failures=1, cooldown_s=0.05, probe_lease_s=0.2)


async def test_a_probe_whose_process_died_frees_its_slot_after_its_lease(
    stores: StoreFactory,
) -> None:
    dead, alive = stores(), stores()
    await dead.record("primary", 0.0, QUICK, Outcome(False))
    await asyncio.sleep(0.06)  # real-time: the cool-down runs on the Redis server's clock

    probe = await dead.admit("primary", 0.0, QUICK)  # ...and its process dies with the slot
    while_leased = await alive.admit("primary", 0.0, QUICK)
    await asyncio.sleep(0.2)  # real-time: the lease runs on the Redis server's clock
    after_lease = await alive.admit("primary", 0.0, QUICK)

    assert probe.allowed and probe.probe
    assert not while_leased.allowed and while_leased.wait_s is None
    assert after_lease.allowed and after_lease.probe


async def test_a_failure_rate_seen_by_several_stores_opens_the_circuit_once(
    stores: StoreFactory,
) -> None:
    policy = BreakerPolicy(failures=5, failure_rate=0.5, min_calls=4)
    first, second = stores(), stores()
    changes = [
        await first.record("primary", 0.0, policy, Outcome(True)),
        await second.record("primary", 0.0, policy, Outcome(False)),
        await first.record("primary", 0.0, policy, Outcome(True)),
        await second.record("primary", 0.0, policy, Outcome(False)),
    ]

    assert changes[:3] == [None, None, None]
    assert changes[3] is not None and changes[3].opened
    assert changes[3].reason == "2 failures in 4 calls within 30 s"
    refused = await first.admit("primary", 0.0, policy)
    assert not refused.allowed and refused.reason == "2 failures in 4 calls within 30 s"


async def test_a_retry_after_opens_every_processs_circuit_for_exactly_that_long(
    stores: StoreFactory,
) -> None:
    first, second = stores(), stores()
    pushback = Outcome(False, open_s=7.5, reason="a 429 asking to retry after 7.5 s")

    change = await first.record("primary", 0.0, BreakerPolicy(), pushback)
    refused = await second.admit("primary", 0.0, BreakerPolicy())

    assert change is not None and change.open_s == 7.5
    assert refused.wait_s == pytest.approx(7.5, abs=0.05)
    assert refused.reason == "a 429 asking to retry after 7.5 s"


# --- keys -------------------------------------------------------------------------------------


@pytest.mark.parametrize("tenant", ["acme", "a:b", "we{ir}d", "}{", ""])
def test_the_buckets_of_one_target_and_tenant_share_one_hash_tag(tenant: str) -> None:
    base = f"rate:primary:tenant:{tenant}"
    requests = bucket_key("relaykit:", f"{base}:requests")
    tokens = bucket_key("relaykit:", f"{base}:tokens")

    assert requests != tokens
    assert hash_tag(requests) == hash_tag(tokens)
    assert requests.startswith("relaykit:{rate:primary:tenant:")


def test_bucket_keys_of_different_tenants_differ() -> None:
    keys = {bucket_key("p:", f"rate:primary:tenant:{t}:requests") for t in ("a", "b", "a:b")}

    assert len(keys) == 3


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:6379", "redis://", "redis://127.0.0.1:port/0", "redis://h:6379/x", 6379],
)
def test_a_malformed_url_is_refused_naming_url(url: object) -> None:
    with pytest.raises(ValueError, match=r"^url must be a Redis URL"):
        RedisStore(url)  # type: ignore[arg-type]


def test_an_unreachable_redis_fails_at_construction_without_showing_its_password() -> None:
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"

    with pytest.raises(ConnectionError, match=r"RedisStore url .*no Redis answered") as caught:
        RedisStore(url, connect_timeout_s=0.5)

    assert "hunter2" not in str(caught.value)
    assert "**********@127.0.0.1" in str(caught.value)


def test_a_store_passed_where_it_cannot_serve_is_refused_naming_store() -> None:
    with pytest.raises(ValueError, match=r"^store must implement CacheStore"):
        Cache(store=MemoryRateLimitStore())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^store must be a RateLimitStore"):
        RateLimit(rpm=60, store=MemoryCacheStore())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^store must implement BreakerStore"):
        CircuitBreaker(store=MemoryCacheStore())  # type: ignore[arg-type]


def test_fail_closed_needs_a_store_that_can_fail() -> None:
    with pytest.raises(ValueError, match=r"^fail_closed=True needs a shared store"):
        RateLimit(rpm=60, fail_closed=True, store=MemoryRateLimitStore())


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("prefix", "app:{x}:", "prefix must be a str without braces"),
        ("timeout_s", 0, "timeout_s must be a positive"),
        ("recheck_s", -1, "recheck_s must be a positive"),
        ("max_connections", 0, "max_connections must be a whole number"),
        ("clock", "now", "clock must be a relaykit Clock"),
    ],
)
def test_bad_options_are_refused_naming_them(
    redis_url: str, option: str, value: object, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        RedisStore(redis_url, **{option: value})


async def test_the_url_in_reprs_and_events_hides_the_password() -> None:
    server = PrivateRedis("--requirepass", "s3cret")
    server.start()
    store = RedisStore(f"redis://:s3cret@127.0.0.1:{server.port}/0", recheck_s=60)
    await store.get("k", 0.0)
    server.kill()

    await store.get("k", 0.0)  # degraded: an event names the store
    events = store.take_health_events() or []

    shown = [repr(store), store.url, *map(repr, events)]
    assert events and all("s3cret" not in text and "**********@" in text for text in shown)
    await store.aclose()
    server.remove()


def test_importing_the_redis_store_module_does_not_import_redis_until_a_store_is_made() -> None:
    code = "import sys; import relaykit.stores.redis; print('redis' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)

    assert done.stdout.strip() == "False", done.stderr


# --- budgets ------------------------------------------------------------------------------------


async def test_a_budget_spent_through_one_store_refuses_through_another(
    provider: FakeProvider, stores: StoreFactory, redis_url: str, redis_prefix: str
) -> None:
    from relaykit import Budget, BudgetExceededError, Price

    provider.default = Reply.ok("hi", usage={"prompt_tokens": 10, "completion_tokens": 90})
    price = Price(input_per_mtok=1.0, output_per_mtok=1.0)

    def budgeted(store: RedisStore) -> Relay:
        backend = OpenAICompatible(provider.url, api_key="sk-test", model="m")
        # Room for one worst case (~1,009 micro-dollars), not for a second after it is spent.
        budget = Budget(limit_usd=0.00105, per="tenant", name="team", store=store)
        return Relay(targets=[Target(backend, price=price)], middleware=[budget])

    first, second = budgeted(stores()), budgeted(stores())
    await first.acomplete(messages=MESSAGES, max_tokens=1000, tenant="acme")
    with pytest.raises(BudgetExceededError) as caught:
        await second.acomplete(messages=MESSAGES, max_tokens=1000, tenant="acme")

    assert provider.request_count == 1
    assert caught.value.spent_usd == pytest.approx(100e-6)  # settled to the real cost
    [key] = client(redis_url).keys(f"{redis_prefix}{{budget:team:acme:*")
    assert float(client(redis_url).get(key)) == pytest.approx(100e-6)
    # It expires a minute after its day ends, never before the window does.
    ttl_s = client(redis_url).pttl(key) / 1000
    assert caught.value.retry_after < ttl_s <= caught.value.retry_after + 61
    await first.aclose()
    await second.aclose()


def test_a_config_files_store_is_where_its_budget_keeps_its_spend(
    redis_url: str, redis_prefix: str
) -> None:
    from relaykit import Budget

    relay = Relay.from_config(
        {
            "store": {"url": redis_url, "prefix": redis_prefix},
            "targets": [
                {
                    "base_url": "http://127.0.0.1:1/v1",
                    "model": "m",
                    "price": {"input_per_mtok": 1, "output_per_mtok": 1},
                }
            ],
            "middleware": [{"budget": {"limit_usd": 5, "window": "month"}}],
        }
    )

    [budget] = relay.middleware
    assert isinstance(budget, Budget) and isinstance(budget.store, RedisStore)
    relay.close()
