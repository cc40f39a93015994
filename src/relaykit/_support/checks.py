"""Argument checks shared by the constructors: one rule, one message shape, for every middleware.

Each check returns the value normalised (``float`` or ``int``) or raises ``ValueError`` naming
the argument, what is allowed, and what was given. All of them refuse ``True``/``False`` (a bool
is an int to Python, never a duration or a count to a user), strings and NaN.

>>> positive_seconds("ttl_s", 600)
600.0
>>> whole_number("attempts", 0, minimum=1)
Traceback (most recent call last):
ValueError: attempts must be a whole number of at least 1, got 0
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, TypeGuard

__all__ = [
    "fraction",
    "is_number",
    "layer_list",
    "positive_number",
    "positive_seconds",
    "whole_number",
]


def is_number(value: object) -> TypeGuard[float]:
    """Whether ``value`` is an int or a float and not a bool (NaN and infinity included)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def positive_number(
    name: str,
    value: object,
    *,
    unit: str,
    allow_zero: bool = False,
    allow_inf: bool = False,
    hint: str = "",
) -> float:
    """``value`` as a float: above 0 (or at least 0 with ``allow_zero``), finite unless
    ``allow_inf``. ``unit`` names what it counts in the message ("requests per minute");
    ``hint``, when given, is added to it ("0: never wait")."""
    if is_number(value):
        number = _as_float(value)
        low_ok = number >= 0 if allow_zero else number > 0
        if low_ok and (allow_inf or number < math.inf):  # NaN fails both comparisons
            return number
    if allow_zero:
        allowed = f">= 0 {unit}, or math.inf" if allow_inf else f">= 0 {unit} and finite"
    else:
        allowed = (
            f"> 0 {unit}, or math.inf" if allow_inf else f"a positive, finite number of {unit}"
        )
    more = f" ({hint})" if hint else ""
    raise ValueError(f"{name} must be {allowed}{more}, got {value!r}")


def positive_seconds(
    name: str,
    value: object,
    *,
    allow_zero: bool = False,
    allow_inf: bool = False,
    hint: str = "",
) -> float:
    """A duration in seconds as a float: above 0 (``allow_zero``: or 0), finite (``allow_inf``:
    or ``math.inf``).

    >>> positive_seconds("max_wait_s", 0, allow_zero=True)
    0.0
    """
    return positive_number(
        name, value, unit="seconds", allow_zero=allow_zero, allow_inf=allow_inf, hint=hint
    )


def whole_number(name: str, value: object, *, minimum: int, hint: str = "") -> int:
    """``value`` as an int of at least ``minimum``; floats (even ``3.0``) and bools are refused."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= minimum:
        return int(value)
    more = f" ({hint})" if hint else ""
    raise ValueError(f"{name} must be a whole number of at least {minimum}{more}, got {value!r}")


def fraction(name: str, value: object) -> float:
    """A share as a float, above 0 and at most 1 (0.5 = half)."""
    if is_number(value) and 0 < value <= 1:  # NaN fails the comparison
        return float(value)
    raise ValueError(f"{name} must be a number above 0 and at most 1 (0.5 = half), got {value!r}")


def _as_float(value: float) -> float:
    try:
        return float(value)
    except OverflowError:  # an int too large for a float is, for every check here, infinite
        return math.inf if value > 0 else -math.inf


def layer_list(name: str, value: object, *, what: str = "middleware") -> tuple[Any, ...]:
    """``value`` as a tuple of callables: a list of middleware instances (or listeners).

    The mistakes a newcomer makes are named: one middleware instead of a list of them, the
    class instead of an instance (``Retry`` for ``Retry()``), a config-file name in code.
    """
    if callable(value) or isinstance(value, str) or not isinstance(value, Sequence):
        raise ValueError(f"{name} must be a list of {what}, e.g. {name}=[...]; got {value!r}")
    for i, layer in enumerate(value):
        if isinstance(layer, type):
            raise ValueError(
                f"{name}[{i}] is the class {layer.__name__}; pass an instance: "
                f"{layer.__name__}(...)"
            )
        if isinstance(layer, str):
            raise ValueError(
                f"{name}[{i}] is the name {layer!r}; names are for config files, in code pass "
                f"the {what} itself (e.g. Retry(attempts=3))"
            )
        if not callable(layer):
            raise ValueError(f"{name}[{i}] is not callable: {layer!r}")
    return tuple(value)
