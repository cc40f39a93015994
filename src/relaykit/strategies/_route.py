"""What every strategy over targets decides the same way: which failures move on to another
target, and which targets this call must not ask (again).

Fallback, LoadBalance and Hedge differ in the order they try targets and in how many they ask
at once; they agree on these rules, so a user who learns them once can predict all three.
"""

from __future__ import annotations

from collections.abc import Sequence

from relaykit.contract.capabilities import AdmitsCalls
from relaykit.contract.error_rules import ErrorRule, default_fallback_on, matches
from relaykit.contract.errors import (
    AllTargetsFailedError,
    Attempt,
    ContextWindowError,
    RelayError,
    RouteStep,
)
from relaykit.contract.pipeline import CallContext
from relaykit.contract.target import BoundTarget, Group

__all__ = [
    "Gates",
    "admitted",
    "failed_for_good",
    "give_up",
    "moves_on",
    "note_failure",
    "skip_reason",
    "skipped",
    "too_small_after",
]


def moves_on(error: RelayError, rules: Sequence[ErrorRule] | None) -> bool:
    """Whether ``error`` from one target should send the call to another one.

    ``rules`` (a strategy's ``fallback_on``) decide when given; else ``default_fallback_on``.
    """
    if rules is None:
        return default_fallback_on(error)
    return matches(error, rules)


def skipped(target: BoundTarget, ctx: CallContext, too_small: int | None) -> bool:
    """Whether ``target`` is left out of this call (see ``skip_reason``)."""
    return skip_reason(target, ctx, too_small) is not None


def skip_reason(target: BoundTarget, ctx: CallContext, too_small: int | None) -> str | None:
    """Why ``target`` is left out of this call, for its route step: its context window is no
    larger than one already found ``too_small``, or it failed for good earlier in the call.
    None when it may be asked."""
    window = target.target.context_window
    if too_small is not None and window is not None and window <= too_small:
        return "context window too small"
    if failed_for_good(target, ctx):
        return "failed for good earlier in this call"
    return None


def failed_for_good(target: BoundTarget, ctx: CallContext) -> bool:
    """A target that failed for good in this call (auth, quota, ...) is not asked again; a
    group has when all of its members have."""
    if target.members:
        return all(failed_for_good(member, ctx) for member in target.members)
    return any(a.target == target.name and not a.error.retryable for a in ctx.failures)


def too_small_after(error: RelayError, target: BoundTarget, too_small: int | None) -> int | None:
    """The context window known to be too small once ``target`` raised ``error``."""
    window = target.target.context_window
    if isinstance(error, ContextWindowError) and window:
        return max(too_small or 0, window)
    return too_small


def note_failure(ctx: CallContext, target: BoundTarget, error: RelayError, started: float) -> None:
    """Count ``error`` as this call's try at ``target``, for ``AllTargetsFailedError``. A group
    does not count itself: its members' tries are counted already."""
    if not target.members:
        ctx.failures.append(Attempt(target.name, error, ctx.clock.now() - started))


def give_up(chain: Sequence[BoundTarget], ctx: CallContext, this_pass: int) -> RelayError:
    """The error for a call whose every target failed or was skipped: one target's own typed
    error, else ``AllTargetsFailedError`` listing every try (``this_pass``: where this pass's
    tries begin in ``ctx.failures``, for an outer Retry)."""
    if len(chain) == 1 and ctx.failures:
        return ctx.failures[-1].error
    return AllTargetsFailedError(
        ctx.failures,
        latest=ctx.failures[this_pass:],
        exhausted=all(failed_for_good(t, ctx) for t in chain),
    )


def admitted(
    chain: Sequence[BoundTarget], index: int, ctx: CallContext, gates: Gates, too_small: int | None
) -> bool:
    """Whether ``chain[index]`` may be asked now; a target that may not is recorded as skipped
    (and a middleware's refusal counted as a try, with no request), and the caller picks
    another."""
    target = chain[index]
    reason = skip_reason(target, ctx, too_small)
    if reason is not None:
        ctx.record(RouteStep(target.name, "skipped", reason))
        return False
    refusal = gates.refusal(index, target, ctx)
    if refusal is not None:
        ctx.failures.append(Attempt(target.name, refusal, 0.0))
        ctx.record(RouteStep.of_error(target.name, refusal, None))
        return False
    return True


class Gates:
    """Asks each target's middleware that can tell (``AdmitsCalls``: an open circuit, a full
    rate limit, a spent budget) whether the target can take a call now, without a request.

    Built once per chain; a target with no such middleware costs one empty-tuple check.
    """

    __slots__ = ("_by_target",)

    def __init__(self, targets: Sequence[BoundTarget]) -> None:
        self._by_target = tuple(_gates(t) for t in targets)

    def refusal(self, index: int, target: BoundTarget, ctx: CallContext) -> RelayError | None:
        """Why ``target`` (``index`` in the chain) cannot take the call now, or None. A group
        refuses only when every member does."""
        gates = self._by_target[index]
        if not gates:
            return None
        if target.members:
            refusals = [_refused(member, member_gates, ctx) for member, member_gates in gates]
            if all(refusals):
                return refusals[0]
            return None
        return _refused(target, gates[0][1], ctx)  # a plain target: its own gates


def _gates(target: BoundTarget) -> tuple[tuple[BoundTarget, tuple[AdmitsCalls, ...]], ...]:
    if target.members:
        members = tuple((m, _own_gates(m)) for m in target.members)
        return members if all(g for _, g in members) else ()
    own = _own_gates(target)
    return ((target, own),) if own else ()


def _own_gates(target: BoundTarget) -> tuple[AdmitsCalls, ...]:
    if isinstance(target.target, Group):  # a group inside a group: not asked ahead
        return ()
    layers: tuple[object, ...] = tuple(target.target.middleware)  # asked with isinstance
    return tuple(layer for layer in layers if isinstance(layer, AdmitsCalls))


def _refused(
    target: BoundTarget, gates: tuple[AdmitsCalls, ...], ctx: CallContext
) -> RelayError | None:
    for gate in gates:
        refusal = gate.refusal(target.name, ctx)
        if refusal is not None:
            return refusal
    return None
