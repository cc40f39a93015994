"""One private event loop on one thread, so the sync API runs the async pipeline unchanged.

``asyncio.run`` per call would build and tear down a loop (and every connection pool) each time;
a long-lived loop keeps pools warm and costs one thread hop per call.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

from relaykit._support.thirdparty import listening_sockets

__all__ = ["LoopThread", "served_here"]

T = TypeVar("T")


class LoopThread:
    """Starts its thread on first use; ``close()`` stops it."""

    __slots__ = ("_lock", "_loop", "_thread")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def _ensure(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="relaykit-loop", daemon=True
                )
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the private loop and wait for its result in the calling thread."""
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError(
                "relaykit's sync API was called from its own event-loop thread; use the async "
                "API (acomplete/astream) inside async code"
            )
        future = asyncio.run_coroutine_threadsafe(coro, self._ensure())
        try:
            return future.result()
        except BaseException:
            future.cancel()  # a KeyboardInterrupt in the caller stops the call too
            raise

    def close(self) -> None:
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


def served_here(urls: Sequence[str]) -> str | None:
    """The ``host:port`` of the first of ``urls`` that a server on the calling thread's running
    event loop listens on, or None (no running loop, no such server).

    A sync call made there blocks that loop until the answer comes, and the answer would come
    from that very loop: it cannot. Only the loop's own listening sockets count, so a server in
    another thread or process on the same host (a local vLLM under Jupyter's loop) is fine.
    Loops that do not expose their selector (uvloop) are not checked
    (``relaykit._support.thirdparty``).
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    listening = listening_sockets(loop) if urls else set()
    for url in urls:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        host = parts.hostname or ""
        for address, listening_port in listening:
            local = host in ("localhost", address) or address in ("0.0.0.0", "::")
            if listening_port == port and local:
                return f"{host}:{port}"
    return None
