"""FakeClock: time that moves only when a test (or a sleep) moves it."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random
from collections.abc import Awaitable
from types import TracebackType
from typing import Self, TypeVar

T = TypeVar("T")

__all__ = ["FakeClock"]


class FakeClock:
    """A ``Clock`` for tests: backoff, TTLs, breaker cool-downs and deadlines without waiting.

    With ``auto_advance=True`` (the default) ``sleep(s)`` moves time forward by ``s`` at once
    and records it in ``sleeps``, so a test can assert on the backoff schedule. With
    ``auto_advance=False`` sleepers wait until the test calls ``advance()``. Either way,
    ``timeout()`` blocks expire when fake time passes their deadline, and ``random()`` is seeded.
    """

    def __init__(self, start: float = 1000.0, *, auto_advance: bool = True, seed: int = 0) -> None:
        self._now = start
        self.auto_advance = auto_advance
        self.sleeps: list[float] = []
        self._random = random.Random(seed)
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._timeouts: list[_FakeTimeout] = []
        self._order = itertools.count()

    def now(self) -> float:
        return self._now

    def random(self) -> float:
        return self._random.random()

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if self.auto_advance:
            self.advance(seconds)
            await asyncio.sleep(0)
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + max(0.0, seconds), next(self._order), waiter))
        await waiter

    def advance(self, seconds: float) -> None:
        """Move time forward, waking the sleepers and expiring the timeouts now due."""
        if seconds < 0:
            raise ValueError("time only moves forward")
        self._now += seconds
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, waiter = heapq.heappop(self._sleepers)
            if not waiter.done():
                waiter.set_result(None)
        for timeout in list(self._timeouts):
            timeout.check(self._now)

    def next_wakeup(self) -> float | None:
        """When the earliest sleeper wakes or timeout expires (clock seconds); None when nothing
        waits. ``advance(next_wakeup() - now())`` runs time on to the next thing that happens,
        so a test can drive concurrent waits like a discrete-event simulation."""
        times = [self._sleepers[0][0]] if self._sleepers else []
        times += [t._deadline for t in self._timeouts if t._deadline is not None]
        return min(times) if times else None

    def timeout(self, seconds: float | None) -> _FakeTimeout:
        return _FakeTimeout(self, seconds)

    async def drive(
        self, work: Awaitable[T], *, step_s: float | None = 0.25, max_steps: int = 20_000
    ) -> T:
        """Await ``work`` while moving time forward ``step_s`` at a time (``auto_advance=False``),
        or with ``step_s=None`` straight to each next wake-up (``next_wakeup``), so elapsed
        times come out exact: a reply delayed 0.1 s after a 0.5 s hedge timer ends at 0.6 s.

        Between two steps the event loop runs for a while, so work on real sockets (a
        FakeProvider on this loop) makes progress before the clock moves: a timeout of many
        steps then fires only when the other side really is silent. Raises AssertionError when
        ``work`` is not done after ``max_steps``: every fault loop in a test stays bounded.
        """
        task = asyncio.ensure_future(work)
        for _ in range(max_steps):
            for _ in range(100):  # let the work run until it waits on the clock (or a socket)
                if task.done():
                    return task.result()
                await asyncio.sleep(0)
            if step_s is not None:
                self.advance(step_s)
            elif (wakeup := self.next_wakeup()) is not None:
                self.advance(max(wakeup - self._now, 0.0))
        task.cancel()
        raise AssertionError(f"the work was not done after {max_steps} steps of fake time")

    def __repr__(self) -> str:
        return f"FakeClock(now={self._now})"


class _FakeTimeout:
    """``asyncio.timeout`` whose deadline is measured on the FakeClock."""

    def __init__(self, clock: FakeClock, seconds: float | None) -> None:
        self._clock = clock
        self._deadline = None if seconds is None else clock.now() + seconds
        self._inner = asyncio.timeout(None)

    async def __aenter__(self) -> Self:
        await self._inner.__aenter__()
        if self._deadline is not None:
            self._clock._timeouts.append(self)
            self.check(self._clock.now())
        return self

    def check(self, now: float) -> None:
        if self._deadline is not None and now >= self._deadline and not self._inner.expired():
            self._inner.reschedule(asyncio.get_running_loop().time())

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self in self._clock._timeouts:
            self._clock._timeouts.remove(self)
        await self._inner.__aexit__(exc_type, exc, tb)
