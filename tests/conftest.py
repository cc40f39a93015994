"""Shared fixtures: a running FakeProvider, a factory of backends pointed at one, and Redis."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from relaykit import OpenAICompatible
from relaykit.testing import FakeProvider

BackendFactory = Callable[..., OpenAICompatible]


@pytest.fixture
async def provider() -> AsyncIterator[FakeProvider]:
    async with FakeProvider() as running:
        yield running


@pytest.fixture
async def backend() -> AsyncIterator[BackendFactory]:
    """``backend(provider, **options)``: an OpenAICompatible (key ``sk-test``, model ``m``).

    Every backend made is closed after the test, so no connection pool outlives its loop.
    """
    made: list[OpenAICompatible] = []

    def make(provider: FakeProvider, **options: Any) -> OpenAICompatible:
        options.setdefault("api_key", "sk-test")
        options.setdefault("model", "m")
        created = OpenAICompatible(provider.url, **options)
        made.append(created)
        return created

    yield make
    for created in made:
        await created.aclose()


# --- Redis: the one `make test` found or started (scripts/ensure-redis.sh) -------------------

REDIS_URL_VARIABLE = "RELAYKIT_TEST_REDIS_URL"


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The test Redis. Tests that need one fail, never skip, when none answers."""
    import redis

    url = os.environ.get(REDIS_URL_VARIABLE) or "redis://127.0.0.1:6379/0"
    try:
        with redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2) as client:
            client.ping()
    except (redis.RedisError, OSError) as exc:
        pytest.fail(
            f"no Redis answers at {url} ({exc}); run `make test` (scripts/ensure-redis.sh "
            f"starts one) or set {REDIS_URL_VARIABLE}",
            pytrace=False,
        )
    return url


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    import redis

    prefix = f"relaykit-test:{uuid.uuid4().hex[:12]}:"
    yield prefix
    with redis.Redis.from_url(url=redis_url, socket_timeout=5) as client:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
