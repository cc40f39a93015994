"""RedisStore on a real three-node Redis Cluster on loopback ports: every script touches keys
of one slot (their hash tag), so each decision runs on one node."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from redis_servers import Cluster, StoreFactory

from relaykit import Cache, CircuitBreaker, OpenAICompatible, RateLimit, Relay, Target
from relaykit.contract.events import Event, StoreDegraded
from relaykit.testing import FakeProvider, Reply


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    running = Cluster()
    try:
        running.start()
        yield running
    finally:
        running.remove()


async def test_cache_limits_and_breakers_work_on_a_cluster_with_each_decision_in_one_slot(
    cluster: Cluster, provider: FakeProvider, stores: StoreFactory, redis_prefix: str
) -> None:
    # 5,000 tokens a call at 100,000 a minute: the token bucket's key lives 3 s, long enough
    # to be seen below (a bucket that has refilled is no key at all).
    provider.default = Reply.ok(usage={"prompt_tokens": 4000, "completion_tokens": 1000})
    store = stores(url=cluster.url, cluster=True)
    events: list[Event] = []
    limit = RateLimit(rpm=60, tpm=100_000, store=store, per_tenant=True)
    guards = [CircuitBreaker(store=store), limit]
    backend = OpenAICompatible(provider.url, api_key="sk-test", model="m")
    relay = Relay(
        targets=[Target(backend, name="primary", middleware=guards)],
        middleware=[Cache(store=store)],
        listeners=[events.append],
    )

    answers = [
        await relay.acomplete(messages=[{"role": "user", "content": text}], tenant="acme")
        for text in ("one", "two", "one")
    ]

    assert [e for e in events if isinstance(e, StoreDegraded)] == []
    assert [a.relay.cached for a in answers if a.relay] == [False, False, True]
    assert provider.request_count == 2
    nodes = redis.RedisCluster.from_url(cluster.url)
    keys = [k.decode() for k in nodes.keys(target_nodes=redis.RedisCluster.ALL_NODES)]
    ours = [k for k in keys if k.startswith(redis_prefix)]
    buckets = [k for k in ours if "{rate:" in k]
    assert sorted(k.rsplit(":", 1)[1] for k in buckets) == ["requests", "tokens"]
    assert len({nodes.keyslot(k) for k in buckets}) == 1
    assert len([k for k in ours if ":cache:{" in k]) == 2
    nodes.close()
    await relay.aclose()
