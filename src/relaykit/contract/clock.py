"""Time as a dependency, so every time-based behaviour is testable without sleeping.

Backoff, deadlines, TTLs, breaker cool-downs and rate windows all read ``ctx.clock``; tests pass
``relaykit.testing.FakeClock`` and move time by hand.
"""

from __future__ import annotations

import asyncio
import random
import time
from contextlib import AbstractAsyncContextManager
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """What relaykit needs of time. ``now()`` is monotonic seconds, not wall time."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...

    def random(self) -> float: ...

    def timeout(self, seconds: float | None) -> AbstractAsyncContextManager[object]:
        """Cancel the enclosed block after ``seconds`` of this clock's time (TimeoutError)."""
        ...


class SystemClock:
    """Real time: ``time.monotonic``, ``asyncio.sleep`` and ``asyncio.timeout``."""

    __slots__ = ("_random",)

    def __init__(self) -> None:
        self._random = random.Random()

    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def random(self) -> float:
        return self._random.random()

    def timeout(self, seconds: float | None) -> AbstractAsyncContextManager[object]:
        return asyncio.timeout(seconds)

    def __repr__(self) -> str:
        return "SystemClock()"
