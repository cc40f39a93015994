"""Config files name where state lives: `store:` at the top level or per middleware."""

from __future__ import annotations

import pytest

from relaykit import Cache, CircuitBreaker, ConfigError, RateLimit, Relay
from relaykit.stores.cache import MemoryCacheStore
from relaykit.stores.redis import RedisStore
from relaykit.testing import FakeProvider


def config(provider: FakeProvider, **top: object) -> dict[str, object]:
    return {
        **top,
        "targets": [
            {
                "name": "primary",
                "base_url": provider.url,
                "model": "m",
                "middleware": ["circuit_breaker", {"rate_limit": {"rpm": 60}}],
            }
        ],
        "middleware": [{"cache": {"ttl_s": 60}}],
    }


def layers(relay: Relay) -> list[object]:
    [target] = relay.targets
    return [*relay.middleware, *target.middleware]


async def test_a_top_level_store_is_shared_by_every_cache_limit_and_breaker(
    provider: FakeProvider, redis_url: str, redis_prefix: str
) -> None:
    relay = Relay.from_config(config(provider, store={"url": redis_url, "prefix": redis_prefix}))

    stores = [layer.store for layer in layers(relay)]  # type: ignore[attr-defined]

    assert len(stores) == 3 and isinstance(stores[0], RedisStore)
    assert all(store is stores[0] for store in stores)
    assert stores[0].prefix == redis_prefix
    await relay.acomplete(messages=[{"role": "user", "content": "hi"}])
    again = await relay.acomplete(messages=[{"role": "user", "content": "hi"}])
    assert again.relay is not None and again.relay.cached
    await relay.aclose()
    await stores[0].aclose()


async def test_a_middlewares_own_store_overrides_the_top_level_one(
    provider: FakeProvider, redis_url: str
) -> None:
    data = config(provider, store=redis_url)
    data["middleware"] = [{"cache": {"store": "memory"}}]

    relay = Relay.from_config(data)

    cache, breaker, limit = layers(relay)
    assert isinstance(cache, Cache) and isinstance(cache.store, MemoryCacheStore)
    assert isinstance(breaker, CircuitBreaker) and isinstance(breaker.store, RedisStore)
    assert isinstance(limit, RateLimit) and limit.store is breaker.store
    await relay.aclose()
    await breaker.store.aclose()


@pytest.mark.parametrize(
    ("store", "path", "message"),
    [
        ("http://127.0.0.1:6379", "store", "url must be a Redis URL"),
        ({"prefix": "x:"}, "store", "must be memory, a Redis URL"),
        (
            {"url": "redis://127.0.0.1:6379/0", "prefx": "x"},
            "store.prefx",
            "is not an option of RedisStore",
        ),
        (
            {"url": "redis://127.0.0.1:6379/0", "timeout_s": 0},
            "store.timeout_s",
            "timeout_s must be",
        ),
    ],
)
def test_a_bad_store_setting_names_its_place(
    provider: FakeProvider, store: object, path: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        Relay.from_config(config(provider, store=store))

    assert caught.value.path == path


def test_an_unreachable_redis_in_a_middlewares_store_names_that_middleware(
    provider: FakeProvider,
) -> None:
    data = config(provider)
    data["middleware"] = [{"cache": {"store": "redis://127.0.0.1:1/0"}}]

    with pytest.raises(ConfigError, match="no Redis answered") as caught:
        Relay.from_config(data)

    assert caught.value.path == "middleware[0].cache.store"
