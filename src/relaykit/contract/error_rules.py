"""Error rules: which errors a middleware acts on (``retry_on``, ``failure_on``, ``fallback_on``).

A rule is a ``RelayError`` subclass (matches its instances) or a predicate on the error. Check
the rules once, in the constructor, and match them on failures only::

    self.retry_on = check_rules("retry_on", retry_on)  # ValueError naming retry_on if wrong
    ...
    if matches(error, self.retry_on): ...
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeAlias

from relaykit.contract.errors import (
    ContextWindowError,
    InvalidRequestError,
    ModelNotFoundError,
    RelayError,
)

__all__ = ["ErrorRule", "check_rules", "default_fallback_on", "matches"]

ErrorRule: TypeAlias = type[RelayError] | Callable[[RelayError], bool]
"""An error type (its subclasses match too), or a predicate on the error."""


def default_fallback_on(error: RelayError) -> bool:
    """The default rule of which failures move a call on to another target.

    Every error moves on except an invalid request, which any target would refuse the same way;
    a context-window error (a larger target may fit) and a missing model (another target may
    have it) do move on. To add to it without restating it, list it among the rules:

    >>> Fallback(fallback_on=[default_fallback_on, ContentFilterError])
    """
    return isinstance(error, ContextWindowError | ModelNotFoundError) or not isinstance(
        error, InvalidRequestError
    )


def check_rules(name: str, rules: Iterable[ErrorRule]) -> tuple[ErrorRule, ...]:
    """``rules`` as a tuple, each checked: a ``RelayError`` subclass or a callable that is not a
    class. Raises ``ValueError`` naming the argument ``name`` otherwise, also when ``rules`` is
    a single rule instead of a list of them."""
    if isinstance(rules, type | str) or not isinstance(rules, Iterable):
        raise ValueError(
            f"{name} must be a list of RelayError subclasses or predicates on errors, "
            f"e.g. {name}=[ProviderError]; got {rules!r}"
        )
    checked = tuple(rules)
    for rule in checked:
        if isinstance(rule, type):
            if not issubclass(rule, RelayError):
                raise ValueError(
                    f"{name} takes RelayError subclasses or predicates on errors; "
                    f"{rule.__name__} is not a RelayError"
                )
        elif not callable(rule):
            raise ValueError(
                f"{name} takes RelayError subclasses or predicates on errors, got {rule!r}"
            )
    return checked


def matches(error: RelayError, rules: Iterable[ErrorRule]) -> bool:
    """Whether any rule matches ``error``: it is an instance of the type, or the predicate
    returns True. Rules are tried in order; the first match wins."""
    for rule in rules:
        if isinstance(rule, type):
            if isinstance(error, rule):
                return True
        elif rule(error):
            return True
    return False
