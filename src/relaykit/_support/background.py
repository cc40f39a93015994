"""Store writes started from synchronous code (stream finalizers), kept until they are done.

A stream's ``on_finish`` finalizer cannot await, so a middleware that must write to its store
when a stream ends (a breaker's late failure, a rate limit's token settlement, a cache's
answer) spawns the write as a task here, and its ``aclose()`` drains them so none is lost::

    self._writes = BackgroundTasks()
    ...
    def finished(stream, error):          # a finalizer
        self._writes.spawn(self.store.record(...))
    ...
    async def aclose(self):
        await self._writes.drain()
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

__all__ = ["BackgroundTasks"]

_log = logging.getLogger("relaykit")


class BackgroundTasks:
    """Tasks spawned from synchronous code, kept alive until done; ``drain()`` waits for all.

    A task that fails is logged on the ``relaykit`` logger, never raised: whoever spawned it has
    returned long ago, and a write that failed costs an entry or a count, not a call.
    """

    __slots__ = ("_tasks",)

    def __init__(self) -> None:
        # Held here, or the loop (which keeps only weak references) could drop a running task.
        self._tasks: set[asyncio.Task[None]] = set()

    def __bool__(self) -> bool:
        """Whether any task is still running: a cheap check before ``await drain()``."""
        return bool(self._tasks)

    def __repr__(self) -> str:
        return f"BackgroundTasks(running={len(self._tasks)})"

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None] | None:
        """Run ``coro`` as a task on the running loop; None (and ``coro`` closed unrun) when
        no loop is running, e.g. a finalizer run while the interpreter shuts down."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            coro.close()
            return None
        task = loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    async def drain(self) -> None:
        """Wait until no task is left, including tasks spawned while waiting.

        Cancelling ``drain`` does not cancel the tasks it waits for.
        """
        while self._tasks:
            # asyncio.wait, not gather: a cancelled drain must leave the writes running.
            await asyncio.wait(tuple(self._tasks))

    def _done(self, task: asyncio.Task[None]) -> None:
        # Runs before any waiter in drain() resumes: it was added first, and callbacks run in
        # order, so a finished task is never waited for twice.
        self._tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            _log.error("relaykit: a background store write failed", exc_info=error)
