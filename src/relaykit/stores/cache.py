"""Cache stores: where cached answers live, the ``CacheStore`` protocol and ``MemoryCacheStore``.

A store maps a key (built by the ``Cache`` middleware; it already carries namespace and tenant)
to one frozen answer (``FrozenCompletion``) with a time to live of its own. Like the other
stores, methods receive ``now`` (``ctx.clock.now()``) and answer in durations (``age_s``), never
in absolute times: a shared store (Redis) should measure on its own clock instead — ``SET key
value PX ttl`` and an age from the remaining ``PTTL`` — since monotonic clocks of two processes
do not agree.

Entries are frozen so that nobody can change a stored answer: the JSON bytes of the fields the
provider set (serializing is cheaper than a deep copy, and parsing back with pydantic-core is
too), the answer's class, the target that gave it, and a deep copy of any other private
attribute, so a subclass carrying a value of its own survives and each hit gets its own copy
of that value. ``thaw()`` gives every caller a fresh ChatCompletion. A shared store writes
``entry.to_bytes()``: the data behind a format version line, so entries written by another
relaykit version read as misses (``from_bytes`` returns None), not as garbage.
"""

from __future__ import annotations

import copy
import json
import sys
from dataclasses import dataclass
from typing import Any, Final, Protocol, runtime_checkable

from cachetools import LRUCache

from relaykit._support.checks import whole_number
from relaykit.contract.schema import ChatCompletion, RelayInfo, set_relay_info

__all__ = [
    "FROZEN_FORMAT",
    "CacheStore",
    "CachedCompletion",
    "FlightStore",
    "FrozenCompletion",
    "MemoryCacheStore",
]

# Private values of these types cannot be changed in place, so they are shared, not copied.
_IMMUTABLE: Final = frozenset({type(None), bool, int, float, str, bytes})
# The first line of every entry a shared store holds; a new layout gets a new number, and an
# entry whose line differs reads as a miss.
FROZEN_FORMAT: Final = b"relaykit.frozen/1\n"


@dataclass(frozen=True, slots=True)
class FrozenCompletion:
    """An answer nobody can change: ``thaw()`` gives a fresh copy each time.

    JSON of the fields the provider set (extras included), the class, the name of the target
    that gave the answer (so a hit can still say so), and a deep copy of any other private
    attribute (a caller mutating one, such as ``@resilient``'s return value, changes only its
    own copy).
    """

    data: bytes
    kind: type[ChatCompletion]
    target: str | None
    private: dict[str, Any] | None

    @classmethod
    def of(cls, completion: ChatCompletion) -> FrozenCompletion:
        # relaykit's own RelayInfo is rebuilt per call: only its target is worth keeping.
        info = completion.relay
        private = completion.__pydantic_private__  # a subclass's own private attributes
        others = {k: v for k, v in private.items() if v is not None} if private else None
        return cls(
            completion.__pydantic_serializer__.to_json(completion, exclude_unset=True),
            type(completion),
            info.target if info is not None else None,
            _own(others) if others else None,
        )

    def to_bytes(self) -> bytes | None:
        """The entry as a shared store keeps it: the format line, one JSON line naming the class,
        the target and the private attributes, then ``data`` as it is. None when a private
        attribute is not JSON (such an answer is cached in-process only)."""
        header = {"kind": f"{self.kind.__module__}:{self.kind.__qualname__}"}
        if self.target is not None:
            header["target"] = self.target
        try:
            line = json.dumps(header if not self.private else {**header, "private": self.private})
        except (TypeError, ValueError):
            return None
        return b"".join((FROZEN_FORMAT, line.encode(), b"\n", self.data))

    @classmethod
    def from_bytes(cls, raw: bytes) -> FrozenCompletion | None:
        """An entry written by ``to_bytes``; None for another format or a class this process has
        not imported (a shared store never imports a module because an entry names it)."""
        if not raw.startswith(FROZEN_FORMAT):
            return None
        end = raw.find(b"\n", len(FROZEN_FORMAT))
        try:
            header = json.loads(raw[len(FROZEN_FORMAT) : end])
            module, _, name = header["kind"].partition(":")
        except (ValueError, KeyError, TypeError, AttributeError):
            return None
        kind = sys.modules.get(module)
        for part in name.split("."):
            kind = getattr(kind, part, None)
        if end < 0 or not (isinstance(kind, type) and issubclass(kind, ChatCompletion)):
            return None
        return cls(raw[end + 1 :], kind, header.get("target"), header.get("private"))

    def thaw(self) -> ChatCompletion:
        # The validator itself, skipping model_validate_json's wrapper: a hit's largest cost.
        completion: ChatCompletion = self.kind.__pydantic_validator__.validate_json(self.data)
        set_relay_info(completion, RelayInfo(self.target, 0, cached=True))
        if self.private:
            private = completion.__pydantic_private__
            if private is not None:
                private.update(_own(self.private))
        return completion


def _own(private: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``private`` that shares nothing mutable with it."""
    for value in private.values():
        if type(value) not in _IMMUTABLE:
            return copy.deepcopy(private)
    return dict(private)


@dataclass(frozen=True, slots=True)
class CachedCompletion:
    """A cache entry as ``get`` returns it: the frozen answer and its age."""

    entry: FrozenCompletion
    age_s: float


@runtime_checkable
class CacheStore(Protocol):
    """Where cached answers live. A user's class fits without inheriting from this one.

    A store that cannot answer (a shared store whose server is down) degrades by itself:
    ``get`` returns None (a miss) and ``set`` drops the entry, each within a small time bound,
    so the cache never fails or stalls a call.
    """

    async def get(self, key: str, now: float) -> CachedCompletion | None:
        """The live entry under ``key``, or None when there is none or it has expired."""
        ...

    async def set(self, key: str, entry: FrozenCompletion, now: float, ttl_s: float) -> None:
        """Store ``entry`` under ``key`` for ``ttl_s`` seconds, replacing any entry.

        Entries are frozen (JSON bytes and a few names): a shared store writes ``entry.data``
        as it is, and nobody can change an entry once stored.
        """
        ...

    async def delete(self, key: str) -> None:
        """Forget the entry under ``key``, if any."""
        ...


@runtime_checkable
class FlightStore(Protocol):
    """A cache store that several processes share, and that shares flights among them too: of
    concurrent identical misses in different processes, one asks upstream and the others wait
    for its answer. The ``Cache`` uses it when its store implements it.

    The caller that gets None from ``join_flight`` holds the flight: its ``set`` of the key
    ends it, or ``end_flight`` when it has no answer to store. A holder that dies frees the
    flight after a bound of the store's, so waiters never wait for ever.
    """

    async def join_flight(self, key: str, now: float, max_wait_s: float) -> CachedCompletion | None:
        """Another process's answer once it is stored (waiting at most ``max_wait_s``, and at
        most the store's own bound), or None: the caller asks upstream itself."""
        ...

    async def end_flight(self, key: str) -> None:
        """End the flight this caller holds on ``key`` without an answer (it failed, or it
        streams), so a waiter in another process takes over at once."""
        ...


class MemoryCacheStore:
    """Answers in this process, the default store: bounded in size and in time.

    At most ``max_entries`` entries; past that the least recently used one is evicted. Each
    entry expires after its own TTL (checked when read; an expired entry also leaves when it is
    the least recently used). Every method returns without waiting.

    One instance belongs to one ``Cache`` unless you pass the same store to several (they then
    share entries, and should use distinct ``namespace=`` values unless they serve the same
    models).
    """

    __slots__ = ("_entries", "max_entries")

    def __init__(self, *, max_entries: int = 10_000) -> None:
        self.max_entries = whole_number("max_entries", max_entries, minimum=1)
        # key -> (answer, stored_at, expires_at)
        self._entries: LRUCache[str, tuple[FrozenCompletion, float, float]] = LRUCache(max_entries)

    def __repr__(self) -> str:
        return f"MemoryCacheStore(max_entries={self.max_entries}, entries={len(self._entries)})"

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: str, now: float) -> CachedCompletion | None:
        try:  # LRUCache.get would look the key up twice
            entry = self._entries[key]
        except KeyError:
            return None
        frozen, stored_at, expires_at = entry
        if now >= expires_at:
            del self._entries[key]
            return None
        return CachedCompletion(frozen, now - stored_at)

    async def set(self, key: str, entry: FrozenCompletion, now: float, ttl_s: float) -> None:
        if ttl_s <= 0:
            self._entries.pop(key, None)
            return
        self._entries[key] = (entry, now, now + ttl_s)

    async def delete(self, key: str) -> None:
        self._entries.pop(key, None)
