"""Circuit-breaker state: the ``BreakerStore`` protocol and the in-process ``MemoryBreakerStore``.

A store owns the state machine of every circuit it holds (closed → open → half-open → closed),
because a shared store must decide transitions atomically: two processes that see the fifth
failure at once must open the circuit once, and the half-open probe limit must hold across all
of them. The middleware only asks (``admit``), reports (``record``, ``release``) and acts on the
answers.

Every method is async so a Redis store can run one Lua script per call; the memory store
returns at once. Methods receive ``now`` (``ctx.clock.now()``) and answer in durations
(``wait_s``, ``open_s``), never in absolute times: a shared store may measure time on its own
shared clock (Redis ``TIME``) instead, since monotonic clocks of two processes do not agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = [
    "ADMITTED",
    "ADMITTED_PROBE",
    "CLOSED",
    "PROBE_SUCCESS",
    "SUCCESS",
    "Admission",
    "BreakerPolicy",
    "BreakerStore",
    "MemoryBreakerStore",
    "Outcome",
    "Transition",
]

_BUCKETS = 10  # the failure-rate window is counted in 10 slices of window_s / 10


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """The thresholds a store applies; validated by ``CircuitBreaker`` before it gets here.

    Breakers that share a store and a key should share a policy: the store keeps one state per
    key and reads the thresholds of whichever call reports.
    """

    failures: int = 5
    failure_rate: float = 0.5
    min_calls: int = 10
    window_s: float = 30.0
    cooldown_s: float = 5.0
    half_open_probes: int = 1
    # A probe that reports nothing for this long (its process died) frees its slot.
    probe_lease_s: float = 60.0


@dataclass(frozen=True, slots=True)
class Admission:
    """The store's answer to "may this call go?".

    Refused while open: ``wait_s`` is how long the circuit stays open. Refused while half-open
    with every probe slot taken: ``wait_s`` is None. ``reason`` says why it opened.
    """

    allowed: bool
    probe: bool = False
    wait_s: float | None = None
    reason: str = ""


ADMITTED = Admission(True)
ADMITTED_PROBE = Admission(True, probe=True)


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one admitted call ended, as far as the circuit is concerned.

    ``open_s`` (with ``reason``) opens the circuit at once for that long, whatever the counts:
    a 429's Retry-After, a quota error's cool-down. ``late`` marks a failure of a call already
    recorded as a success (a stream that broke after its commit point): it counts as a failure
    but not as another call.
    """

    ok: bool
    probe: bool = False
    open_s: float | None = None
    reason: str = ""
    late: bool = False


SUCCESS = Outcome(True)
PROBE_SUCCESS = Outcome(True, probe=True)


@dataclass(frozen=True, slots=True)
class Transition:
    """A change of state caused by a ``record``: the circuit opened (for ``open_s``) or closed."""

    opened: bool
    open_s: float = 0.0
    reason: str = ""


CLOSED = Transition(False)


@runtime_checkable
class BreakerStore(Protocol):
    """Where circuit state lives, keyed by target name; atomic per key.

    A Redis implementation keeps the same semantics across processes: ``admit`` hands out at
    most ``policy.half_open_probes`` probe slots in total, and exactly one ``record`` observes
    each transition (so each process emits only the transitions it caused).
    """

    async def admit(self, key: str, now: float, policy: BreakerPolicy) -> Admission:
        """Whether a call may go now. Past an open period the circuit turns half-open and
        ``admit`` hands out probe slots (``Admission.probe``) until they are all taken."""
        ...

    async def record(
        self, key: str, now: float, policy: BreakerPolicy, outcome: Outcome
    ) -> Transition | None:
        """Count a finished call (a probe's outcome frees its slot); return the transition it
        caused, if any. Outcomes of calls admitted before the circuit opened are ignored,
        except that an ``open_s`` longer than the current open period extends it."""
        ...

    async def release(self, key: str, now: float, policy: BreakerPolicy) -> None:
        """Free a probe slot whose call ended with no verdict (cancelled, or an error that does
        not count), leaving the circuit half-open for the next probe."""
        ...


_CLOSED, _OPEN, _HALF_OPEN = 0, 1, 2


class _Circuit:
    """One key's state. Failure-rate counts live in a ring of time slices."""

    __slots__ = (
        "calls",
        "consecutive",
        "epoch",
        "failed",
        "open_until",
        "probes",
        "reason",
        "state",
    )

    def __init__(self) -> None:
        self.state = _CLOSED
        self.open_until = 0.0
        self.reason = ""
        self.consecutive = 0
        self.epoch = 0  # index of the newest time slice
        self.calls = [0] * _BUCKETS
        self.failed = [0] * _BUCKETS
        self.probes: list[float] = []  # lease expiry of each probe in flight

    def slot(self, now: float, window_s: float) -> int:
        """The ring index for ``now``, clearing the slices that fell out of the window."""
        epoch = int(now * _BUCKETS / window_s)
        if epoch != self.epoch:
            stale = min(epoch - self.epoch, _BUCKETS) if epoch > self.epoch else _BUCKETS
            for step in range(1, stale + 1):
                index = (self.epoch + step) % _BUCKETS
                self.calls[index] = self.failed[index] = 0
            self.epoch = epoch
        return epoch % _BUCKETS

    def open(self, now: float, open_s: float, reason: str) -> Transition:
        self.state = _OPEN
        self.open_until = now + open_s
        self.reason = reason
        self.probes.clear()
        self.reset_counts()
        return Transition(True, open_s, reason)

    def close(self) -> Transition:
        self.state = _CLOSED
        self.reason = ""
        self.probes.clear()
        self.reset_counts()
        return CLOSED

    def reset_counts(self) -> None:
        self.consecutive = 0
        for index in range(_BUCKETS):
            self.calls[index] = self.failed[index] = 0


class MemoryBreakerStore:
    """Circuit state in this process, the default store: every method returns without waiting.

    One instance belongs to one ``CircuitBreaker`` unless you pass the same store to several
    (they then share circuits by target name).
    """

    __slots__ = ("_circuits",)

    def __init__(self) -> None:
        self._circuits: dict[str, _Circuit] = {}

    def __repr__(self) -> str:
        return f"MemoryBreakerStore(circuits={sorted(self._circuits)})"

    async def admit(self, key: str, now: float, policy: BreakerPolicy) -> Admission:
        circuit = self._circuits.get(key)
        if circuit is None or circuit.state == _CLOSED:
            return ADMITTED
        if circuit.state == _OPEN:
            if now < circuit.open_until:
                return Admission(False, wait_s=circuit.open_until - now, reason=circuit.reason)
            circuit.state = _HALF_OPEN
        probes = circuit.probes
        if probes and probes[0] <= now:  # leases of probes that never reported
            probes[:] = [lease for lease in probes if lease > now]
        if len(probes) < policy.half_open_probes:
            probes.append(now + policy.probe_lease_s)
            probes.sort()
            return ADMITTED_PROBE
        return Admission(False, reason=circuit.reason)

    async def record(
        self, key: str, now: float, policy: BreakerPolicy, outcome: Outcome
    ) -> Transition | None:
        circuit = self._circuits.get(key)
        if circuit is None:
            circuit = self._circuits[key] = _Circuit()
        state = circuit.state
        if state == _CLOSED:
            return _record_closed(circuit, now, policy, outcome)
        if state == _HALF_OPEN and outcome.probe:
            if circuit.probes:
                circuit.probes.pop()
            if outcome.ok:
                return circuit.close()
            if outcome.open_s is not None:
                return circuit.open(now, outcome.open_s, outcome.reason)
            return circuit.open(now, policy.cooldown_s, "a failed half-open probe")
        # Open, or half-open and not a probe: a call admitted before the circuit opened. Only a
        # provider's own longer pushback changes anything.
        if outcome.open_s is not None and now + outcome.open_s > circuit.open_until:
            return circuit.open(now, outcome.open_s, outcome.reason)
        return None

    async def release(self, key: str, now: float, policy: BreakerPolicy) -> None:
        circuit = self._circuits.get(key)
        if circuit is not None and circuit.state == _HALF_OPEN and circuit.probes:
            circuit.probes.pop()


def _record_closed(
    circuit: _Circuit, now: float, policy: BreakerPolicy, outcome: Outcome
) -> Transition | None:
    index = circuit.slot(now, policy.window_s)
    if outcome.ok:
        circuit.consecutive = 0
        circuit.calls[index] += 1
        return None
    circuit.consecutive += 1
    if not outcome.late:
        circuit.calls[index] += 1
    circuit.failed[index] += 1
    if outcome.open_s is not None:
        return circuit.open(now, outcome.open_s, outcome.reason)
    if circuit.consecutive >= policy.failures:
        count = circuit.consecutive
        reason = f"{count} consecutive failure{'s' if count != 1 else ''}"
        return circuit.open(now, policy.cooldown_s, reason)
    calls = sum(circuit.calls)
    if calls >= policy.min_calls:
        failed = sum(circuit.failed)
        if failed >= policy.failure_rate * calls:
            reason = (
                f"{failed} failure{'s' if failed != 1 else ''} in {calls} "
                f"call{'s' if calls != 1 else ''} within {policy.window_s:g} s"
            )
            return circuit.open(now, policy.cooldown_s, reason)
    return None
