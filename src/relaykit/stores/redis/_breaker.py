"""``RedisStore`` as a ``BreakerStore``: one circuit per target for every process.

Each step of the state machine of ``relaykit.stores.breaker`` is one script on the server's
clock, so the fifth failure opens a circuit once however many processes see it, and the
half-open probe slots are counted across all of them. A probe whose process died frees its
slot when its lease (``BreakerPolicy.probe_lease_s``) ends. While Redis is down, this process's
own circuits decide.
"""

from __future__ import annotations

from relaykit.stores.breaker import (
    ADMITTED,
    ADMITTED_PROBE,
    CLOSED,
    Admission,
    BreakerPolicy,
    Outcome,
    Transition,
)
from relaykit.stores.redis._base import RedisStoreBase
from relaykit.stores.redis._connection import DOWN
from relaykit.stores.redis._lua import BREAKER_ADMIT, BREAKER_RECORD, BREAKER_RELEASE

__all__ = ["RedisBreakers"]


class RedisBreakers(RedisStoreBase):
    """The circuit-breaker half of ``RedisStore``."""

    __slots__ = ()

    def _circuit_keys(self, key: str) -> tuple[str, str]:
        circuit = f"{self.prefix}breaker:{{{key}}}"
        return circuit, f"{circuit}:probes"

    async def admit(self, key: str, now: float, policy: BreakerPolicy) -> Admission:
        reply = await self._conn.run(BREAKER_ADMIT, self._circuit_keys(key), _policy(policy))
        if reply is DOWN:
            return await self._breakers.admit(key, now, policy)
        if reply[0] == 1:
            return ADMITTED_PROBE if reply[1] == 1 else ADMITTED
        wait = reply[1]
        return Admission(False, wait_s=float(wait) if wait else None, reason=reply[2].decode())

    async def record(
        self, key: str, now: float, policy: BreakerPolicy, outcome: Outcome
    ) -> Transition | None:
        args = (
            *_policy(policy),
            int(outcome.ok),
            int(outcome.probe),
            int(outcome.late),
            "" if outcome.open_s is None else outcome.open_s,
            outcome.reason,
        )
        reply = await self._conn.run(BREAKER_RECORD, self._circuit_keys(key), args)
        if reply is DOWN:
            return await self._breakers.record(key, now, policy, outcome)
        if reply[0] == 0:
            return None
        if reply[0] == 2:
            return CLOSED
        return Transition(True, float(reply[1]), reply[2].decode())

    async def release(self, key: str, now: float, policy: BreakerPolicy) -> None:
        reply = await self._conn.run(BREAKER_RELEASE, self._circuit_keys(key), _policy(policy))
        if reply is DOWN:
            await self._breakers.release(key, now, policy)


def _policy(policy: BreakerPolicy) -> tuple[float, ...]:
    return (
        policy.failures,
        policy.failure_rate,
        policy.min_calls,
        policy.window_s,
        policy.cooldown_s,
        policy.half_open_probes,
        policy.probe_lease_s,
    )
