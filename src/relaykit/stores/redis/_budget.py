"""``RedisStore`` as a ``BudgetStore``: one spend counter per budget window, shared by every
process, reserved from in one script.

While Redis is down, this process's own counters decide (each process may then spend the
whole budget by itself), and a call reserved on Redis but settled meanwhile leaves its worst
case counted there: a budget errs on the side of spending less.
"""

from __future__ import annotations

import math
from typing import Final

from relaykit.stores.budget import Spend
from relaykit.stores.redis._base import RedisStoreBase
from relaykit.stores.redis._connection import DOWN
from relaykit.stores.redis._lua import BUDGET_RESERVE, BUDGET_SETTLE

__all__ = ["RedisBudgets"]

# Float sums of reservations drift by ~1e-15 $; a reservation reaching the limit exactly fits.
_SLACK_USD: Final = 1e-9


class RedisBudgets(RedisStoreBase):
    """The budget half of ``RedisStore``."""

    __slots__ = ()

    async def reserve(
        self, key: str, amount_usd: float, *, limit_usd: float, expires_at: float
    ) -> Spend:
        args = (amount_usd, limit_usd, _SLACK_USD, _milliseconds(expires_at))
        reply = await self._conn.run(BUDGET_RESERVE, (self._budget_key(key),), args)
        if reply is DOWN:
            return self._budgets.reserve_now(
                key, amount_usd, limit_usd=limit_usd, expires_at=expires_at
            )
        granted, spent = reply
        return Spend(bool(granted), float(spent))

    async def settle(self, key: str, amount_usd: float, *, expires_at: float) -> None:
        args = (amount_usd, _milliseconds(expires_at))
        reply = await self._conn.run(BUDGET_SETTLE, (self._budget_key(key),), args)
        if reply is DOWN:
            self._budgets.settle_now(key, amount_usd, expires_at=expires_at)

    def _budget_key(self, key: str) -> str:
        return f"{self.prefix}{{{key}}}"


def _milliseconds(unix_s: float) -> int:
    # A minute past the window's end: a settlement arriving just after it still finds its key.
    return math.ceil(unix_s * 1000) + 60_000
