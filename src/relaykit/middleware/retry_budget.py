"""RetryBudget: a cap on retries as a share of calls, so an outage does not multiply load."""

from __future__ import annotations

from typing import Final

from relaykit._support.checks import is_number, positive_number, positive_seconds

__all__ = ["RetryBudget"]

# Deposits are fractions (0.2 per call); summing them may land a hair under a whole token.
_EPSILON: Final = 1e-9
_SLOTS: Final = 10


class RetryBudget:
    """Caps retries to a share of calls, so an outage does not multiply load (tower, gRPC).

    Each call deposits ``ratio`` tokens and each retry withdraws one; on top of that,
    ``min_per_s`` retries per second are always allowed, so a quiet service can still retry.
    Deposits and withdrawals count for ``ttl_s`` seconds of ``ctx.clock`` time, then expire.
    ``RetryBudget(ratio=0.2)`` lets retries add at most ~20 % to the calls made.
    """

    __slots__ = ("_generation", "_reserve", "_slot_s", "_slots", "min_per_s", "ratio", "ttl_s")

    def __init__(self, *, ratio: float = 0.2, min_per_s: float = 1.0, ttl_s: float = 10.0) -> None:
        if not is_number(ratio) or not 0 <= ratio <= 1000:
            raise ValueError(
                f"ratio must be between 0 and 1000 retries per call (0.2 = 20 %), got {ratio!r}"
            )
        self.ratio = float(ratio)
        self.min_per_s = positive_number(
            "min_per_s", min_per_s, unit="retries per second", allow_zero=True
        )
        self.ttl_s = positive_seconds("ttl_s", ttl_s)
        # The window is a ring of slots, so both deposit and withdraw stay O(1): expired slots
        # are cleared as time moves past them.
        self._slot_s = self.ttl_s / _SLOTS
        self._slots = [0.0] * _SLOTS
        self._generation: int | None = None
        self._reserve = self.min_per_s * self.ttl_s

    def __repr__(self) -> str:
        return (
            f"RetryBudget(ratio={self.ratio:g}, min_per_s={self.min_per_s:g}, ttl_s={self.ttl_s:g})"
        )

    def deposit(self, now: float) -> None:
        """Record one call at ``now`` (clock seconds)."""
        generation = int(now // self._slot_s)
        if generation != self._generation:
            self._advance(generation)
        self._slots[generation % _SLOTS] += self.ratio

    def withdraw(self, now: float) -> bool:
        """Take one retry's token at ``now``; False when the budget is spent."""
        generation = int(now // self._slot_s)
        if generation != self._generation:
            self._advance(generation)
        if sum(self._slots) + self._reserve < 1.0 - _EPSILON:
            return False
        self._slots[generation % _SLOTS] -= 1.0
        return True

    def _advance(self, generation: int) -> None:
        previous = self._generation
        if previous is not None and generation < previous:
            generation = previous  # a clock never runs backwards; do not let one corrupt the ring
        elif previous is None or generation - previous >= _SLOTS:
            self._slots = [0.0] * _SLOTS
        else:
            for passed in range(previous + 1, generation + 1):
                self._slots[passed % _SLOTS] = 0.0
        self._generation = generation
