"""Shared fixtures: a running FakeProvider and a factory of backends pointed at one."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
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
