"""How long a backend may wait for one request, and the error when it waited in vain.

Every backend bounds a request by its own ``timeout`` and by what is left of the call's
deadline, and says which of the two ran out: the advice differs (raise the backend's timeout,
or the call's ``Timeout(total_s=...)``).
"""

from __future__ import annotations

from relaykit.contract.errors import ProviderTimeout
from relaykit.contract.pipeline import CallContext

__all__ = ["time_allowed", "timed_out"]


def time_allowed(ctx: CallContext, timeout_s: float, target: str) -> float:
    """Seconds this request may take: the backend's timeout, shortened by the call's deadline.

    Raises ``ProviderTimeout`` without sending anything when the deadline has already passed.
    """
    remaining = ctx.remaining()
    if remaining is None:
        return timeout_s
    if remaining <= 0:
        raise ProviderTimeout.deadline_passed(target)
    return min(timeout_s, remaining)


def timed_out(waited_s: float, timeout_s: float, target: str) -> ProviderTimeout:
    """The error for a request that got no answer within ``waited_s`` (from ``time_allowed``)."""
    if waited_s < timeout_s:  # the call's deadline, not the backend's timeout, cut the wait short
        return ProviderTimeout.deadline_reached(waited_s, target)
    return ProviderTimeout(
        f"did not answer within {waited_s:.3g} s. Raise the backend's timeout or add "
        "a fallback target",
        target=target,
    )
