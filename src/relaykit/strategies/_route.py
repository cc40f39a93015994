"""What every strategy over targets decides the same way: which failures move on to another
target, and which targets this call must not ask (again).

Fallback, LoadBalance and Hedge differ in the order they try targets and in how many they ask
at once; they agree on these rules, so a user who learns them once can predict all three.
"""

from __future__ import annotations

from collections.abc import Sequence

from relaykit._rules import ErrorRule, matches
from relaykit.errors import ContextWindowError, InvalidRequestError, RelayError
from relaykit.pipeline import CallContext
from relaykit.target import BoundTarget

__all__ = ["failed_for_good", "moves_on", "skip_reason", "skipped"]


def moves_on(error: RelayError, rules: Sequence[ErrorRule] | None) -> bool:
    """Whether ``error`` from one target should send the call to another one.

    ``rules`` (a strategy's ``fallback_on``) decide when given. The default: every error moves
    on except an invalid request, which any target would refuse the same way; a context-window
    error does move on, since a target with a larger window may fit.
    """
    if rules is None:
        return isinstance(error, ContextWindowError) or not isinstance(error, InvalidRequestError)
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
    """A target that failed for good in this call (auth, quota, ...) is not asked again."""
    return any(a.target == target.name and not a.error.retryable for a in ctx.failures)
