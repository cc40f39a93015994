"""``relaykit.events``, the public path the README and docs show, kept importable: the code lives
in ``relaykit.contract.events``.
"""

from relaykit.contract.events import (
    ALL_EVENTS,
    AttemptFailed,
    AttemptStarted,
    AttemptSucceeded,
    CacheHit,
    CacheMiss,
    CircuitClosed,
    CircuitOpened,
    Completed,
    Event,
    Failed,
    FallingBack,
    HedgeStarted,
    HedgeWon,
    Listener,
    RateLimited,
    Retrying,
    StoreDegraded,
    StoreRecovered,
)

__all__ = [
    "ALL_EVENTS",
    "AttemptFailed",
    "AttemptStarted",
    "AttemptSucceeded",
    "CacheHit",
    "CacheMiss",
    "CircuitClosed",
    "CircuitOpened",
    "Completed",
    "Event",
    "Failed",
    "FallingBack",
    "HedgeStarted",
    "HedgeWon",
    "Listener",
    "RateLimited",
    "Retrying",
    "StoreDegraded",
    "StoreRecovered",
]
