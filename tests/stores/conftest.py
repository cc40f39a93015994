"""Fixtures of the Redis store tests: stores on the test Redis, each test with its own prefix."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis_servers import StoreFactory

from relaykit.stores.redis import RedisStore


@pytest.fixture
async def stores(redis_url: str, redis_prefix: str) -> AsyncIterator[StoreFactory]:
    """``stores(**options)``: a RedisStore on the test Redis with this test's prefix; each one
    made is a separate client, as another process's would be. All are closed afterwards."""
    made: list[RedisStore] = []

    def make(**options: Any) -> RedisStore:
        options.setdefault("prefix", redis_prefix)
        store = RedisStore(options.pop("url", redis_url), **options)
        made.append(store)
        return store

    yield make
    for store in made:
        await store.aclose()
